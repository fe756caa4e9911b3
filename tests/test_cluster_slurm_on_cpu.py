"""The SLURM templates on a real SLURM: Debian's slurm-wlm (slurmctld, two slurmd, munged) started on this machine as
two nodes, n1 and n2 (scripts/ci/install_slurm.sh installs it; a machine without it fails here, saying so).

- ``sbatch --wait scripts/slurm/train.sbatch`` trains the tiny model through the real ``srun`` (one task per node)
  and ``torchrun`` (c10d rendezvous on the first node's address): two nodes, one process each.
- ``scontrol requeue`` mid-run: the job starts again, resumes from its last checkpoint and ends at the configured
  step; each step is logged once; the final weights equal the uninterrupted run's (same seed, fp32).
- ``scripts/slurm/train_ray.sbatch`` starts a Ray head on n1 and a worker on n2 (scripts/ray_cluster.sh in srun
  steps) and trains through ``dft train_ray`` with ``trainer.nnodes=2``.

One cluster serves the module; its daemons' state and logs live in a temporary folder, and they are stopped by
their pids (and any job cancelled) even when a test fails.
"""

import json
import math
import os
import shutil
import signal
import socket
import subprocess
import tempfile
import time
import uuid
from pathlib import Path

import pytest
import torch
from conftest import FP32, REPO, tiny_overrides
from safetensors.torch import load_file

DAEMONS = ("munged", "slurmctld", "slurmd", "sbatch", "srun", "scontrol")
NODES = ("n1", "n2")
JOB_OPTIONS = ["--gpus-per-node=0", "--cpus-per-task=1"]  # the templates' GPUs and CPUs, as this machine has them


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def slurm_conf(root: Path, host: str) -> str:
    ports = [free_port() for _ in range(3)]
    lines = [
        "ClusterName=dfttest", f"SlurmctldHost={host}", f"SlurmctldPort={ports[0]}",
        "SlurmUser=root", "SlurmdUser=root", "AuthType=auth/munge", f"AuthInfo=socket={root}/munge/munge.sock",
        f"StateSaveLocation={root}/state", f"SlurmdSpoolDir={root}/state/slurmd-%n",
        f"SlurmctldPidFile={root}/slurmctld.pid", f"SlurmdPidFile={root}/slurmd-%n.pid",
        f"SlurmctldLogFile={root}/log/slurmctld.log", f"SlurmdLogFile={root}/log/slurmd-%n.log",
        "ProctrackType=proctrack/linuxproc", "TaskPlugin=task/none", "MpiDefault=none",
        "SelectType=select/cons_tres", "SelectTypeParameters=CR_Core", "ReturnToService=2",
        "SchedulerType=sched/backfill", "JobRequeue=1",
    ]  # fmt: skip
    for node, port in zip(NODES, ports[1:]):
        lines.append(f"NodeName={node} NodeHostname={host} NodeAddr=127.0.0.1 Port={port} CPUs=2 RealMemory=4000")
    lines.append(f"PartitionName=debug Nodes={','.join(NODES)} Default=YES MaxTime=INFINITE State=UP")
    return "\n".join(lines) + "\n"


