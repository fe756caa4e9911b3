"""What the launch scripts do that the real engines on this machine cannot show: 8 GPUs per node (nvidia-smi,
CUDA_VISIBLE_DEVICES), three nodes, and Hydra overrides with spaces, quotes and $ surviving the shell; their refusals
of bad settings.

SLURM, torchrun's multi-node rendezvous and a multi-node Ray cluster run for real in tests/test_cluster_slurm_on_cpu.py
and tests/test_cluster_ray_on_cpu.py (which retired the fakes of what they now check: each node running what its dry
run prints, the order of the Ray head and workers, training once every node joined). The cluster here is faked by
scripts on PATH: `scontrol show hostnames A,B` lists A and B, `scontrol show node A -o` gives A's NodeAddr
(A.addr), `nvidia-smi -L` lists FAKE_GPUS GPUs, and `srun`, `torchrun`, `ray` and `python` append their command line
to FAKE_LOG (`python -c` prints FAKE_ALIVE, the names of the live Ray nodes the SLURM Ray template waits for: a node
that never joins a SLURM job's Ray cannot be made here, where the job's nodes share one machine, environment and
file system).
"""

import os
import shlex
import shutil
import subprocess

import pytest
from conftest import REPO, compose_config

LOG_LINE = 'line=$(printf "%q " "$(basename "$0")" "$@"); echo "$line" >>"$FAKE_LOG"\n'
FAKES = {
    "scontrol": 'case "$1 $2" in\n"show hostnames") tr , "\\n" <<<"$3" ;;\n'
    + '"show node") echo "NodeName=$3 Arch=x86_64 NodeAddr=$3.addr NodeHostName=$3" ;;\n*) exit 1 ;;\nesac\n',
    "nvidia-smi": 'for i in $(seq 1 "$FAKE_GPUS"); do echo "GPU $((i - 1)): NVIDIA H100 (UUID: GPU-$i)"; done\n',
    "srun": LOG_LINE + 'while [ "${1#-}" != "$1" ]; do shift; done\nexec "$@"\n',
    "torchrun": LOG_LINE,
    # `ray start --block` lives as long as the job (at most 10 s): here the launcher, its process group's leader
    "ray": LOG_LINE
    + '[ "${*: -1}" = --block ] || exit 0\n'
    + "job=$(($(ps -o pgid= -p $$)))\n"
    + 'for _ in $(seq 100); do case "$(ps -o stat= -p $job)" in "" | Z*) exit 0 ;; esac; sleep 0.1; done\n'
    + 'echo "ray start --block outlived 10 s: its job did not end" >>"$FAKE_LOG"\n',
    "python": LOG_LINE + 'if [ "$1" = -c ]; then tr , "\\n" <<<"$FAKE_ALIVE"; fi\n',
}
# Hydra overrides with spaces, quotes, $, &, *, # and brackets, and the values they compose to
OVERRIDES = [
    "preset=qwen2.5-math-7b",
    "trainer.experiment_name=dft 7b run-1",
    "trainer.project_name='it\\'s $HOME & * #1'",
    "data.train_files=[/data/a b.parquet,/data/c.parquet]",
    "optim.lr=1e-5",
]
COMPOSED = {
    "trainer.experiment_name": "dft 7b run-1",
    "trainer.project_name": "it's $HOME & * #1",
    "data.train_files": ["/data/a b.parquet", "/data/c.parquet"],
    "optim.lr": 1e-5,
    "model.path": "Qwen/Qwen2.5-Math-7B",
}
SLURM_JOB = {
    "SLURM_JOB_NODELIST": "gpu-a,gpu-b,gpu-c",
    "SLURM_NNODES": "3",
    "SLURM_JOB_ID": "4242",
    "SLURM_CPUS_PER_TASK": "64",
    "SLURM_SUBMIT_DIR": str(REPO),
}


