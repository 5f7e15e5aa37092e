#!/usr/bin/env bash
# GPU checks in one run (under ten minutes on one GPU: the timeouts below add up to 590 s): the CUDA tests, then the engine benchmarks on cuda.
#
# On a machine whose python3 already has a CUDA torch, e3nn and PyG, but not Cooper, first put wheels of the
# pure-Python dependencies in .whl/ (on a machine with internet):
#     python3 -m pip download --no-deps --only-binary=:all: -d .whl cooper-optim==1.0.1
# then, in the repository root of the GPU machine:
#     OUT=/some/folder bash benchmarks/gpu.sh
# Every log lands in $OUT (default: runs/gpu); paste the figures with the device name into docs/performance.md.
set -uo pipefail
cd "$(dirname "$0")/.."
OUT=${OUT:-runs/gpu}
mkdir -p "$OUT"
if [ -d .whl ] && ls .whl/*.whl >/dev/null 2>&1; then
    python3 -m pip install -q --no-index --no-deps --no-compile --target /tmp/ceq-site .whl/*.whl || exit 1
    export PYTHONPATH=/tmp/ceq-site:${PYTHONPATH:-}
fi
export PYTHONPATH=$PWD:${PYTHONPATH:-} PYTHONUNBUFFERED=1
python3 - <<'PY' | tee "$OUT/device.txt" || exit 1
import torch
assert torch.cuda.is_available(), "no CUDA device: run this script on a GPU machine"
print(torch.cuda.get_device_name(0), "| torch", torch.__version__, "| CUDA", torch.version.cuda)
PY
status=0
step() {  # step NAME TIMEOUT_S COMMAND...
    local name=$1 limit=$2; shift 2
    echo "== $name"
    timeout "$limit" "$@" 2>&1 | tee "$OUT/$name.log"
    local rc=${PIPESTATUS[0]}
    [ "$rc" -eq 0 ] || { echo "!! $name exited $rc"; status=1; }
}
# Tests that take a device (conftest's `device` fixture, the sync-free step under set_sync_debug_mode("error")).
step cuda_tests 200 python3 -m pytest -q -p no:cacheprovider -k cuda tests
step engine_vs_hand_mlp 60 python3 benchmarks/engine_vs_hand.py --device cuda --steps 200
step engine_vs_hand_egnn 60 python3 benchmarks/engine_vs_hand.py --device cuda --steps 200 --model egnn
step layers_scaling 90 python3 benchmarks/layers_scaling.py --device cuda --steps 100
step strategies 80 python3 benchmarks/strategies.py --device cuda --steps 100
step compile 100 python3 benchmarks/compile.py --device cuda --steps 30
exit $status