class LocalSlurm:
    """munged, slurmctld and one slurmd per node, all under ``root``; :meth:`stop` ends them by their pids."""

    def __init__(self, root: Path):
        self.root, self.conf = root, root / "slurm.conf"
        self.env = {**os.environ, "SLURM_CONF": str(self.conf)}
        for folder in ("munge", "state", "log"):
            (root / folder).mkdir()
        (root / "munge").chmod(0o711)

    def start(self, wait_s: float = 60) -> float:
        """Start the daemons; return the seconds until ``sinfo`` shows both nodes idle."""
        began = time.monotonic()
        key = self.root / "munge" / "munge.key"
        key.write_bytes(os.urandom(1024))
        key.chmod(0o400)
        munge = self.root / "munge"
        subprocess.run(["munged", "--force", f"--key-file={key}", f"--socket={munge}/munge.sock",
                        f"--pid-file={munge}/munged.pid", f"--log-file={munge}/munged.log",
                        f"--seed-file={munge}/seed"], check=True, timeout=30)  # fmt: skip
        self.conf.write_text(slurm_conf(self.root, socket.gethostname().split(".")[0]))
        subprocess.run(["slurmctld", "-f", str(self.conf)], check=True, env=self.env, timeout=30)
        for node in NODES:
            subprocess.run(["slurmd", "-f", str(self.conf), "-N", node], check=True, env=self.env, timeout=30)
        while time.monotonic() - began < wait_s:
            states = self.run("sinfo", "-h", "-N", "-o", "%N %t").stdout.split()
            if states.count("idle") == len(NODES):
                return time.monotonic() - began
            time.sleep(0.5)
        raise RuntimeError(f"SLURM nodes not idle after {wait_s} s: {states}\n{self.logs()}")

    def run(self, *cmd, **kwargs):
        return subprocess.run(cmd, env=self.env, capture_output=True, text=True, timeout=60, **kwargs)

    def logs(self) -> str:
        return "\n".join(f"== {p.name}\n{p.read_text()[-3000:]}" for p in sorted((self.root / "log").glob("*.log")))

    def daemon_pids(self) -> list[int]:
        """slurmd of each node, slurmctld, munged: the order to stop them in (read once they run)."""
        files = [self.root / f"slurmd-{n}.pid" for n in NODES] + [self.root / "slurmctld.pid"]
        return [int(f.read_text().split()[0]) for f in [*files, self.root / "munge" / "munged.pid"] if f.is_file()]

    def stop(self, pids: list[int]) -> None:
        """Cancel the jobs and wait for their steps to end (a step's slurmstepd needs munged to report its end),
        then end the daemons by pid: SIGTERM, SIGKILL after 20 s."""
        if self.conf.exists():
            self.run("scancel", "--user=root")
            deadline = time.monotonic() + 60
            while self.run("squeue", "-h").stdout.strip() and time.monotonic() < deadline:
                time.sleep(0.5)
        for pid in pids:
            end_process(pid)


def end_process(pid: int, grace_s: float = 20) -> None:
    for sig, wait_s in ((signal.SIGTERM, grace_s), (signal.SIGKILL, 5)):
        try:
            os.kill(pid, sig)
        except ProcessLookupError:
            return
        deadline = time.monotonic() + wait_s
        while time.monotonic() < deadline:
            try:
                os.kill(pid, 0)
            except ProcessLookupError:
                return
            time.sleep(0.2)


@pytest.fixture(scope="module")
def slurm(tmp_path_factory):
    missing = [tool for tool in DAEMONS if shutil.which(tool) is None]
    if missing:
        pytest.fail(f"SLURM is not installed here (no {', '.join(missing)} on PATH): run scripts/ci/install_slurm.sh "
                    "as root (apt-get install slurm-wlm munge); a real SLURM is what this module tests")  # fmt: skip
    cluster, pids = LocalSlurm(tmp_path_factory.mktemp("slurm")), []
    try:
        try:
            seconds = cluster.start()
        finally:
            pids = cluster.daemon_pids()  # those that started, even if the cluster did not come up
        print(f"\n[slurm] munged, slurmctld and 2 slurmd up, both nodes idle, in {seconds:.1f} s")
        yield cluster
    finally:
        cluster.stop(pids)


def sbatch(slurm, template, overrides, out: Path, wait=True, **env):
    """Submit scripts/slurm/<template> from the repository root (``wait``: until the job ends); the sbatch result."""
    cmd = ["sbatch", "--parsable", *JOB_OPTIONS, f"--output={out}", *(["--wait"] if wait else []),
           f"scripts/slurm/{template}", *overrides]  # fmt: skip
    job_env = {**slurm.env, "PYTHONUNBUFFERED": "1", **env}
    return subprocess.run(cmd, cwd=REPO, env=job_env, capture_output=True, text=True, timeout=600)


