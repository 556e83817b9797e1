#!/usr/bin/env bash
# The peer comparison on the H200 (issue 20, deliverables 3 and 4), one device call at a time, after
# stage1.sh (the model) and `measure.sh SHAPE --unpack .vx/b` (vLLM, caplab, and the tools of
# pack_tools.sh: GuideLLM, the raw client, bench-live) on the same warm machine:
#   bash bench/gpu/vllm/peers.sh SHAPE [--chrome PART] [--live C] [STREAMS ...]
# STREAMS        the numbers of streams to compare the four tools at (peers.py: caplab, the raw
#                client, `vllm bench serve`, GuideLLM; chat, caplab's 16 prompts, 256 out, 2 x C requests)
# --chrome PART  a piece of the headless Chromium bundle (pack_tools.sh splits it in two, one per call):
#                kept in VX_HOME until all pieces are there, then unpacked into VX_CHROME
# --live C       after the tools: one `caplab serve` run at C streams with a WebSocket viewer and the
#                dashboard in headless Chromium (needs the whole Chromium bundle)
# vLLM (SHAPE, --max-model-len 4096, defaults otherwise) is started once and left running for the next
# call; a call finds it by its saved pid. Results: VX_HOME/res/peers (kept across calls) and, after
# every run, $OUT/peers/peers.json and $OUT/peers.tgz.
set -u
shape=${1:?SHAPE}; shift
chrome=""; live=0; streams=()
while [ $# -gt 0 ]; do
  case "$1" in
    --chrome) chrome=$2; shift 2 ;;
    --live) live=$2; shift 2 ;;
    *) streams+=("$1"); shift ;;
  esac
done
RES=${VX_HOME:-/root/vx}/res/peers; mkdir -p "$RES"
source "$(dirname "$0")/lib.sh"
DEADLINE=${VX_DEADLINE:-570}
VX_MODEL=$VX_MODELS/model-$shape
trap 'pack peers' EXIT
log "peers on $(hostname): streams ${streams[*]:-none}, live ${live}, chrome part ${chrome:-none}"

if [ -n "$chrome" ]; then
  cp "$chrome" "$VX_HOME/chrome.part.$(basename "$chrome" | sed 's/.*\.//')"
  ls -l "$VX_HOME"/chrome.part.* >&2
fi
if (( live > 0 )) && [ ! -x "$VX_CHROME/chromium/chromium" ]; then
  # the pieces in name order make the xz tar again
  cat "$VX_HOME"/chrome.part.* > "$VX_HOME/chrome.tar.xz"
  rm -rf "$VX_CHROME" "$VX_HOME/chrome-unpack"
  $PY -c "
import sys, tarfile
with tarfile.open(sys.argv[1]) as tf:
    tf.extractall(sys.argv[2], filter='tar')
" "$VX_HOME/chrome.tar.xz" "$VX_HOME/chrome-unpack" && mv "$VX_HOME/chrome-unpack/chrome-bundle" "$VX_CHROME"
  log "chromium unpacked: $(ls "$VX_CHROME/chromium" 2>&1 | tr '\n' ' ')"
fi
if (( live > 0 )); then
  # chromedriver starts Chromium with this environment: the carried libraries, a font, a log
  cat > "$VX_HOME/chromedriver" <<EOF
#!/bin/sh
export LD_LIBRARY_PATH=$VX_CHROME/lib:$VX_CHROME/chromium FONTCONFIG_FILE=$VX_CHROME/fonts/fonts.conf
exec $VX_CHROME/chromium/chromedriver --log-path=$RES/chromedriver.log "\$@"
EOF
  chmod +x "$VX_HOME/chromedriver"
  export CHROMEDRIVER=$VX_HOME/chromedriver CHROMIUM=$VX_CHROME/chromium/chromium
  LD_LIBRARY_PATH=$VX_CHROME/lib:$VX_CHROME/chromium "$CHROMIUM" --version >&2
fi

for f in "$CAPLAB" "$VX_HOME/raw-client"; do
  [ -x "$f" ] || { log "FATAL: $f missing: run measure.sh SHAPE --unpack .vx/b first (a fresh machine?)"; exit 3; }
done
"$CAPLAB" --version >&2
PYTHONPATH=$VX_GSITE:$VX_SITE $PY -c "import guidellm, importlib.metadata as m; print('guidellm', m.version('guidellm'))" >&2 \
  || log "GuideLLM does not import: its runs will fail and say why"

if curl -sf -m 2 "$URL/health" >/dev/null && [ "$(cat "$VX_HOME/vllm_model" 2>/dev/null)" = "$VX_MODEL" ]; then
  log "vLLM already serving $VX_MODEL"
else
  stop_vllm
  start_smi "$VX_HOME/smi_peers.csv"
  # shellcheck disable=SC2046
  start_vllm vllm_peers 240 $(vllm_args A) || exit 1
  echo "$VX_MODEL" > "$VX_HOME/vllm_model"
  curl -s -m 60 "$URL/v1/chat/completions" -H 'content-type: application/json' \
    -d "{\"model\":\"$VX_MODEL\",\"messages\":[{\"role\":\"user\",\"content\":\"warm up\"}],\"max_tokens\":8}" > "$RES/warmup.txt"
fi
metrics "peers_start_$(date +%s)"
$PY "$VX_HERE/peers.py" --url "$URL" --model "${VX_SERVED:-$VX_MODEL}" --tokenizer "$VX_MODEL" --caplab "$CAPLAB" --raw-client "$VX_HOME/raw-client" \
  --gsite "$VX_GSITE" --site "$VX_SITE" --prompts "$VX_HERE/../../../data/chat_prompts.txt" --out "$RES" \
  --mirror "$OUT/peers" --deadline $(( T0 + DEADLINE )) ${VX_PEERS_TOOLS:+--tools "$VX_PEERS_TOOLS"} \
  ${live:+--live "$live" --bench-live "$VX_HOME/bench-live"} "${streams[@]}" 2>&1 | tee -a "$RES/peers.log"
metrics "peers_end_$(date +%s)"
log "peers: done, $(left) s left"
