#!/usr/bin/env bash
# The GPU checks in one command, for a CUDA machine: what it is, the `gpu`-marked tests (bf16-mixed on T5 and
# on the causal LM, two GPUs when there are two), then the GPU benchmark (bf16 autocast, batch 32). Logs and
# the benchmark JSON go to OUT_DIR (default ./gpu-check).
#
#   bash scripts/gpu_check.sh [OUT_DIR]
#
# In a checkout with compt installed (make install) it runs as it is. On an offline machine whose image has
# torch, transformers, pytorch-lightning and pytest but not the rest, first fetch the rest where pip works
# (bash scripts/offline_wheels.sh), bring .whl/ along, and this script installs it into a temporary folder.
# BENCH_TIMEOUT_S (default 420) bounds the benchmark; TEST_TIMEOUT_S (default 300) the tests.
set -uo pipefail
cd "$(dirname "$0")/.."
OUT_DIR=${1:-gpu-check}
mkdir -p "$OUT_DIR"
export HF_HUB_OFFLINE=1 HF_DATASETS_OFFLINE=1 WANDB_MODE=disabled TOKENIZERS_PARALLELISM=false PYTHONUNBUFFERED=1
PY=${PYTHON:-python3}

if [[ -d .whl ]] && compgen -G ".whl/*.whl" > /dev/null; then
  SITE=$(mktemp -d)
  "$PY" -m pip install -q --no-index --no-deps --no-compile --no-cache-dir --target "$SITE" .whl/*.whl || exit 1
  export PYTHONPATH="$SITE:$PWD/src:$PWD${PYTHONPATH:+:$PYTHONPATH}"
fi

{
  date -u
  nvidia-smi --query-gpu=name,memory.total,driver_version --format=csv 2>&1 || true
  "$PY" - <<'EOF'
import importlib.metadata as md
import platform

import torch

print("python", platform.python_version(), "| cuda", torch.version.cuda, "| devices", torch.cuda.device_count())
for name in ("torch", "transformers", "pytorch-lightning", "torchmetrics", "datasets", "hydra-core", "peft"):
    try:
        print(f"{name} {md.version(name)}")
    except md.PackageNotFoundError:
        print(f"{name} MISSING")
EOF
} 2>&1 | tee "$OUT_DIR/machine.txt"

status=0
timeout "${TEST_TIMEOUT_S:-300}" "$PY" -m pytest -q -p no:cacheprovider -m gpu tests/test_gpu.py tests/test_causal.py 2>&1 | tee "$OUT_DIR/gpu-tests.log"
(( PIPESTATUS[0] == 0 )) || status=1

timeout "${BENCH_TIMEOUT_S:-420}" "$PY" benchmarks/run.py --device cuda --dtype bf16 --peak-tflops 989 \
  --out "$OUT_DIR/bench-gpu.json" 2>&1 | tee "$OUT_DIR/bench-gpu.log"
(( PIPESTATUS[0] == 0 )) || status=1

echo "gpu_check: $([[ $status == 0 ]] && echo passed || echo FAILED); logs and bench-gpu.json in $OUT_DIR"
exit $status
