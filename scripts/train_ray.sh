#!/usr/bin/env bash
# SFT or DFT through verl's Ray trainer (single controller), on one node or a Ray cluster of several.
# Every argument is a Hydra override, as for scripts/train.sh.
#
#   Cluster:  on the head node `ray start --head --port=6379`, on each other node
#             `ray start --address=HEAD_IP:6379`, then on the head node:
#             NNODES=2 bash scripts/train_ray.sh preset=llama-3.1-8b loss.name=dft data.train_files=...
#   One node: bash scripts/train_ray.sh ... (starts a local Ray instance when none is running)
#   Print only: DRY_RUN=1 bash scripts/train_ray.sh ...
set -euo pipefail

NNODES=${NNODES:-1}
GPUS_PER_NODE=${GPUS_PER_NODE:-$(nvidia-smi -L 2>/dev/null | grep -c "^GPU " || true)}
if [ "$GPUS_PER_NODE" = 0 ]; then GPUS_PER_NODE=1; fi
DRY_RUN=${DRY_RUN:-0}

export RAY_ADDRESS=${RAY_ADDRESS:-auto}
if ! ray status >/dev/null 2>&1; then unset RAY_ADDRESS; fi

cmd=(python -m dft train_ray trainer.nnodes="$NNODES" trainer.n_gpus_per_node="$GPUS_PER_NODE" "$@")

if [ "$DRY_RUN" = 1 ]; then
  printf '%q ' "${cmd[@]}"; echo
else
  exec "${cmd[@]}"
fi
