#!/usr/bin/env bash
# Where caplab's CPU goes at 1,000 streams, beside the raw client's: `perf record` of each
# against the fixed-timing server (64 tokens, 2,000 requests), summed by crate. The result is
# bench/peers/profile.md, cited by BENCHMARKS.md. Needs `perf` (Debian's linux-perf) and the
# release binaries (bench/peers/run.sh builds them).
set -euo pipefail
cd "$(dirname "$0")/../.."
REL=target/release
DIR=$(mktemp -d); trap 'kill $(jobs -p) 2>/dev/null; rm -rf "$DIR"' EXIT
"$REL/bench-server" --listen 127.0.0.1:0 > "$DIR/server.out" &
until grep -q http:// "$DIR/server.out" 2>/dev/null; do sleep 0.1; done
URL=$(grep -o 'http://[0-9.:]*' "$DIR/server.out")
# The benchmark's load: /v1/completions with a one-word prompt (a batch run of one document).
printf 'workload = "batch"\nmodel = "bench"\nconcurrency = [1000]\nmax_new_tokens = [64]\nrequests = 2000\n' > "$DIR/spec.toml"
printf '[DOC]\nhello\n' > "$DIR/docs.txt"
perf record -q -F 999 -g -o "$DIR/caplab.data" "$REL/caplab" run "$DIR/spec.toml" --target "$URL" --out "$DIR/runs" --docs "$DIR/docs.txt" > /dev/null 2>&1
perf record -q -F 999 -g -o "$DIR/raw.data" "$REL/raw-client" "$URL" 1000 2000 64 > /dev/null 2>&1
for who in caplab raw; do
  perf report -i "$DIR/$who.data" --stdio --no-children --sort symbol -g none 2>/dev/null > "$DIR/$who.txt"
done
python3 - "$DIR" > bench/peers/profile.md <<'PY'
import re, sys, collections
d = sys.argv[1]
def crates(path):
    shares = collections.Counter()
    top = []
    for line in open(path):
        m = re.match(r"\s+([\d.]+)%\s+\[(.)\]\s+(.*)", line)
        if not m:
            continue
        pct, kind, sym = float(m.group(1)), m.group(2), m.group(3).split("   ")[0].strip()
        if kind == "k":
            crate = "kernel (TCP, epoll, scheduling)"
        else:
            s = sym.lstrip("<&*").removeprefix("mut ")
            crate = re.split(r"::|<| as ", s, maxsplit=1)[0] or "?"
            if crate.startswith(("_", "__")) or crate in ("malloc", "free", "cfree@GLIBC_2.2.5", "unlink_chunk.constprop.0", "_int_free", "_int_malloc") or "@" in crate or "." in crate or crate.startswith("0x"):
                crate = "libc (memcpy, malloc, syscalls)"
        shares[crate] += pct
        if len(top) < 15:
            top.append((pct, kind, sym[:110]))
    return shares, top
print("# Where the CPU goes at 1,000 streams: caplab and the raw client\n")
print("Made by `bench/peers/profile.sh`: `perf record -F 999 -g` of each against the fixed-timing server")
print("(1,000 concurrent streams, 2,000 requests of 64 tokens), samples summed by the crate of their symbol.\n")
for who, title in (("caplab", "caplab run"), ("raw", "raw-client")):
    shares, top = crates(f"{d}/{who}.txt")
    print(f"## {title}\n\n| where | share of samples |\n|---|---|")
    for crate, pct in shares.most_common(12):
        print(f"| {crate} | {pct:.1f} % |")
    print("\nTop symbols:\n")
    for pct, kind, sym in top:
        print(f"- {pct:.2f} % `{sym}`")
    print()
PY
echo "wrote bench/peers/profile.md" >&2
