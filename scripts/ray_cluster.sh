#!/usr/bin/env bash
# Start or stop this node's part of a Ray cluster, for scripts/train_ray.sh and dft eval's Ray backends.
#
#   Head node:    ROLE=head bash scripts/ray_cluster.sh            (prints what to run on the other nodes)
#   Other nodes:  ROLE=worker HEAD_ADDR=node0 bash scripts/ray_cluster.sh
#   Then, on the head node: NNODES=2 bash scripts/train_ray.sh preset=llama-3.1-8b loss.name=dft ...
#   Stop (each node): ROLE=stop bash scripts/ray_cluster.sh
#   Print only:   DRY_RUN=1 ROLE=head bash scripts/ray_cluster.sh
# scripts/slurm/train_ray.sbatch runs it on every node of a SLURM job (with BLOCK=1).
set -euo pipefail

# GPUs this node offers: CUDA_VISIBLE_DEVICES when set (SLURM sets it to the job's GPUs), else nvidia-smi's list
gpus_here() {
  if [ -n "${CUDA_VISIBLE_DEVICES:-}" ]; then
    local ids
    IFS=, read -ra ids <<<"$CUDA_VISIBLE_DEVICES"
    echo "${#ids[@]}"
  else
    nvidia-smi -L 2>/dev/null | grep -c '^GPU ' || true
  fi
}

ROLE=${ROLE:-}
HEAD_ADDR=${HEAD_ADDR:-}
RAY_PORT=${RAY_PORT:-6379}
NUM_GPUS=${NUM_GPUS:-$(gpus_here)}
NUM_CPUS=${NUM_CPUS:-}
NODE_IP=${NODE_IP:-}
BLOCK=${BLOCK:-0}
DRY_RUN=${DRY_RUN:-0}

die() { echo "ray_cluster.sh: $*" >&2; exit 2; }

resources=(--num-gpus="$NUM_GPUS")
if [ -n "$NUM_CPUS" ]; then resources+=(--num-cpus="$NUM_CPUS"); fi
if [ -n "$NODE_IP" ]; then resources+=(--node-ip-address="$NODE_IP"); fi
# --block keeps `ray start` in the foreground, as a SLURM step must be
if [ "$BLOCK" = 1 ]; then resources+=(--block); fi

case "$ROLE" in
  head)
    cmd=(ray start --head --port="$RAY_PORT" "${resources[@]}")
    echo "ray_cluster.sh: on each other node run: ROLE=worker HEAD_ADDR=${NODE_IP:-$(hostname)}" \
      "RAY_PORT=$RAY_PORT bash scripts/ray_cluster.sh" >&2
    ;;
  worker)
    if [ -z "$HEAD_ADDR" ]; then die "ROLE=worker needs HEAD_ADDR, the head node's host name or IP"; fi
    # HEAD_ADDR may already carry a port (host:port, as `ray start --head` prints it)
    case "$HEAD_ADDR" in
      *:*) address=$HEAD_ADDR ;;
      *) address=$HEAD_ADDR:$RAY_PORT ;;
    esac
    cmd=(ray start --address="$address" "${resources[@]}")
    ;;
  stop)
    cmd=(ray stop)
    ;;
  *)
    die "ROLE must be head, worker or stop (got ROLE='$ROLE')"
    ;;
esac

if [ "$DRY_RUN" = 1 ]; then
  printf '%q ' "${cmd[@]}"; echo
else
  exec "${cmd[@]}"
fi
