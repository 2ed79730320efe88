#!/usr/bin/env bash
# GPU checks and benchmarks, run on a lent GPU machine from the repository root:
#   bash tools/device_checks.sh OUTDIR
# Needs jsonschema/graphviz wheels in .whl/ where the machine lacks them (see docs/performance.md).
set -u
out=${1:-/tmp/secompile-device}; mkdir -p "$out"
if ls .whl/*.whl >/dev/null 2>&1; then
  python3 -m pip install -q --no-index --no-deps --no-compile --no-cache-dir --upgrade --target /tmp/site .whl/*.whl
  export PYTHONPATH=/tmp/site:$PWD
else
  export PYTHONPATH=$PWD
fi
export PYTHONUNBUFFERED=1
run() { local name=$1 limit=$2; shift 2; echo "### $name: $*" | tee -a "$out/summary.txt";
        timeout "$limit" "$@" 2>&1 | tee "$out/$name.log" | tail -40 >> "$out/summary.txt"; }
nvidia-smi -L | tee -a "$out/summary.txt"
python3 -c "import torch; print('torch', torch.__version__, torch.cuda.get_device_name(0))" | tee -a "$out/summary.txt"
run gpu_tests 150 python3 -m pytest -q -p no:cacheprovider -m gpu tests/test_gpu_readiness.py tests/test_inference.py tests/test_attention_ops.py
run bench_inference_cuda 120 python3 benchmarks/bench_inference.py --device cuda --amp --rounds 5 --skip jit
run bench_inference_cpu 200 taskset -c 0,1 python3 benchmarks/bench_inference.py --threads 2,1 --rounds 7
