"""What a driver needs from a Ray cluster: a live address to join, all of its nodes, and to hear when one is lost.

- :func:`init_ray` joins ``RAY_ADDRESS`` (or this machine's cluster) like ``ray.init()``, except that a
  ``/tmp/ray/ray_current_cluster`` left by a head that died (which ``ray.init()`` follows, and then fails to
  connect) is reported and a local Ray is started instead, as with no file there.
- :func:`require_nodes` waits a bounded time for ``trainer.nnodes`` live nodes and fails naming those present.
- :class:`NodeWatch` notes the live nodes when a run starts; when the run fails, or a node leaves while the driver
  waits (a worker blocked in a collective on a node that is gone would wait for its timeout), it names the lost
  node(s) within a bounded time (Ray's health check decides when a node is dead: ~15-65 s by default).
"""

from __future__ import annotations

import _thread
import os
import socket
import threading
import time
from pathlib import Path

NODE_WAIT_ENV = "DFT_RAY_NODE_WAIT_S"  # how long a driver waits for nodes to join, or for a lost one to be named
DEFAULT_NODE_WAIT_S = 120.0


def node_wait_s() -> float:
    raw = os.environ.get(NODE_WAIT_ENV, str(DEFAULT_NODE_WAIT_S))
    try:
        return float(raw)
    except ValueError:
        raise ValueError(f"{NODE_WAIT_ENV}={raw!r} is not a number of seconds") from None


def current_cluster_file() -> Path:
    from ray._common.utils import get_ray_address_file

    return Path(get_ray_address_file(None))


def answers(address: str, timeout_s: float = 3.0) -> bool:
    """Whether something accepts a TCP connection at ``host:port``."""
    host, _, port = address.rpartition(":")
    try:
        with socket.create_connection((host, int(port)), timeout=timeout_s):
            return True
    except (OSError, ValueError):
        return False


def stale_cluster_address() -> str | None:
    """The address in ``ray_current_cluster`` when ``ray.init()`` would follow it and nothing answers there."""
    if os.environ.get("RAY_ADDRESS", "auto") not in ("", "auto"):
        return None
    path = current_cluster_file()
    if not path.is_file():
        return None
    text = path.read_text().strip()
    address = text.splitlines()[0] if text else ""
    return address if address and not answers(address) else None


def init_ray(**kwargs) -> None:
    """``ray.init(**kwargs)``, or a fresh local Ray (saying why) when the address Ray would follow is dead."""
    import ray

    if ray.is_initialized():
        return
    stale = stale_cluster_address()
    if stale is not None:
        print(f"[dft] {current_cluster_file()} names a Ray head at {stale} that does not answer (a cluster that "
              "ended without `ray stop`); starting a local Ray instead. Set RAY_ADDRESS to join a cluster, or "
              "delete that file to silence this.", flush=True)  # fmt: skip
        kwargs["address"] = "local"
    ray.init(**kwargs)


def live_nodes() -> dict[str, str]:
    """node id -> a readable name (Ray's node name, and its address when that differs) of each live node."""
    import ray

    return {node["NodeID"]: describe(node) for node in ray.nodes() if node["Alive"]}


def describe(node: dict) -> str:
    name, address = node.get("NodeName") or "", node.get("NodeManagerAddress") or ""
    label = name if name == address or not address else f"{name} at {address}" if name else address
    return f"{label} (node {node['NodeID'][:12]})"


def require_nodes(nnodes: int, wait_s: float | None = None) -> dict[str, str]:
    """Wait until the cluster has ``nnodes`` live nodes; fail after ``wait_s`` naming the nodes present."""
    wait_s = node_wait_s() if wait_s is None else wait_s
    deadline = time.monotonic() + wait_s
    while True:
        nodes = live_nodes()
        if len(nodes) >= nnodes:
            return nodes
        if time.monotonic() >= deadline:
            present = ", ".join(sorted(nodes.values())) or "none"
            raise MissingNodes(
                f"trainer.nnodes={nnodes}, but after {wait_s:g} s ({NODE_WAIT_ENV}) the Ray cluster has "
                f"{len(nodes)} live node(s): {present}; {nnodes - len(nodes)} node(s) never joined. Start Ray on "
                "the missing nodes (scripts/ray_cluster.sh) or lower trainer.nnodes."
            )
        time.sleep(1.0)


class MissingNodes(RuntimeError):
    """Fewer Ray nodes than the run asks for joined within the wait."""


class NodeLost(RuntimeError):
    """A Ray node that was live when the run started left the cluster during it."""


class NodeWatch:
    """While a run lasts, watch the nodes live at its start; ``lost`` names those that left.

    A node lost while the driver waits interrupts the main thread (``KeyboardInterrupt`` there), so that a run
    whose workers block in a collective ends at once; :meth:`explain` turns a failure into :class:`NodeLost`.
    """

    def __init__(self, period_s: float = 1.0):
        self.start_nodes = live_nodes()
        self.lost: dict[str, str] = {}
        self.period_s = period_s
        self._armed = True  # the watcher may interrupt the main thread (until explain() takes over)
        self._lock = threading.Lock()
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._watch, name="dft-ray-node-watch", daemon=True)

    def __enter__(self):
        self._thread.start()
        return self

    def __exit__(self, *exc):
        self._disarm()
        self._thread.join(timeout=5)
        return False

    def _disarm(self) -> None:
        with self._lock:
            self._armed = False
        self._stop.set()

    def check(self) -> dict[str, str]:
        alive = live_nodes()
        self.lost = {node: name for node, name in self.start_nodes.items() if node not in alive}
        return self.lost

    def _watch(self) -> None:
        while not self._stop.wait(self.period_s):
            try:
                lost = self.check()
            except Exception:  # the GCS itself gone: the run's own error says so
                return
            with self._lock:
                if lost and self._armed:
                    self._armed = False
                    _thread.interrupt_main()
                    return

    def explain(self, error: BaseException, resume_hint: str, wait_s: float | None = None) -> NodeLost | None:
        """After the run failed with ``error``: if it looks like a lost peer, wait (bounded) until Ray marks a node
        dead; a NodeLost naming it, or None when every node is still live (the failure is something else)."""
        self._disarm()
        if not self.lost and not looks_like_lost_peer(error):
            return None
        deadline = time.monotonic() + (node_wait_s() if wait_s is None else wait_s)
        while not self.lost and time.monotonic() < deadline:
            try:
                if not self.check():
                    time.sleep(self.period_s)
            except KeyboardInterrupt:  # the watcher's, sent just before it was disarmed: it saw the loss too
                continue
            except Exception:
                return None
        if not self.lost:
            return None
        names = "; ".join(self.lost.values())
        last_line = (str(error).strip().splitlines() or [""])[-1]
        return NodeLost(f"Ray lost {len(self.lost)} node(s) during the run: {names} ({type(error).__name__}: "
                        f"{last_line}). {resume_hint}")  # fmt: skip


# what a worker or the driver reports when a peer process or its node vanished
LOST_PEER_SIGNS = ("Connection reset by peer", "Connection closed by peer", "ActorDiedError", "ActorUnavailableError",
                   "NodeDiedError", "node has died", "died unexpectedly", "Broken pipe")  # fmt: skip


def looks_like_lost_peer(error: BaseException) -> bool:
    if isinstance(error, KeyboardInterrupt):  # NodeWatch's interrupt (or the user's): worth a look at the nodes
        return True
    text = f"{type(error).__name__}: {error}"
    return any(sign in text for sign in LOST_PEER_SIGNS)