def metrics_rows(run_dir: Path) -> list[list[dict]]:
    """Each start's metrics.jsonl (``<run>/ckpt/logs/<start time>/``), oldest first, as rows."""
    files = sorted((run_dir / "ckpt" / "logs").glob("*/metrics.jsonl"))
    return [[json.loads(line) for line in f.read_text().splitlines()] for f in files]


def train_steps(rows: list[dict]) -> list[int]:
    return [row["step"] for row in rows if "train/loss" in row["data"]]


def final_weights(run_dir: Path, step: int) -> dict:
    return load_file(run_dir / "ckpt" / f"global_step_{step}" / "huggingface" / "model.safetensors")


STEPS = 4


def train_args(tiny, run_dir, save_freq):
    return tiny_overrides(tiny, run_dir, STEPS) + FP32 + [f"trainer.save_freq={save_freq}", "trainer.seed=0"]


@pytest.fixture(scope="module")
def full_run(slurm, tiny, tmp_path_factory):
    """An uninterrupted 2-node torchrun job of STEPS steps: (run folder, sbatch result, its output, job id)."""
    run_dir = tmp_path_factory.mktemp("full")
    began = time.monotonic()
    result = sbatch(slurm, "train.sbatch", train_args(tiny, run_dir, STEPS), run_dir / "job.out")
    print(f"\n[slurm] train.sbatch, {STEPS} steps on 2 nodes: {time.monotonic() - began:.1f} s")
    out = (run_dir / "job.out").read_text() if (run_dir / "job.out").is_file() else ""
    assert result.returncode == 0, f"sbatch exit {result.returncode}\n{result.stderr}\n{out[-4000:]}\n{slurm.logs()}"
    return run_dir, out, result.stdout.strip().split(";")[0]


def test_train_sbatch_trains_on_both_nodes_through_srun_and_torchrun(slurm, full_run):
    run_dir, out, job = full_run
    # srun started the step's task on each node's slurmd, and torchrun's rendezvous joined them: ranks 0 and 1
    for node in NODES:
        assert f"StepId={job}.0" in (slurm.root / "log" / f"slurmd-{node}.log").read_text(), node
    assert "[rank0]" in out and "[rank1]" in out and "[rank2]" not in out
    [rows] = metrics_rows(run_dir)
    assert train_steps(rows) == list(range(1, STEPS + 1))
    assert all(math.isfinite(row["data"]["train/loss"]) for row in rows if "train/loss" in row["data"])


def job_field(slurm, job_id: str, field: str) -> str:
    """A field of ``scontrol show job`` (JobState, Restarts, ...)."""
    words = slurm.run("scontrol", "show", "job", job_id, "-o").stdout.split()
    return next((w.split("=", 1)[1] for w in words if w.startswith(f"{field}=")), "")


def wait_for(condition, what: str, timeout_s: float = 300) -> None:
    deadline = time.monotonic() + timeout_s
    while not condition():
        assert time.monotonic() < deadline, f"{what}: not after {timeout_s} s"
        time.sleep(0.1)


def checkpointed(run_dir: Path, step: int, slurm, job_id: str):
    tracker = run_dir / "ckpt" / "latest_checkpointed_iteration.txt"

    def reached():
        assert job_field(slurm, job_id, "JobState") in ("PENDING", "RUNNING", "CONFIGURING"), "the job ended early"
        return tracker.is_file() and tracker.read_text().strip() == str(step)

    return reached


