#!/usr/bin/env bash
# Installs what caplab's build and tests need, idempotently (each step is skipped when done):
#   scripts/setup.sh wasm      the wasm32 target, wasm-bindgen-cli (the version Cargo.lock pins) and
#                              wasm-opt: only needed to rebuild the dashboard (frontend/dist is committed)
#   scripts/setup.sh browser   Debian's chromium and chromedriver, for the browser tests
set -euo pipefail
cd "$(dirname "$0")/.."
say() { echo "[setup] $*" >&2; }

wasm() {
  if ! rustup target list --installed 2>/dev/null | grep -qx wasm32-unknown-unknown; then
    say "adding the wasm32-unknown-unknown target"
    rustup target add wasm32-unknown-unknown
  fi
  local version; version=$(awk '/^name = "wasm-bindgen"$/ { getline; gsub(/version = |"/, ""); print; exit }' Cargo.lock)
  if [[ "$(wasm-bindgen --version 2>/dev/null || true)" != "wasm-bindgen $version" ]]; then
    install_wasm_bindgen "$version"
  fi
  # wasm-opt from npm's binaryen (Debian's binaryen 108 produces a wasm that crashes at start).
  if [[ ! -x .tools/node_modules/.bin/wasm-opt ]] && command -v npm >/dev/null; then
    say "installing wasm-opt (npm binaryen@132) under .tools/"
    mkdir -p .tools
    (cd .tools && npm install --silent --no-audit --no-fund binaryen@132 >/dev/null) || say "wasm-opt unavailable; the dashboard will be larger but works"
  fi
}

# `cargo install wasm-bindgen-cli --locked` fails here: its published Cargo.lock pins a
# webpki-roots release the registry no longer serves. scripts/wasm-bindgen-cli-VERSION.Cargo.lock
# is that lock with only webpki-roots moved to a served release, so the build stays pinned.
install_wasm_bindgen() {
  local version=$1 lock="scripts/wasm-bindgen-cli-$1.Cargo.lock" tmp
  tmp=$(mktemp -d)
  if [[ -f "$lock" ]]; then
    say "installing wasm-bindgen-cli $version from its pinned lock (about 8 minutes on 2 cores, once)"
    mkdir -p "$tmp/fetch/src"
    printf '[package]\nname = "fetch"\nversion = "0.0.0"\nedition = "2021"\n[dependencies]\nwasm-bindgen-cli = "=%s"\n' "$version" > "$tmp/fetch/Cargo.toml"
    echo 'fn main() {}' > "$tmp/fetch/src/main.rs"
    (cd "$tmp/fetch" && cargo fetch -q)
    local crate; crate=$(ls "${CARGO_HOME:-$HOME/.cargo}"/registry/cache/*/"wasm-bindgen-cli-$version.crate" | head -1)
    tar -xzf "$crate" -C "$tmp"
    cp "$lock" "$tmp/wasm-bindgen-cli-$version/Cargo.lock"
    cargo install --locked --path "$tmp/wasm-bindgen-cli-$version"
  else
    say "no pinned lock for wasm-bindgen-cli $version ($lock): installing unpinned"
    cargo install wasm-bindgen-cli --version "$version"
  fi
  rm -rf "$tmp"
}

browser() {
  if ! { command -v chromium && command -v chromedriver; } >/dev/null 2>&1; then
    say "installing chromium and chromedriver (Debian packages, about 30 s)"
    export DEBIAN_FRONTEND=noninteractive
    apt-get update -qq
    apt-get install -y -qq chromium chromium-driver >/dev/null
  fi
}

[[ $# -gt 0 ]] || { echo "usage: $0 wasm|browser ..." >&2; exit 2; }
for what in "$@"; do
  case "$what" in
    wasm) wasm ;;
    browser) browser ;;
    *) echo "usage: $0 wasm|browser ..." >&2; exit 2 ;;
  esac
done
say "ready: $*"
