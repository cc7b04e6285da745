#!/usr/bin/env bash
# Wheels for a GPU machine that cannot reach PyPI but whose image already has the heavy stack (torch,
# transformers, pytorch-lightning, torchmetrics, peft, pandas, pytest): compt's other run-time needs, fetched
# here (where pip works) into .whl/ (git-ignored), for that machine's Python. scripts/gpu_check.sh installs them
# there with --no-index --no-deps.
#
#   bash scripts/offline_wheels.sh                  # CPython 3.12, manylinux x86-64 (the default)
#   PY_VERSION=3.11 bash scripts/offline_wheels.sh  # another Python
#   WITH_PYARROW=0 bash scripts/offline_wheels.sh   # leave out pyarrow (~55 MB) when the image's is >= 24
set -euo pipefail
cd "$(dirname "$0")/.."
PY_VERSION=${PY_VERSION:-3.12}
WITH_PYARROW=${WITH_PYARROW:-1}
DEST=.whl
rm -rf "$DEST"
mkdir -p "$DEST"

# exact versions, so that one wheel of each travels (two versions of one package stop an install)
PURE=(
  "hydra-core==1.3.8"
  "omegaconf==2.3.1"
  "datasets==5.2.0"
  "dill==0.4.1"
  "multiprocess==0.70.19"
)
BINARY=()
[[ "$WITH_PYARROW" == 1 ]] && BINARY+=("pyarrow==26.0.1")  # datasets 5.2 needs pyarrow >= 24

platforms=()
for tag in manylinux_2_28_x86_64 manylinux_2_27_x86_64 manylinux_2_17_x86_64 manylinux2014_x86_64; do
  platforms+=(--platform "$tag")
done
python3 -m pip download -q --no-deps --only-binary=:all: --python-version "$PY_VERSION" --implementation cp \
  "${platforms[@]}" -d "$DEST" "${PURE[@]}" "${BINARY[@]}"
# hydra's parser runtime is published as a source archive only; it is pure Python, so build its wheel here
python3 -m pip wheel -q --no-deps -w "$DEST" "antlr4-python3-runtime==4.9.3"

ls -1 "$DEST"
du -sh "$DEST"