class FakeCluster:
    """The fake cluster commands on PATH (see the module docstring) and the log they write."""

    def __init__(self, root):
        self.root, self.bin_dir, self.log_path = root, root / "bin", root / "fake.log"
        self.bin_dir.mkdir()
        for name, body in FAKES.items():
            (self.bin_dir / name).write_text("#!/usr/bin/env bash\n" + body)
            (self.bin_dir / name).chmod(0o755)
        self.log_path.touch()

    def run(self, script, args=(), cwd=REPO, ok=True, **env):
        """Run a launcher with bash in a clean environment: no knob leaks in from the shell running the tests."""
        base = {"PATH": f"{self.bin_dir}:{os.environ['PATH']}", "HOME": str(self.root), "FAKE_LOG": str(self.log_path)}
        result = subprocess.run(
            ["bash", str(script), *args],
            cwd=cwd,
            env={**base, "FAKE_GPUS": "8", "FAKE_ALIVE": "", **env},
            capture_output=True,
            text=True,
            timeout=60,
            # the launcher leads its own process group, which the fake `ray start --block` watches
            start_new_session=True,
        )
        if ok:
            assert result.returncode == 0, f"exit {result.returncode}\n{result.stdout}\n{result.stderr}"
        return result

    @property
    def log(self):
        """The commands the fakes ran, as argument lists."""
        return [shlex.split(line) for line in self.log_path.read_text().splitlines()]


@pytest.fixture
def cluster(tmp_path):
    return FakeCluster(tmp_path)


def script(name):
    return REPO / "scripts" / name


def printed(stdout):
    """The printed commands as (host, argument list), host from the `# on HOST:` line above (None before any)."""
    host, commands = None, []
    for line in stdout.splitlines():
        if line.startswith("# on "):
            host = line.removeprefix("# on ").rstrip(":")
        elif not line.startswith("#"):
            commands.append((host, shlex.split(line)))
    return commands


def assert_composes_like_overrides(overrides):
    cfg = compose_config(overrides)
    for key, value in COMPOSED.items():
        section, field = key.split(".")
        assert cfg[section][field] == value, key


def torchrun_rendezvous(nnodes, endpoint, rdzv_id):
    rendezvous = ["--rdzv_backend=c10d", f"--rdzv_endpoint={endpoint}", f"--rdzv_id={rdzv_id}"]
    return ["torchrun", f"--nnodes={nnodes}", *rendezvous]


# scripts/train.sh: torchrun on one node or several


def test_one_node_runs_standalone_torchrun_on_every_gpu_nvidia_smi_lists(cluster):
    result = cluster.run(script("train.sh"), OVERRIDES, DRY_RUN="1", FAKE_GPUS="4")
    standalone = ["torchrun", "--standalone", "--nnodes=1", "--nproc_per_node=4", "-m", "dft", "train"]
    assert printed(result.stdout) == [(None, standalone + OVERRIDES)]
    assert cluster.log == [], "a dry run launched something"


def test_overrides_printed_by_train_sh_are_the_given_ones_and_compose(cluster):
    # the printed line goes back through a shell (shlex): spaces, quotes and $ must come out as they went in
    [(_, cmd)] = printed(cluster.run(script("train.sh"), OVERRIDES, DRY_RUN="1").stdout)
    overrides = cmd[cmd.index("train") + 1 :]
    assert overrides == OVERRIDES
    assert_composes_like_overrides(overrides)


# scripts/ray_cluster.sh: one node of a Ray cluster


def test_ray_node_knobs(cluster):
    knobs = {"NUM_CPUS": "32", "NODE_IP": "10.0.0.2", "BLOCK": "1", "CUDA_VISIBLE_DEVICES": "2,3"}
    result = cluster.run(script("ray_cluster.sh"), DRY_RUN="1", ROLE="worker", HEAD_ADDR="10.0.0.1:7000", **knobs)
    # a HEAD_ADDR with a port is taken as it is; the GPUs are those CUDA_VISIBLE_DEVICES names
    assert printed(result.stdout) == [
        (
            None,
            ["ray", "start", "--address=10.0.0.1:7000", "--num-gpus=2", "--num-cpus=32"]
            + ["--node-ip-address=10.0.0.2", "--block"],
        )
    ]
    no_gpu = cluster.run(script("ray_cluster.sh"), DRY_RUN="1", ROLE="head", FAKE_GPUS="0")
    assert printed(no_gpu.stdout) == [(None, ["ray", "start", "--head", "--port=6379", "--num-gpus=0"])]


