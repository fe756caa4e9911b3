#!/usr/bin/env bash
# On the lent GPU machine (no network): install the carried wheels, then run the check; the report goes to $OUT.
#   run(command="bash benchmarks/gpu/run.sh", carry=["benchmarks/gpu/assets"], timeout_s=540)
set -euo pipefail
cd "$(dirname "$0")/../.."
python -m pip install --quiet --no-index --no-deps benchmarks/gpu/assets/wheels/*.whl
python benchmarks/gpu/check.py --out "${OUT:-gpu_check}" --config benchmarks/gpu/assets/config.json
