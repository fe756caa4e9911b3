#!/usr/bin/env bash
# Start or stop this node's part of a Ray cluster, for scripts/train_ray.sh and dft eval's Ray backends.
#
#   Head node:    ROLE=head bash scripts/ray_cluster.sh            (prints what to run on the other nodes)
#   Other nodes:  ROLE=worker HEAD_ADDR=node0 bash scripts/ray_cluster.sh
#   Then, on the head node: NNODES=2 bash scripts/train_ray.sh preset=llama-3.1-8b loss.name=dft ...
#   Stop (each node): ROLE=stop bash scripts/ray_cluster.sh
#   Print only:   DRY_RUN=1 ROLE=head bash scripts/ray_cluster.sh
#   Extra arguments go to `ray start` (e.g. --include-dashboard=false).
# Ray 2.60's head turns token authentication on and writes its token to ~/.ray/auth_token; every other node (and
# every driver) must hold the same token: a shared home, RAY_AUTH_TOKEN_PATH=<a copy of that file>, or
# RAY_AUTH_TOKEN=<its text>. RAY_AUTH_MODE=token is set here for head and workers (RAY_AUTH_MODE=disabled opts out).
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
NODE_NAME=${NODE_NAME:-}
BLOCK=${BLOCK:-0}
DRY_RUN=${DRY_RUN:-0}

die() { echo "ray_cluster.sh: $*" >&2; exit 2; }

# a worker started without RAY_AUTH_MODE=token is refused by a 2.60 head (AuthenticationError: InvalidAuthToken)
export RAY_AUTH_MODE=${RAY_AUTH_MODE:-token}
token_file=${RAY_AUTH_TOKEN_PATH:-$HOME/.ray/auth_token}
has_token() { [ -n "${RAY_AUTH_TOKEN:-}" ] || [ -s "$token_file" ]; }

resources=(--num-gpus="$NUM_GPUS")
if [ -n "$NUM_CPUS" ]; then resources+=(--num-cpus="$NUM_CPUS"); fi
if [ -n "$NODE_IP" ]; then resources+=(--node-ip-address="$NODE_IP"); fi
# the name Ray reports for this node (ray.nodes()' NodeName; the node's IP by default): SLURM's host name under sbatch
if [ -n "$NODE_NAME" ]; then resources+=(--node-name="$NODE_NAME"); fi
# --block keeps `ray start` in the foreground, as a SLURM step must be
if [ "$BLOCK" = 1 ]; then resources+=(--block); fi

case "$ROLE" in
  head)
    # a head with token authentication needs a token; a new machine has none (the head would refuse to start)
    if [ "$RAY_AUTH_MODE" = token ] && ! has_token && [ "$DRY_RUN" != 1 ]; then
      ray get-auth-token --generate >/dev/null
    fi
    cmd=(ray start --head --port="$RAY_PORT" "${resources[@]}" "$@")
    echo "ray_cluster.sh: on each other node run: ROLE=worker HEAD_ADDR=${NODE_IP:-$(hostname)}" \
      "RAY_PORT=$RAY_PORT bash scripts/ray_cluster.sh (with this node's $token_file there, or RAY_AUTH_TOKEN)" >&2
    ;;
  worker)
    if [ -z "$HEAD_ADDR" ]; then die "ROLE=worker needs HEAD_ADDR, the head node's host name or IP"; fi
    # HEAD_ADDR may already carry a port (host:port, as `ray start --head` prints it)
    case "$HEAD_ADDR" in
      *:*) address=$HEAD_ADDR ;;
      *) address=$HEAD_ADDR:$RAY_PORT ;;
    esac
    if [ "$RAY_AUTH_MODE" = token ] && ! has_token && [ "$DRY_RUN" != 1 ]; then
      die "no Ray auth token on this node ($token_file, RAY_AUTH_TOKEN): copy the head's ~/.ray/auth_token" \
        "here, or set RAY_AUTH_TOKEN_PATH or RAY_AUTH_TOKEN (or RAY_AUTH_MODE=disabled on every node)"
    fi
    cmd=(ray start --address="$address" "${resources[@]}" "$@")
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