@pytest.mark.parametrize(
    "env, message",
    [
        ({}, "ROLE must be head, worker or stop (got ROLE='')"),
        ({"ROLE": "boss"}, "ROLE must be head, worker or stop (got ROLE='boss')"),
        ({"ROLE": "worker"}, "ROLE=worker needs HEAD_ADDR"),
        # no token here (HOME is the test's empty folder): a 2.60 head would refuse this worker
        ({"ROLE": "worker", "HEAD_ADDR": "node0"}, "no Ray auth token on this node"),
    ],
)
def test_ray_node_refuses_a_missing_or_unknown_role_and_a_worker_without_head(cluster, env, message):
    result = cluster.run(script("ray_cluster.sh"), ok=False, **env)
    assert result.returncode != 0
    assert result.stderr.startswith(f"ray_cluster.sh: {message}")
    assert cluster.log == [], "ray ran although the node's settings are wrong"


# scripts/slurm/train.sbatch: torchrun on every node of a SLURM job


def test_slurm_torchrun_runs_one_task_per_node_meeting_on_the_first_host(cluster):
    # stale knobs from the submitting shell must not win over what SLURM says
    stale = {"MASTER_ADDR": "localhost", "NNODES": "1", "JOB_ID": "old"}
    result = cluster.run(script("slurm/train.sbatch"), OVERRIDES, DRY_RUN="1", **SLURM_JOB, **stale)
    step = ["srun", "--nodes=3", "--ntasks-per-node=1", "--cpus-per-task=64", "--kill-on-bad-exit=1"]
    # the rendezvous is on the first node's NodeAddr, the address SLURM reaches it at (its name need not resolve)
    torchrun = torchrun_rendezvous(3, "gpu-a.addr:29500", "4242") + ["--nproc_per_node=8", "-m", "dft", "train"]
    assert printed(result.stdout) == [
        (None, step + ["bash", "scripts/train.sh"] + OVERRIDES),
        ("gpu-a", torchrun + OVERRIDES),
        ("gpu-b", torchrun + OVERRIDES),
        ("gpu-c", torchrun + OVERRIDES),
    ]
    assert cluster.log == [], "a dry run launched something"
    assert_composes_like_overrides(printed(result.stdout)[-1][1][len(torchrun) :])


def test_slurm_templates_find_the_repo_from_the_submit_directory(cluster, tmp_path):
    # sbatch runs a copy of the file from its spool directory; run here from there too, the copy can find the
    # repository only through SLURM_SUBMIT_DIR or REPO
    spool = tmp_path / "spool"
    spool.mkdir()
    for name in ("train.sbatch", "train_ray.sbatch"):
        copy = shutil.copy(script(f"slurm/{name}"), spool / "slurm_script")
        result = cluster.run(copy, ["loss.name=sft"], cwd=spool, DRY_RUN="1", **SLURM_JOB)
        assert printed(result.stdout)[-1][1][-1] == "loss.name=sft"

        elsewhere = {**SLURM_JOB, "SLURM_SUBMIT_DIR": str(spool)}
        result = cluster.run(copy, cwd=spool, ok=False, DRY_RUN="1", **elsewhere)
        assert result.returncode != 0 and f"REPO={spool}" in result.stderr

        result = cluster.run(copy, ["loss.name=sft"], cwd=spool, DRY_RUN="1", **elsewhere, REPO=str(REPO))
        assert printed(result.stdout)[-1][1][-1] == "loss.name=sft"


@pytest.mark.parametrize("name", ["train.sbatch", "train_ray.sbatch"])
def test_slurm_templates_outside_a_job_say_so(cluster, name):
    result = cluster.run(script(f"slurm/{name}"), ok=False, DRY_RUN="1")
    assert result.returncode != 0 and "SLURM_JOB_NODELIST is not set" in result.stderr


