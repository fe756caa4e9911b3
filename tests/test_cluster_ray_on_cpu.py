"""The Ray launchers on a real multi-node Ray cluster: Ray nodes started on this machine as users start them
(``ROLE=head`` / ``ROLE=worker bash scripts/ray_cluster.sh``, each its own raylet), token authentication on.

- ``scripts/train_ray.sh`` (``dft train_ray trainer.nnodes=2``) trains, and Ray's state says which node each
  TrainingWorker ran on: one per node (each node offers one CPU, a training process's bundle).
- A worker node killed mid-run (its raylet and workers, SIGKILL): the run ends within a bounded time naming the
  lost node; with the node back, the same command resumes from the last checkpoint and ends at the set step.
- A run asking for more nodes than joined fails within a bounded time, naming the nodes present.
- ``scripts/train_rl.sh`` (verl's main_ppo, GRPO, ``rl_setting=tiny-cpu``, ``trainer.nnodes=2``) steps on the cluster.
- A ``/tmp/ray/ray_current_cluster`` left by a dead head: the launchers and ``dft`` say so and start a local Ray.

Everything Ray keeps on disk (sessions, ray_current_cluster) goes to the module's own RAY_TMPDIR, so that no other
Ray on this machine follows this cluster's address or loses its own. The nodes' health checks are shortened
(``RAY_health_check_*``: a lost node is declared dead in ~3 s; Ray's default takes 15-65 s). One cluster serves the
module; its processes are killed by process group even when a test fails.
"""

import json
import os
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import time
import uuid
from pathlib import Path

import pytest
from conftest import REPO, tiny_overrides

HEALTH_CHECK = {"RAY_health_check_period_ms": "500", "RAY_health_check_timeout_ms": "1000",
                "RAY_health_check_failure_threshold": "3", "RAY_health_check_initial_delay_ms": "1000"}  # fmt: skip
# a raylet on a busy 2-core machine can take longer than Ray's 10 s to register
SLOW_START = {"RAY_raylet_start_wait_time_s": "120"}

# prints {"nodes": [[id, alive, name]...], "actors": [[actor id, class, node id, job id]...]} of the cluster
PROBE = """import json, sys, ray
from ray._private import state
ray.init(address=sys.argv[1], logging_level="ERROR")
nodes = [[n["NodeID"], n["Alive"], n["NodeName"]] for n in ray.nodes()]
actors = [[k, a["ActorClassName"], a["Address"]["NodeID"], a["JobID"]] for k, a in state.actors().items()]
print(json.dumps({"nodes": nodes, "actors": actors}))"""


def port_answers(address: str) -> bool:
    host, _, port = address.rpartition(":")
    try:
        with socket.create_connection((host, int(port)), timeout=2):
            return True
    except OSError:
        return False


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


