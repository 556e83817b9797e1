#!/usr/bin/env bash
# Builds the wasm dashboard into frontend/dist, which is committed and embedded in the caplab
# binary at build time (so `scripts/serve.sh` needs only `cargo build`).
#   scripts/build-frontend.sh           rebuild (installs the wasm toolchain first if missing)
#   scripts/build-frontend.sh --check   exit 1 if frontend/dist was not built from today's sources
# frontend/dist/SOURCES names the hash of every input of the build; --check recomputes it.
set -euo pipefail
cd "$(dirname "$0")/.."
OUT=frontend/dist

sources_hash() {
  # Everything the wasm is made from: the frontend, the shared types, the page, the lock, this
  # script. Tracked files and new ones not yet added (but not ignored ones), each hashed as git
  # stores it (`git hash-object` applies the checkout's line-ending filters), so a build made
  # before `git add` of a new source file still matches the clone of the commit that adds it.
  git ls-files -z --cached --others --exclude-standard -- frontend shared index.html Cargo.lock Cargo.toml scripts/build-frontend.sh \
    | tr '\0' '\n' | grep -v "^$OUT" | LC_ALL=C sort \
    | while IFS= read -r f; do
        if [[ -f "$f" ]]; then echo "$f $(git hash-object -- "$f")"; fi
      done \
    | sha256sum | cut -d' ' -f1
}

if [[ "${1:-}" == --check ]]; then
  if ! git rev-parse --is-inside-work-tree >/dev/null 2>&1; then
    echo "[build-frontend] not a git checkout: cannot check frontend/dist, using it as committed" >&2
    exit 0
  fi
  want=$(sources_hash)
  have=$(cat "$OUT/SOURCES" 2>/dev/null || echo none)
  if [[ "$want" != "$have" ]]; then
    echo "[build-frontend] frontend/dist is stale (built from $have, sources are $want):" >&2
    echo "[build-frontend] run scripts/build-frontend.sh and commit frontend/dist" >&2
    exit 1
  fi
  echo "[build-frontend] frontend/dist is fresh" >&2
  exit 0
fi

HASH=$(sources_hash)   # of the sources as they are when the build starts
scripts/setup.sh wasm
PROFILE="${CAPLAB_WASM_PROFILE:-wasm-release}"
cargo build -p caplab-frontend --target wasm32-unknown-unknown --profile "$PROFILE"
rm -rf "$OUT.new" && mkdir -p "$OUT.new/pkg"
wasm-bindgen --target web --no-typescript --out-dir "$OUT.new/pkg" \
  "target/wasm32-unknown-unknown/$PROFILE/caplab_frontend.wasm"
if [[ -x .tools/node_modules/.bin/wasm-opt ]]; then
  .tools/node_modules/.bin/wasm-opt -Oz --enable-bulk-memory --enable-nontrapping-float-to-int \
    --enable-sign-ext --enable-mutable-globals --enable-reference-types --enable-multivalue \
    "$OUT.new/pkg/caplab_frontend_bg.wasm" -o "$OUT.new/pkg/caplab_frontend_bg.wasm"
fi
cp index.html "$OUT.new/index.html"
echo "$HASH" > "$OUT.new/SOURCES"
rm -rf "$OUT" && mv "$OUT.new" "$OUT"
echo "[build-frontend] $(du -h "$OUT/pkg/caplab_frontend_bg.wasm" | cut -f1) wasm in $OUT" >&2
