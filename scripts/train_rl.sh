#!/usr/bin/env bash
# PPO or GRPO, the online RL baselines of the DFT paper (Table 3), through verl's own trainer
# (python -m verl.trainer.main_ppo) with configs/ppo_gae_trainer.yaml or configs/grpo_trainer.yaml. Every argument is a
# Hydra override of that config (and of verl's ppo_trainer under it); later ones win over the knobs below.
#
#   Data:       python -m dft data rl --out data/rl --input data/numina/train.parquet --n 10000 \
#                   --selection first --val-size 500
#   One node:   ALGO=grpo bash scripts/train_rl.sh (starts a local Ray instance when none is running)
#   Cluster:    start Ray as for scripts/train_ray.sh, then on the head node: NNODES=2 ALGO=ppo bash scripts/train_rl.sh
#   Print only: DRY_RUN=1 ALGO=ppo bash scripts/train_rl.sh trainer.total_epochs=2
#   CPU:        ALGO=grpo MODEL=/tmp/tiny/model DATA_DIR=/tmp/tiny/rl bash scripts/train_rl.sh rl_setting=tiny-cpu
#               (2 training processes, the Hugging Face rollout: configs/rl_setting/tiny-cpu.yaml)
set -euo pipefail

REPO=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)

ALGO=${ALGO:-grpo}
MODEL=${MODEL:-Qwen/Qwen2.5-Math-1.5B}
DATA_DIR=${DATA_DIR:-$REPO/data/rl}
NNODES=${NNODES:-1}
GPUS_PER_NODE=${GPUS_PER_NODE:-$(nvidia-smi -L 2>/dev/null | grep -c '^GPU' || true)}
DRY_RUN=${DRY_RUN:-0}

case "$ALGO" in
  grpo) config=grpo_trainer ;;
  ppo) config=ppo_gae_trainer ;;
  *) echo "ALGO=$ALGO is not a known algorithm; valid: grpo, ppo" >&2; exit 2 ;;
esac

# a CPU setting says how many training processes a node runs; GPUS_PER_NODE still wins when given
on_cpu=0
for arg in "$@"; do [[ "$arg" == rl_setting=*cpu* ]] && on_cpu=1; done
if [ "$on_cpu" = 1 ] && [ "$GPUS_PER_NODE" = 0 ]; then GPUS_PER_NODE=; fi

cmd=(python -m verl.trainer.main_ppo --config-path "$REPO/configs" --config-name "$config"
  actor_rollout_ref.model.path="$MODEL"
  data.train_files="$DATA_DIR/train.parquet"
  data.val_files="$DATA_DIR/val.parquet"
  trainer.nnodes="$NNODES"
  ${GPUS_PER_NODE:+trainer.n_gpus_per_node="$GPUS_PER_NODE"}
  "$@")

if [ "$DRY_RUN" = 1 ]; then
  printf '%q ' "${cmd[@]}"; echo
  exit 0
fi
if [ "$GPUS_PER_NODE" = 0 ]; then
  echo "no GPU found (nvidia-smi): set GPUS_PER_NODE, or run on the CPU with rl_setting=tiny-cpu" >&2
  exit 2
fi
# join the running Ray cluster (scripts/ray_cluster.sh) if there is one; RAY_ADDRESS= (empty) starts a fresh one
# shellcheck source=scripts/ray_env.sh
source "$REPO/scripts/ray_env.sh"
ray_driver_env
if [ "$RAY_ADDRESS" != local ]; then
  # ray.init() refuses resource and dashboard settings when it joins a running cluster (a CPU setting sets them
  # for its own local Ray); the cluster's nodes declared theirs when they started
  cmd+=(++ray_kwargs.ray_init.num_cpus=null ++ray_kwargs.ray_init.num_gpus=null
    ++ray_kwargs.ray_init.include_dashboard=null)
fi
exec "${cmd[@]}"