@pytest.mark.parametrize("name", ["train.sbatch", "train_ray.sbatch"])
def test_slurm_headers_ask_for_one_task_per_node_and_are_read_by_sbatch(name):
    lines = script(f"slurm/{name}").read_text().splitlines()
    # sbatch reads #SBATCH lines only up to the first command
    first_command = next(i for i, line in enumerate(lines) if line.strip() and not line.startswith("#"))
    header = [line.split()[1] for line in lines[:first_command] if line.startswith("#SBATCH ")]
    assert not [line for line in lines[first_command:] if line.startswith("#SBATCH")]
    assert {"--ntasks-per-node=1", "--gpus-per-node=8"} <= set(header)
    assert {option.split("=")[0] for option in header} >= {"--nodes", "--cpus-per-task", "--time", "--job-name"}
    assert not [number for number, line in enumerate(lines, 1) if line.endswith("\\ ")]


# scripts/slurm/train_ray.sbatch: a Ray cluster over a SLURM job, then scripts/train_ray.sh on its head


def ray_step(host, *role):
    """The srun step that starts a Ray node on host, SLURM_JOB's CPUs given to the step and to Ray."""
    step = ["srun", "--nodes=1", "--ntasks=1", f"--nodelist={host}", "--cpus-per-task=64"]
    env = ["env", *role, f"NODE_NAME={host}", "RAY_PORT=6379", "NUM_CPUS=64", "BLOCK=1"]
    return step + env + ["bash", "scripts/ray_cluster.sh"]


def test_slurm_ray_starts_head_then_workers_then_trains_on_the_head(cluster):
    result = cluster.run(script("slurm/train_ray.sbatch"), OVERRIDES, DRY_RUN="1", **SLURM_JOB)
    node = ["--num-gpus=8", "--num-cpus=64"]
    head_start = ["ray", "start", "--head", "--port=6379", *node, "--node-name=gpu-a", "--block"]
    worker_start = ["ray", "start", "--address=gpu-a.addr:6379", *node, "--node-name={}", "--block"]
    driver = ["env", "NNODES=3", "RAY_ADDRESS=gpu-a.addr:6379", "bash", "scripts/train_ray.sh"]
    train = ["python", "-m", "dft", "train_ray", "trainer.nnodes=3", "trainer.n_gpus_per_node=8"]
    assert printed(result.stdout) == [
        ("gpu-a", ray_step("gpu-a", "ROLE=head")),
        ("gpu-a", head_start),
        ("gpu-b", ray_step("gpu-b", "ROLE=worker", "HEAD_ADDR=gpu-a.addr")),
        ("gpu-b", [arg.format("gpu-b") for arg in worker_start]),
        ("gpu-c", ray_step("gpu-c", "ROLE=worker", "HEAD_ADDR=gpu-a.addr")),
        ("gpu-c", [arg.format("gpu-c") for arg in worker_start]),
        ("gpu-a", driver + OVERRIDES),
        ("gpu-a", train + OVERRIDES),
    ]
    assert "# wait until Ray at gpu-a.addr:6379 has node(s) gpu-a gpu-b gpu-c alive" in result.stdout.splitlines()
    assert cluster.log == [], "a dry run launched something"
    cfg = compose_config(printed(result.stdout)[-1][1][4:])
    assert (cfg.trainer.nnodes, cfg.trainer.n_gpus_per_node, cfg.trainer.experiment_name) == (3, 8, "dft 7b run-1")


def test_slurm_ray_gives_up_naming_the_nodes_that_do_not_join(cluster):
    result = cluster.run(script("slurm/train_ray.sbatch"), ok=False, FAKE_ALIVE="gpu-a,gpu-c", RAY_WAIT_S="0",
                         **SLURM_JOB)  # fmt: skip
    assert result.returncode != 0
    assert "the Ray cluster at gpu-a.addr:6379 lacks 1 of 3 nodes: gpu-b never joined" in result.stderr
    assert not [cmd for cmd in cluster.log if "train_ray" in cmd], "trained without all nodes"
