#!/usr/bin/env bash
# Run here, where PyPI is reachable, before the GPU check: the GPU machine has Python 3.12, torch, transformers and
# triton but no network, no verl and no Ray. Fills benchmarks/gpu/assets/ (ignored by git; the device tool's
# `carry` sends it, 64 MiB at most): the real Qwen2.5-Math-1.5B config.json and the wheels verl's imported modules
# need (versions as installed here). Ray is not sent (79 MB); check.py imports verl with a stand-in for it.
set -euo pipefail
export PIP_CONSTRAINT=""
cd "$(dirname "$0")"
SHARED=${SHARED:-../../../shared}
mkdir -p assets/wheels
cp "$SHARED/models/qwen2.5-math-1.5b/config.json" assets/config.json
python -m pip download --quiet --no-deps --only-binary=:all: --python-version 3.12 --implementation cp \
    --platform manylinux2014_x86_64 --platform manylinux_2_17_x86_64 --platform manylinux_2_28_x86_64 \
    -d assets/wheels verl==0.9.1 tensordict==0.10.0 omegaconf==2.3.1 hydra-core==1.3.8 cloudpickle==2.1.0 \
    pyvers==0.1.0 orjson codetiming==1.4.0 peft==0.21.2 accelerate==1.15.0 psutil==7.2.2
# antlr4-python3-runtime 4.9.3 (omegaconf's parser) is published as a source archive only
python -m pip wheel --quiet --no-deps -w assets/wheels antlr4-python3-runtime==4.9.3
du -sh assets
