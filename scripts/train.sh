#!/usr/bin/env bash
# SFT or DFT with torchrun on one GPU node or several. Every argument is a Hydra override of
# configs/dft_trainer.yaml (and of verl's sft_trainer_engine.yaml under it).
#
#   One node:      bash scripts/train.sh preset=qwen2.5-math-1.5b loss.name=dft data.train_files=data/numina/train.parquet
#   Several nodes: run on every node with the same MASTER_ADDR (a host all nodes reach) and JOB_ID:
#                  NNODES=4 MASTER_ADDR=node0 JOB_ID=dft-7b bash scripts/train.sh preset=qwen2.5-math-7b ...
#   Print only:    DRY_RUN=1 bash scripts/train.sh ...
#   Other command: COMMAND=ref_logprobs bash scripts/train.sh ... (same config; scores data: python -m dft ref_logprobs)
set -euo pipefail

NNODES=${NNODES:-1}
# default: one process per GPU that nvidia-smi lists, or 1 where it lists none
NPROC_PER_NODE=${NPROC_PER_NODE:-$(nvidia-smi -L 2>/dev/null | grep -c "^GPU " || true)}
if [ "$NPROC_PER_NODE" = 0 ]; then NPROC_PER_NODE=1; fi
MASTER_ADDR=${MASTER_ADDR:-localhost}
MASTER_PORT=${MASTER_PORT:-29500}
JOB_ID=${JOB_ID:-dft}
# the python -m dft command torchrun runs
COMMAND=${COMMAND:-train}
DRY_RUN=${DRY_RUN:-0}

if [ "$NNODES" = 1 ]; then
  rendezvous=(--standalone --nnodes=1)
else
  rendezvous=(--nnodes="$NNODES" --rdzv_backend=c10d --rdzv_endpoint="$MASTER_ADDR:$MASTER_PORT" --rdzv_id="$JOB_ID")
fi
cmd=(torchrun "${rendezvous[@]}" --nproc_per_node="$NPROC_PER_NODE" -m dft "$COMMAND" "$@")

if [ "$DRY_RUN" = 1 ]; then
  printf '%q ' "${cmd[@]}"; echo
else
  # bad overrides are refused here in seconds, one line each, rather than by every torchrun worker
  DFT_PREFLIGHT_ONLY=1 python -m dft "$COMMAND" "$@"
  for arg in "$@"; do case $arg in -h | --help) exit 0 ;; esac; done
  exec "${cmd[@]}"
fi