class RayNodes:
    """Ray nodes started by scripts/ray_cluster.sh (BLOCK=1, each in its own process group) at one address."""

    def __init__(self, port: int, ray_tmpdir: str):
        self.address = f"127.0.0.1:{port}"
        token = uuid.uuid4().hex + uuid.uuid4().hex  # this cluster's own token, not ~/.ray's
        self.env = {**os.environ, **HEALTH_CHECK, **SLOW_START, "RAY_AUTH_TOKEN": token, "RAY_PORT": str(port),
                    "BLOCK": "1", "PYTHONUNBUFFERED": "1", "RAY_TMPDIR": ray_tmpdir}  # fmt: skip
        self.procs: dict[str, subprocess.Popen] = {}

    def start(self, name: str, cpus: int = 1, head: bool = False, wait: bool = True) -> None:
        """Start a Ray node; ``wait``: until it is live (a head: until its GCS port answers, which is cheaper)."""
        role = {"ROLE": "head"} if head else {"ROLE": "worker", "HEAD_ADDR": self.address}
        env = {**self.env, **role, "NUM_CPUS": str(cpus), "NUM_GPUS": "1", "NODE_NAME": name}
        args = ["--disable-usage-stats"] + (["--include-dashboard=false"] if head else [])
        # Ray's workers run in their raylet's folder: this module's temporary one, not the repository
        self.procs[name] = subprocess.Popen(["bash", str(REPO / "scripts" / "ray_cluster.sh"), *args], env=env,
                                            cwd=self.env["RAY_TMPDIR"], stdout=subprocess.DEVNULL,
                                            stderr=subprocess.DEVNULL, start_new_session=True)  # fmt: skip
        if head:
            self.wait_until(lambda: port_answers(self.address), f"{name}'s GCS port")
        elif wait:
            self.wait_joined(name)

    def wait_until(self, condition, what: str, wait_s: float = 180) -> None:
        deadline = time.monotonic() + wait_s
        while not condition():
            dead = {name: proc.returncode for name, proc in self.procs.items() if proc.poll() is not None}
            assert not dead, f"ray_cluster.sh exited: {dead}"
            assert time.monotonic() < deadline, f"{what}: not after {wait_s} s"
            time.sleep(0.5)

    def wait_joined(self, *names: str) -> None:
        self.wait_until(lambda: set(names) <= set(self.live_names()), f"Ray nodes {names} live")

    def kill(self, name: str, sig=signal.SIGKILL) -> None:
        """End a node: its `ray start --block`, raylet and workers (one process group); SIGKILL if it lingers."""
        proc = self.procs.pop(name)
        for signum in (sig, signal.SIGKILL):
            try:
                os.killpg(proc.pid, signum)
                proc.wait(timeout=30)
                return
            except ProcessLookupError:
                return
            except subprocess.TimeoutExpired:
                continue

    def stop(self) -> None:
        for name in sorted(self.procs, key=lambda n: n == "head"):  # the workers, then the head
            self.kill(name)

    def probe(self) -> dict:
        result = subprocess.run([sys.executable, "-c", PROBE, self.address], env={**self.env, "RAY_AUTH_MODE": "token"},
                                capture_output=True, text=True, timeout=120)  # fmt: skip
        assert result.returncode == 0, result.stderr[-3000:]
        return json.loads(result.stdout.strip().splitlines()[-1])

    def live_names(self) -> dict[str, str]:
        """node name -> node id of the live nodes."""
        return {name: node for node, alive, name in self.probe()["nodes"] if alive}


def short_tmpdir() -> str:
    """A temporary folder with a short path: Ray's sockets live under it, and a socket path has at most 107 bytes."""
    return tempfile.mkdtemp(prefix="dftray", dir="/tmp")


@pytest.fixture(scope="module")
def ray_nodes():
    ray_tmpdir = short_tmpdir()
    nodes = RayNodes(free_port(), ray_tmpdir)
    try:
        began = time.monotonic()
        nodes.start("head", head=True)
        head_s = time.monotonic() - began
        nodes.start("worker1", wait=False)
        nodes.wait_joined("head", "worker1")
        print(f"\n[ray] head's port open in {head_s:.1f} s, 2 live nodes in {time.monotonic() - began:.1f} s")
        yield nodes
    finally:
        nodes.stop()
        shutil.rmtree(ray_tmpdir, ignore_errors=True)


def test_a_dead_heads_address_left_behind_is_reported_and_a_local_ray_started():
    # a head that is gone left its address in ray_current_cluster, and no Ray runs (in this RAY_TMPDIR): ray.init()
    # would follow the file and fail to connect; the launchers and dft say what they found and start their own
    ray_tmpdir = short_tmpdir()
    dead = f"127.0.0.1:{free_port()}"
    (Path(ray_tmpdir) / "ray").mkdir()
    (Path(ray_tmpdir) / "ray" / "ray_current_cluster").write_text(dead + "\n")
    env = {k: v for k, v in os.environ.items() if k != "RAY_ADDRESS"}
    env.update(SLOW_START, RAY_TMPDIR=ray_tmpdir, RAY_AUTH_TOKEN=uuid.uuid4().hex)
    try:
        check = f"source {REPO}/scripts/ray_env.sh && ray_driver_env && echo $RAY_ADDRESS"
        shell = subprocess.run(["bash", "-c", check], env=env, capture_output=True, text=True, timeout=120)
        init = subprocess.run([sys.executable, "-c", "import ray\nfrom dft.core.ray_cluster import init_ray\n"
                               "init_ray(num_cpus=1, include_dashboard=False)\nprint(len(ray.nodes()))"],
                              env=env, capture_output=True, text=True, timeout=180)  # fmt: skip
    finally:
        shutil.rmtree(ray_tmpdir, ignore_errors=True)
    assert shell.returncode == 0 and shell.stdout.split() == ["local"], shell.stdout + shell.stderr
    assert f"names a Ray head at {dead} that does not answer" in shell.stderr
    assert init.returncode == 0, init.stderr[-3000:]
    assert f"names a Ray head at {dead} that does not answer" in init.stdout
    assert init.stdout.split()[-1] == "1", "a fresh local Ray of one node"


