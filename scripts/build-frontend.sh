#!/usr/bin/env bash
# Builds the wasm dashboard into frontend/dist (which the caplab binary embeds at build time).
set -euo pipefail
cd "$(dirname "$0")/.."
PROFILE="${CAPLAB_WASM_PROFILE:-wasm-release}"
cargo build -p caplab-frontend --target wasm32-unknown-unknown --profile "$PROFILE"
OUT=frontend/dist
rm -rf "$OUT.new" && mkdir -p "$OUT.new/pkg"
wasm-bindgen --target web --no-typescript --out-dir "$OUT.new/pkg" \
  "target/wasm32-unknown-unknown/$PROFILE/caplab_frontend.wasm"
if [[ -x .tools/node_modules/.bin/wasm-opt ]]; then
  .tools/node_modules/.bin/wasm-opt -Oz --enable-bulk-memory --enable-nontrapping-float-to-int \
    --enable-sign-ext --enable-mutable-globals --enable-reference-types --enable-multivalue \
    "$OUT.new/pkg/caplab_frontend_bg.wasm" -o "$OUT.new/pkg/caplab_frontend_bg.wasm"
fi
cp index.html "$OUT.new/index.html"
rm -rf "$OUT" && mv "$OUT.new" "$OUT"
echo "[build-frontend] $(du -h "$OUT/pkg/caplab_frontend_bg.wasm" | cut -f1) wasm in $OUT" >&2
