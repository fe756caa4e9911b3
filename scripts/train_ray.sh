#!/usr/bin/env bash
# SFT or DFT through verl's Ray trainer (single controller), on one node or a Ray cluster of several.
# Every argument is a Hydra override, as for scripts/train.sh.
#
#   Cluster:  on the head node `ray start --head --port=6379`, on each other node
#             `ray start --address=HEAD_IP:6379`, then on the head node:
#             NNODES=2 bash scripts/train_ray.sh preset=llama-3.1-8b loss.name=dft data.train_files=...
#   One node: bash scripts/train_ray.sh ... (starts a local Ray instance when none is running)
#   RAY_ADDRESS: the cluster to join (host:port; it must answer), unset: this machine's, else a local one
#               (scripts/ray_env.sh)
#   Print only: DRY_RUN=1 bash scripts/train_ray.sh ...
set -euo pipefail

NNODES=${NNODES:-1}
GPUS_PER_NODE=${GPUS_PER_NODE:-$(nvidia-smi -L 2>/dev/null | grep -c "^GPU " || true)}
if [ "$GPUS_PER_NODE" = 0 ]; then GPUS_PER_NODE=1; fi
DRY_RUN=${DRY_RUN:-0}

# shellcheck source=scripts/ray_env.sh
source "$(dirname "${BASH_SOURCE[0]}")/ray_env.sh"

cmd=(python -m dft train_ray trainer.nnodes="$NNODES" trainer.n_gpus_per_node="$GPUS_PER_NODE" "$@")

if [ "$DRY_RUN" = 1 ]; then
  printf '%q ' "${cmd[@]}"; echo
else
  ray_driver_env  # the cluster to join (RAY_ADDRESS, RAY_AUTH_MODE), or a fresh local Ray
  exec "${cmd[@]}"
fi
