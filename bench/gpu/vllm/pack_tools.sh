#!/usr/bin/env bash
# On the CPU machine: what the peer comparison on the H200 (peers.sh) carries besides vLLM's payload
# (pack.sh), built from release binaries of this checkout and the package index:
#   DEST/b/caplab.xz                 caplab (replaces pack.sh's, so the H200 runs this checkout)
#   DEST/b/tools/guidellm/*.whl      GuideLLM 0.8.1 and what it needs that neither the device image
#                                    nor vLLM's payload has (cp312; installed into VX_GSITE)
#   DEST/b/tools/{raw-client,bench-live}.xz
#   DEST/c/chrome.part.00, DEST/d/chrome.part.01, DEST/e/chrome.part.02
#                                    headless Chromium + chromedriver (Debian's, of this machine) with
#                                    every library they link but glibc's, NSS's modules and one font:
#                                    one xz tar (124 MB) cut in three, one piece per device call (64 MiB
#                                    each, the repository's 11 MB included)
#   pack_tools.sh DEST               (run `cargo build --release -p caplab -p caplab-tests --bin caplab
#                                    --bin raw-client --bin bench-live` first; CHROME_TAR_XZ=FILE reuses
#                                    a bundle made before, ~5 minutes of xz on 2 cores)
set -euo pipefail
dest=${1:?usage: pack_tools.sh DEST}
root=$(cd "$(dirname "$0")/../../.." && pwd)
rel=$root/target/release
mkdir -p "$dest/b/tools/guidellm" "$dest/c" "$dest/d" "$dest/e"
xz -9 -c "$rel/caplab" > "$dest/b/caplab.xz"
for f in raw-client bench-live; do xz -9 -c "$rel/$f" > "$dest/b/tools/$f.xz"; done

plat=""
for n in 39 35 34 31 28 27 24 17 5; do plat="$plat --platform manylinux_2_${n}_x86_64"; done
# shellcheck disable=SC2086
python3 -m pip download -q --no-deps --only-binary=:all: --python-version 3.12 --implementation cp $plat \
  --platform manylinux2014_x86_64 --platform manylinux1_x86_64 --platform linux_x86_64 --platform any \
  -d "$dest/b/tools/guidellm" \
  guidellm==0.8.1 culsans==0.10.0 aiologic==0.17.1 datasets==5.2.0 multiprocess==0.70.19 eval_type_backport==0.4.0 \
  Faker==40.63.0 ftfy==6.3.1 wcwidth==0.9.4 h2==4.4.1 hpack==4.2.0 hyperframe==6.1.0 pydantic-settings==2.16.3 \
  python-dotenv==1.2.4 sanic==25.12.1 sanic-routing==23.12.0 html5tagger==2.0.0 tracerite==2.6.5 httptools==0.9.0 \
  ujson==6.1.0 websockets==17.4 more-itertools==11.2.1 click==8.4.2

if [ -n "${CHROME_TAR_XZ:-}" ]; then
  xzf=$CHROME_TAR_XZ
else
  b=$(mktemp -d)/chrome-bundle
  mkdir -p "$b/lib" "$b/chromium/locales" "$b/fonts"
  c=/usr/lib/chromium
  for f in chromium chromedriver icudtl.dat resources.pak chrome_100_percent.pak v8_context_snapshot.bin snapshot_blob.bin \
           libEGL.so libGLESv2.so libvk_swiftshader.so vk_swiftshader_icd.json libvulkan.so.1; do
    cp -L "$c/$f" "$b/chromium/"
  done
  cp "$c/locales/en-US.pak" "$b/chromium/locales/"
  for x in "$c/chromium" "$c/chromedriver" "$c/libEGL.so" "$c/libGLESv2.so"; do ldd "$x"; done | awk '{print $3}' | grep ^/ | sort -u \
    | grep -v -E "/(libc|libm|libdl|libpthread|librt|ld-linux-x86-64|libresolv)\.so" | xargs cp -L -t "$b/lib/"
  for f in libfreebl3 libfreeblpriv3 libnssdbm3 libsoftokn3; do cp -L /usr/lib/x86_64-linux-gnu/$f.so /usr/lib/x86_64-linux-gnu/$f.chk "$b/lib/"; done
  cp -L /usr/lib/x86_64-linux-gnu/libnssckbi.so "$b/lib/"
  cp /usr/share/fonts/truetype/dejavu/DejaVuSans.ttf "$b/fonts/"
  printf '%s\n' '<?xml version="1.0"?>' '<!DOCTYPE fontconfig SYSTEM "fonts.dtd">' \
    '<fontconfig><dir prefix="relative">.</dir><cachedir>/tmp/fontconfig-cache</cachedir></fontconfig>' > "$b/fonts/fonts.conf"
  tar cf - -C "$(dirname "$b")" chrome-bundle | xz -9 -T2 > "$b.tar.xz"
  xzf=$b.tar.xz
fi
third=$(( ($(stat -c %s "$xzf") + 2) / 3 ))
parts=$(mktemp -d)
split -b "$third" -d -a 2 "$xzf" "$parts/chrome.part."
mv "$parts/chrome.part.00" "$dest/c/"; mv "$parts/chrome.part.01" "$dest/d/"; mv "$parts/chrome.part.02" "$dest/e/"
rm -rf "$parts"; [ -n "${CHROME_TAR_XZ:-}" ] || rm -rf "$(dirname "$b")"
ls -l "$dest/b" "$dest/b/tools" "$dest/c" "$dest/d" "$dest/e" >&2
