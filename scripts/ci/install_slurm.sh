#!/usr/bin/env bash
# CI: install SLURM (Debian's slurm-wlm: slurmctld, slurmd, sbatch, srun) and munge, which
# tests/test_cluster_slurm_on_cpu.py starts as a two-node cluster on this machine. Needs root and apt-get;
# does nothing when they are installed already.
set -euo pipefail

if command -v slurmctld >/dev/null && command -v slurmd >/dev/null && command -v munged >/dev/null; then
  exit 0
fi
if [ "$(id -u)" != 0 ] || ! command -v apt-get >/dev/null; then
  echo "install_slurm.sh: needs root and apt-get to install slurm-wlm and munge" >&2
  exit 2
fi
apt-get update -qq
DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends slurm-wlm munge >/dev/null