def test_a_requeued_job_resumes_from_its_checkpoint_and_ends_like_an_uninterrupted_one(slurm, tiny, full_run,
                                                                                       tmp_path):  # fmt: skip
    full_dir = full_run[0]
    submitted = sbatch(slurm, "train.sbatch", train_args(tiny, tmp_path, 1), tmp_path / "job.out", wait=False)
    assert submitted.returncode == 0, submitted.stderr
    job_id = submitted.stdout.strip().split(";")[0]
    out = tmp_path / "job.out"
    wait_for(checkpointed(tmp_path, 2, slurm, job_id), "checkpoint 2")
    requeue = slurm.run("scontrol", "requeue", job_id)
    assert requeue.returncode == 0, requeue.stderr
    began = time.monotonic()
    wait_for(lambda: job_field(slurm, job_id, "Restarts") == "1", "the requeue", 120)
    wait_for(lambda: job_field(slurm, job_id, "JobState") == "PENDING", "the requeued job pending", 120)
    # SLURM holds a requeued job back for 2 minutes (its begin time); let it start now
    slurm.run("scontrol", "update", f"jobid={job_id}", "starttime=now")
    finished = ("COMPLETED", "FAILED", "CANCELLED", "TIMEOUT", "NODE_FAIL")
    wait_for(lambda: job_field(slurm, job_id, "JobState") in finished, "the requeued job's end", 600)
    print(f"\n[slurm] requeued job back and finished in {time.monotonic() - began:.1f} s")
    state = job_field(slurm, job_id, "JobState")
    assert state == "COMPLETED", f"{state}\n{out.read_text()[-4000:] if out.is_file() else ''}\n{slurm.logs()}"

    first, second = metrics_rows(tmp_path)
    print(f"[slurm] requeue: first start logged steps {train_steps(first)}, the second {train_steps(second)}")
    # the second start resumed after the last checkpoint, and a step is logged before its checkpoint is saved: a
    # kill between the two would log that step in both starts; the requeue here comes right after a checkpoint
    assert train_steps(second) == list(range(train_steps(first)[-1] + 1, STEPS + 1))
    logged = train_steps(first) + train_steps(second)
    assert logged == list(range(1, STEPS + 1)), f"steps logged {logged}: each step once"

    full, resumed = final_weights(full_dir, STEPS), final_weights(tmp_path, STEPS)
    assert full.keys() == resumed.keys()
    diff = max(float((full[k] - resumed[k]).abs().max()) for k in full)
    print(f"[slurm] requeue: max |final weight - uninterrupted run's| = {diff:.3g}")
    assert all(torch.equal(full[k], resumed[k]) for k in full), f"final weights differ by up to {diff}"


def test_train_ray_sbatch_starts_ray_on_both_nodes_and_trains(slurm, tiny, tmp_path):
    args = tiny_overrides(tiny, tmp_path, 2) + ["loss.name=sft"]
    began = time.monotonic()
    # the job's Ray keeps its sessions and ray_current_cluster in its own folder (short: Ray's socket paths live
    # there), so that no other Ray of this machine follows the job's head once it is gone
    ray_tmpdir = tempfile.mkdtemp(prefix="dftray", dir="/tmp")
    try:
        result = sbatch(slurm, "train_ray.sbatch", args, tmp_path / "job.out", RAY_PORT=str(free_port()),
                        RAY_WAIT_S="120", RAY_TMPDIR=ray_tmpdir, RAY_AUTH_TOKEN=uuid.uuid4().hex)  # fmt: skip
    finally:
        shutil.rmtree(ray_tmpdir, ignore_errors=True)
    print(f"\n[slurm] train_ray.sbatch, 2 steps on a 2-node Ray: {time.monotonic() - began:.1f} s")
    out = (tmp_path / "job.out").read_text() if (tmp_path / "job.out").is_file() else ""
    assert result.returncode == 0, f"sbatch exit {result.returncode}\n{result.stderr}\n{out[-5000:]}"
    job = result.stdout.strip().split(";")[0]
    # the head's step on n1, the worker's on n2 (steps 0 and 1), the controller in the batch step
    for node, step in zip(NODES, (0, 1)):
        assert f"StepId={job}.{step}" in (slurm.root / "log" / f"slurmd-{node}.log").read_text(), node
    [rows] = metrics_rows(tmp_path)
    assert train_steps(rows) == [1, 2]
