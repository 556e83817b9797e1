#!/usr/bin/env bash
# On the CPU machine: build the vLLM 0.26.0 payload for the H200 (no network there) as two
# xz-compressed tar parts that each fit one device call (64 MiB per call, repo included).
#
#   pack.sh WORK DEST CAPLAB
#     WORK    scratch folder (wheel cache + the unpacked tree)
#     DEST    an ignored folder of the repo that device calls carry, e.g. .vx
#     CAPLAB  a caplab binary built here (x86-64, glibc 2.36; runs on the device's 2.39)
#
# Writes DEST/a/partA.tar.xz (vLLM's main CUDA extension, ~53 MiB) and DEST/b/partB.tar.xz (the
# rest of vLLM, FA3 included, + its missing dependencies, ~34 MiB) + DEST/b/caplab.xz (~3 MiB).
# The tree is what `pip install --no-deps --target` makes of wheels.txt, minus what a dense
# bf16 model on Hopper never loads:
#   vllm/vllm_flash_attn/_vllm_fa2_C.abi3.so   FA2 (Hopper uses FA3; the import is optional)
#   vllm/_moe_C_stable_libtorch.abi3.so        MoE kernels (imported under suppress(ImportError))
#   vllm/vllm-rs                               Rust frontend (only with VLLM_USE_RUST_FRONTEND=1)
#   vllm/third_party/{deep_gemm,fmha_sm100}    JIT sources/headers for FP8 GEMM and SM100 attention
set -euo pipefail
work=${1:?usage: pack.sh WORK DEST [CAPLAB]}; dest=${2:?}; caplab=${3:-}
here=$(cd "$(dirname "$0")" && pwd)
py=${PY:-python3}   # any python3 with a recent pip; the wheels are chosen for cp312 below
plat=""
for n in 39 35 34 31 28 27 24 17; do plat="$plat --platform manylinux_2_${n}_x86_64"; done
plat="$plat --platform manylinux2014_x86_64 --platform linux_x86_64 --platform any"
mkdir -p "$work/wheels" "$dest/a" "$dest/b"
grep -v '^#' "$here/wheels.txt" | grep . > "$work/wheels.req"
# shellcheck disable=SC2086
$py -m pip download -q --no-deps --only-binary=:all: --python-version 3.12 --implementation cp $plat \
  -d "$work/wheels" -r "$work/wheels.req"
# keep exactly the listed versions (the cache may hold others)
files=()
while read -r spec; do
  name=${spec%%==*}; ver=${spec#*==}
  norm=$(echo "$name" | tr 'A-Z-.' 'a-z__')
  f=$(ls "$work/wheels" | awk -v n="$norm" -v v="$ver" 'BEGIN{IGNORECASE=1} {split($0,a,"-"); x=a[1]; gsub(/[-.]/,"_",x); if (tolower(x)==n && a[2]==v) print}' | head -1)
  [ -n "$f" ] || { echo "no wheel for $spec" >&2; exit 1; }
  files+=("$work/wheels/$f")
done < "$work/wheels.req"
echo "${#files[@]} wheels, $(du -cb "${files[@]}" | tail -1 | cut -f1) bytes" >&2
rm -rf "$work/site"
# shellcheck disable=SC2086
$py -m pip install -q --no-deps --no-compile --only-binary=:all: --python-version 3.12 --implementation cp $plat \
  --target "$work/site" "${files[@]}"
s=$work/site
rm -rf "$s/bin" "$s/vllm/vllm-rs" "$s/vllm/third_party/deep_gemm" "$s/vllm/third_party/fmha_sm100" \
  "$s/vllm/vllm_flash_attn/_vllm_fa2_C.abi3.so" "$s/vllm/_moe_C_stable_libtorch.abi3.so"
find "$s" -name __pycache__ -prune -exec rm -rf {} +
a1=vllm/_C_stable_libtorch.abi3.so   # its CUDA code is compressed already: xz gains ~3 %
tar cf - -C "$s" "$a1" | xz -9e -T2 > "$dest/a/partA.tar.xz"
tar cf - -C "$s" --exclude="./$a1" . | xz -9 -T2 > "$dest/b/partB.tar.xz"
if [ -n "$caplab" ]; then xz -9 -c "$caplab" > "$dest/b/caplab.xz"; fi   # else: xz -9 -c CAPLAB > DEST/b/caplab.xz later
ls -l "$dest/a" "$dest/b" >&2