def launch(script: str, args, env: dict, wait=True, timeout=600):
    cmd = ["bash", str(REPO / "scripts" / script), *map(str, args)]
    if wait:
        return subprocess.run(cmd, cwd=REPO, env=env, capture_output=True, text=True, timeout=timeout)
    return subprocess.Popen(cmd, cwd=REPO, env=env, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)


def finish_or_explain(proc: subprocess.Popen, ray_nodes, timeout: float) -> subprocess.CompletedProcess:
    """Wait for a launched run; past ``timeout`` kill it and fail with what the cluster held (nodes, actors)."""
    try:
        out, _ = proc.communicate(timeout=timeout)
    except subprocess.TimeoutExpired:
        state = ray_nodes.probe()
        proc.kill()
        out, _ = proc.communicate()
        pytest.fail(f"no end after {timeout} s; the cluster: {json.dumps(state)}\n{out[-5000:]}")
    return subprocess.CompletedProcess(proc.args, proc.returncode, out, "")


def driver_env(ray_nodes, **extra) -> dict:
    env = {k: v for k, v in ray_nodes.env.items() if k not in ("BLOCK", "RAY_PORT")}
    return {**env, "RAY_ADDRESS": ray_nodes.address, "NNODES": "2", "GPUS_PER_NODE": "1", **extra}


def logged_steps(run_dir: Path) -> list[list[int]]:
    """The train steps of each start's metrics.jsonl, oldest first."""
    files = sorted((run_dir / "ckpt" / "logs").glob("*/metrics.jsonl"))
    rows = [[json.loads(line) for line in f.read_text().splitlines()] for f in files]
    return [[r["step"] for r in start if "train/loss" in r["data"]] for start in rows]


def new_actors(before: dict, after: dict, cls: str) -> list[list]:
    seen = {actor[0] for actor in before["actors"]}
    return [actor for actor in after["actors"] if actor[0] not in seen and actor[1].endswith(cls)]


def run_and_lose_a_node(ray_nodes, args, ckpt: Path, node: str):
    """Start train_ray.sh, kill ``node`` after the first checkpoint; (checkpoint step, seconds from the kill to
    the run's end, the run, its output)."""
    run = launch("train_ray.sh", args, driver_env(ray_nodes), wait=False)
    tracker = ckpt / "latest_checkpointed_iteration.txt"
    deadline = time.monotonic() + 300
    try:
        while not tracker.is_file():
            assert run.poll() is None, f"the run ended before its first checkpoint:\n{run.stdout.read()[-4000:]}"
            assert time.monotonic() < deadline, "no checkpoint after 300 s"
            time.sleep(0.1)
        ray_nodes.kill(node)
        killed, checkpoint = time.monotonic(), int(tracker.read_text())
        out = run.communicate(timeout=180)[0]
        return checkpoint, time.monotonic() - killed, run, out
    finally:
        if run.poll() is None:
            run.kill()


