#!/usr/bin/env bash
# On the CPU machine, before spending device time: check that the packed tree imports with the
# device image's packages. A venv with torch 2.11.0+cu130 (PyPI's, CUDA libraries and all: it
# imports without a GPU) and the image's other packages stands in for the device's python3; a stub
# libcuda.so.1 (the 16 driver symbols vLLM's extensions link) lets the CUDA extensions load, which
# also proves they match this torch's ABI.
#
#   localcheck.sh WORK DEST      (WORK and DEST as given to pack.sh)
# Makes WORK/venv on first use (~5 GB, a few minutes), unpacks DEST/{a,b} into WORK/check-site,
# imports the modules a dense-model server touches, and builds the serve/bench argument parsers.
set -euo pipefail
work=${1:?usage: localcheck.sh WORK DEST}; dest=${2:?}
here=$(cd "$(dirname "$0")" && pwd)
py312=${PY312:-python3.12}
v=$work/venv
if [ ! -x "$v/bin/python" ]; then
  $py312 -m venv "$v"; "$v/bin/pip" install -q -U pip
  "$v/bin/pip" download -q --no-deps -d "$work/torchdl" torch==2.11.0
  "$v/bin/pip" install -q --no-deps "$work"/torchdl/torch-2.11.0-*.whl
  # torch's own pins, except nvidia-nccl-cu13==2.28.9, which PyPI does not serve
  "$v/bin/pip" install -q 'cuda-toolkit[cublas,cudart,cufft,cufile,cupti,curand,cusolver,cusparse,nvjitlink,nvrtc,nvtx]==13.0.2' \
    'cuda-bindings>=13.0.3,<14' nvidia-cudnn-cu13==9.19.0.56 nvidia-cusparselt-cu13==0.8.0 nvidia-nvshmem-cu13==3.4.5 \
    nvidia-nccl-cu13 triton==3.6.0 filelock typing-extensions 'setuptools<82' sympy networkx jinja2 fsspec
  # the device image's packages that vLLM uses (versions as KINDS.md gives them, else the latest)
  "$v/bin/pip" install -q transformers==5.17.0 tokenizers==0.23.2 safetensors==0.8.0 huggingface_hub==1.33.0 \
    numpy==2.5.2 sentencepiece==0.2.2 tiktoken==0.14.0 aiohttp anyio attrs certifi charset-normalizer click \
    cloudpickle einops h11 hf-xet httpcore httpx idna markupsafe msgpack multidict ninja numba \
    opencv-python-headless packaging pillow prometheus-client propcache protobuf psutil py-cpuinfo pyyaml regex \
    requests rich six tqdm typer urllib3 uvloop yarl annotated-doc nvidia-ml-py aiosignal aiohappyeyeballs \
    frozenlist cuda-pathfinder pandas
fi
rm -rf "$work/check-site"; mkdir -p "$work/check-site" "$work/stub"
for p in "$dest/a/partA.tar.xz" "$dest/b/partB.tar.xz"; do tar xJf "$p" -C "$work/check-site"; done
# a stub libcuda.so.1 with every driver symbol the carried extensions link
find "$work/check-site/vllm" -name '*.so' -exec nm -D --undefined-only {} \; | awk '{print $2}' \
  | grep -E '^cu[A-Z]' | sed 's/@.*//' | sort -u | while read -r s; do echo "int $s(void){return 100;}"; done > "$work/stub/cuda_stub.c"
gcc -shared -fPIC -o "$work/stub/libcuda.so.1" -Wl,-soname,libcuda.so.1 "$work/stub/cuda_stub.c"
export PYTHONPATH=$work/check-site LD_LIBRARY_PATH=$work/stub VLLM_USE_FLASHINFER_SAMPLER=0
cd /tmp
"$v/bin/python" "$here/imptest.py"
"$v/bin/python" "$here/imptest.py" --cli serve --help=all > "$work/serve_help.txt"
"$v/bin/python" "$here/imptest.py" --cli bench serve --help=all > "$work/bench_help.txt"
for f in --max-model-len --num-gpu-blocks-override --max-num-seqs --attention-backend --enforce-eager \
         --disable-uvicorn-access-log --seed --dtype; do
  grep -q -- "$f" "$work/serve_help.txt" || { echo "serve lacks $f" >&2; exit 1; }
done
for f in --base-url --endpoint --dataset-name --random-input-len --random-output-len --random-range-ratio \
         --ignore-eos --max-concurrency --num-prompts --num-warmups --save-result --result-dir --result-filename \
         --percentile-metrics --metric-percentiles --disable-tqdm; do
  grep -q -- "$f" "$work/bench_help.txt" || { echo "bench serve lacks $f" >&2; exit 1; }
done
echo "localcheck: imports and CLI flags OK" >&2