def test_lost_worker_node_ends_the_run_naming_it_and_the_same_command_resumes_on_both_nodes(ray_nodes, tiny,
                                                                                            tmp_path):  # fmt: skip
    args = tiny_overrides(tiny, tmp_path, 4) + ["trainer.save_freq=1", "loss.name=sft"]
    lost_id = ray_nodes.live_names()["worker1"]
    try:
        checkpoint, ended_s, run, out = run_and_lose_a_node(ray_nodes, args, tmp_path / "ckpt", "worker1")
    finally:
        ray_nodes.start("worker1")  # back for the rerun, and for the module's next tests
    print(f"\n[ray] worker node killed after checkpoint {checkpoint}: the run ended {ended_s:.1f} s later")
    assert run.returncode != 0
    assert ended_s < 60, f"the run took {ended_s:.0f} s to end after its node was lost"
    assert "Ray lost 1 node(s) during the run" in out and lost_id[:12] in out, out[-4000:]
    assert "The same command resumes from the last checkpoint" in out

    before = ray_nodes.probe()
    again = launch("train_ray.sh", args, driver_env(ray_nodes))
    assert again.returncode == 0, (again.stdout + again.stderr)[-5000:]
    first, second = logged_steps(tmp_path)
    print(f"[ray] steps logged: {first} before the loss, {second} after the rerun")
    assert first[:checkpoint] == list(range(1, checkpoint + 1)) and second == list(range(checkpoint + 1, 5))
    # Ray's state: the resumed run's two training workers, one on each node
    workers = new_actors(before, ray_nodes.probe(), "TrainingWorker")
    nodes = ray_nodes.live_names()
    print(f"[ray] resumed run: TrainingWorker nodes {[n[:8] for *_, n, _ in workers]}, live nodes {nodes}")
    assert sorted(node for _, _, node, _ in workers) == sorted(nodes.values())


def test_a_run_asking_for_more_nodes_than_joined_fails_in_bounded_time_naming_them(ray_nodes, tiny, tmp_path):
    args = tiny_overrides(tiny, tmp_path, 1) + ["loss.name=sft"]
    began = time.monotonic()
    result = launch("train_ray.sh", args, driver_env(ray_nodes, NNODES="3", DFT_RAY_NODE_WAIT_S="5"), timeout=300)
    print(f"\n[ray] 3 nodes asked, 2 joined: failed after {time.monotonic() - began:.1f} s")
    assert result.returncode != 0
    message = next((line for line in result.stderr.splitlines() if "never joined" in line), result.stderr[-3000:])
    assert "trainer.nnodes=3, but after 5 s" in message and "2 live node(s)" in message, message
    assert "head" in message and "worker1" in message and "1 node(s) never joined" in message, message


def test_grpo_main_ppo_steps_on_the_cluster_using_both_nodes(ray_nodes, tiny, tmp_path):
    rl = tmp_path / "rl"
    prep = subprocess.run([sys.executable, "-m", "dft", "data", "rl", "--out", str(rl), "--input",
                           str(tiny.train_parquet), "--n", "8", "--selection", "first", "--val-size", "4"],
                          cwd=REPO, capture_output=True, text=True, timeout=300)  # fmt: skip
    assert prep.returncode == 0, prep.stderr[-2000:]
    # main_ppo's own actors (task runner, transfer queue, rollout and reward loops) need CPU slots beside the two
    # training processes: a third node offers them
    ray_nodes.start("extra", cpus=6)
    try:
        before = ray_nodes.probe()
        env = driver_env(ray_nodes, ALGO="grpo", MODEL=str(tiny.model_dir), DATA_DIR=str(rl))
        args = ["rl_setting=tiny-cpu", "trainer.total_training_steps=1", "data.train_batch_size=8",
                "actor_rollout_ref.rollout.n=2", "actor_rollout_ref.rollout.tensor_model_parallel_size=1",
                f"trainer.default_local_dir={tmp_path / 'ckpt'}"]  # fmt: skip
        began = time.monotonic()
        result = finish_or_explain(launch("train_rl.sh", args, env, wait=False), ray_nodes, timeout=480)
        print(f"\n[ray] GRPO (main_ppo), 1 step, trainer.nnodes=2: {time.monotonic() - began:.1f} s")
        assert result.returncode == 0, (result.stdout + result.stderr)[-5000:]
        after = ray_nodes.probe()
    finally:
        ray_nodes.kill("extra")
    # verl's console logger, in the task runner's output that Ray forwards to the driver
    steps = {line.split("step:")[1].split()[0] for line in result.stdout.splitlines() if " step:" in line}
    assert steps == {"1"} and "actor/pg_loss:" in result.stdout, result.stdout[-3000:]
    seen = {actor[0] for actor in before["actors"]}
    placed = {(cls.split(".")[-1], node[:8]) for key, cls, node, _ in after["actors"] if key not in seen}
    print(f"[ray] GRPO actors by node: {sorted(placed)}")
    assert len({node for _, node in placed}) >= 2, placed
    assert len([cls for cls, _ in placed if cls == "WorkerDict"]) >= 1, placed
