"""Grading of math responses: the final answer against a gold answer, by math-verify, bounded in time.

One layer for the eval harness, rejection-sampling data prep and the RL reward, so it must give the same verdict
in the main thread, in other threads and in Ray actors, and must never hang or silently score 0:

- The answer is extracted by the paper's harness rules (``dft.eval.answers.extract_answer``: last ``\\boxed{}``,
  "the answer is", "final answer is", last number); ``Verdict.rule`` records which one found it.
- Equality is ``dft.eval.judge.judge``: math-verify with the equivalences and false-positive fixes listed there.
- math-verify's own timeout uses ``signal.alarm``, which raises outside the main thread (its wrappers then
  return 0). Here judging runs in worker processes with math-verify's timeouts off; the parent gives each
  pair a hard deadline, kills a worker that overruns it, starts a new one and reports ``error="timeout"``.
- ``Grader(grader="paper")`` gives the DFT paper's harness's verdicts instead (``dft.eval.paper_grader``: its
  extraction, normalisation and ``math_equal``, 3 s per answer); ``GRADERS`` names both; docs/grading.md.
- ``Verdict.error`` says grading itself failed (timeout, worker death, an exception from parse/verify, a gold
  that does not parse); ``correct`` is then False, but the pair is not a plain wrong answer.
"""

from __future__ import annotations

import atexit
import logging
import os
import re
import signal
import subprocess
import sys
import threading
import time
from collections import deque
from collections.abc import Callable, Iterable
from dataclasses import dataclass
from multiprocessing import Pipe
from multiprocessing.connection import Connection, wait
from pathlib import Path

from dft.eval.answers import extract_answer
from dft.eval.graders import GRADERS
from dft.eval.judge import as_math, judge  # noqa: F401 (as_math: re-exported)

DEFAULT_TIMEOUT_S = GRADERS["ours"]
STARTUP_TIMEOUT_S = 120.0  # a worker's first import of sympy can take seconds on a loaded machine
INTEGRAL_FLOAT_RE = re.compile(r"^(-?\d+)\.0*$")


@dataclass(frozen=True)
class Verdict:
    """One graded response: ``correct``; the extracted answer (None: no answer); why grading failed, if it did;
    the extraction rule that found the answer (``dft.eval.answers.RULES``; the paper's: ``paper_parser.raw_answer``)."""

    correct: bool
    extracted: str | None
    error: str | None = None
    rule: str | None = None


def normalize_gold(gold: str | int | float) -> str:
    """A gold answer as LaTeX; numbers may come as int/float, and ``27.0`` (AMC23's float golds) becomes ``27``."""
    if isinstance(gold, bool) or not isinstance(gold, (str, int, float)):
        raise TypeError(f"gold answer must be a string or a number, got {type(gold).__name__}: {gold!r}")
    text = (repr(gold) if isinstance(gold, float) else str(gold)).strip()
    return INTEGRAL_FLOAT_RE.sub(r"\1", text)


def _judge_of(grader: str) -> Callable:
    """The worker's equality function for a grader name."""
    if grader == "paper":
        from dft.eval.paper_grader import judge_paper

        return judge_paper
    return judge


def _serve(fd: int, grader: str = "ours") -> None:
    """Worker process: answer (answer, gold) jobs on the connection ``fd`` with the grader's equality (``judge``
    for ours) until told to stop (None) or the parent goes away."""
    equal = _judge_of(grader)
    signal.signal(signal.SIGINT, signal.SIG_IGN)  # Ctrl-C reaches the parent, which kills the workers
    logging.getLogger("math_verify").setLevel(logging.ERROR)  # silences "Timeout is disabled": the pool times out
    conn = Connection(fd)
    conn.send("ready")
    while True:
        try:
            job = conn.recv()
            if job is None:
                return
            conn.send(equal(*job))
        except (EOFError, OSError):  # the parent went away
            return


class _Worker:
    """One grading process (a fresh interpreter) and the parent's end of its socket pair.

    A plain subprocess rather than a multiprocessing child: spawn and forkserver children re-run the caller's
    ``__main__`` (a script without a ``__main__`` guard, or Ray's worker), and fork is unsafe in a process that
    holds threads (Ray, torch, tokenizers). The cost is an interpreter start and a math-verify import per worker
    (about a second), paid at start-up and after a timeout, while the other workers go on.
    """

    def __init__(self, grader: str = "ours"):
        self.conn, child = Pipe()
        self.ready, self.dead, self.started = False, False, time.monotonic()
        package_root = str(Path(__file__).resolve().parents[2])
        env = dict(os.environ, PYTHONPATH=os.pathsep.join(filter(None, [package_root, os.environ.get("PYTHONPATH")])))
        command = f"from dft.eval.grading import _serve; _serve({child.fileno()}, {grader!r})"
        self.proc = subprocess.Popen(
            [sys.executable, "-c", command], pass_fds=[child.fileno()], stdin=subprocess.DEVNULL, env=env
        )
        child.close()  # so that the parent sees EOF when the worker dies

    def check_ready(self) -> bool:
        """Whether the worker has started and can take a job (without waiting); raises if it cannot start."""
        if not self.ready and self.conn.poll():
            message = self.result()
            if message != "ready":
                raise RuntimeError(f"grading worker failed to start: {message}")
            self.ready = True
        if not self.ready and time.monotonic() - self.started > STARTUP_TIMEOUT_S:
            raise RuntimeError(f"grading worker did not start within {STARTUP_TIMEOUT_S:.0f} s")
        return self.ready

    def result(self):
        """The pending job's outcome; if the process died on it instead, an error saying so (and ``dead`` set)."""
        try:
            return self.conn.recv()
        except (EOFError, OSError):
            self.dead = True
            return False, f"worker died (exit code {self.proc.wait()})"

    def kill(self) -> None:
        self.proc.kill()
        self.proc.wait()
        self.conn.close()

    def stop(self) -> None:
        try:
            self.conn.send(None)
            self.proc.wait(2)
        except (OSError, subprocess.TimeoutExpired):
            self.proc.kill()
            self.proc.wait()
        self.conn.close()


class Grader:
    """A pool of grading processes with a hard per-pair deadline; a context manager (``close`` on exit).

    Each worker takes one pair at a time, so a worker past its deadline is killed and replaced without losing any
    other pair. The deadline counts from the moment a worker receives the pair, never from queueing. Workers start
    on first use. One ``grade_many`` runs at a time per Grader (calls from several threads take turns). ``grader``:
    ``ours`` or ``paper`` (``GRADERS``); ``timeout_s`` None is the grader's default.
    """

    def __init__(self, workers: int = 1, timeout_s: float | None = None, grader: str = "ours"):
        if grader not in GRADERS:
            raise ValueError(f"grader: unknown {grader!r}; valid: {', '.join(GRADERS)}")
        timeout_s = GRADERS[grader] if timeout_s is None else timeout_s
        if workers < 1 or timeout_s <= 0:
            raise ValueError(f"need workers >= 1 and timeout_s > 0, got {workers} and {timeout_s}")
        self.workers, self.timeout_s, self.grader = workers, timeout_s, grader
        self.pid = os.getpid()
        self._pool: list[_Worker] = []
        self._lock = threading.Lock()

    def __enter__(self) -> Grader:
        return self

    def __exit__(self, *exc) -> None:
        self.close()

    def close(self) -> None:
        """Stop every worker (idempotent)."""
        with self._lock:
            for worker in self._pool:
                worker.stop()
            self._pool = []

    def grade_many(
        self,
        pairs: Iterable[tuple[str, str | int | float]],
        timeout_s: float | None = None,
        progress: Callable[[int], None] | None = None,
    ) -> list[Verdict]:
        """One Verdict per (response, gold) or (response, gold, benchmark), in order (the benchmark matters to the
        paper's grader only: ``dft.eval.paper_parser``). ``progress(n)`` is told of every n newly graded pairs
        (``tqdm.update`` fits); a response without an answer is wrong without a trip to a worker."""
        pairs = list(pairs)
        extracted, golds = self._extract(pairs)
        todo = [i for i, (answer, _) in enumerate(extracted) if answer is not None]
        if progress and len(todo) < len(pairs):
            progress(len(pairs) - len(todo))
        jobs = [(extracted[i][0], golds[i]) for i in todo]
        outcomes = self.judge_many(jobs, timeout_s, progress)
        verdicts = [Verdict(False, None) for _ in pairs]
        for i, (correct, error) in zip(todo, outcomes):
            verdicts[i] = Verdict(correct, extracted[i][0], error, extracted[i][1])
        return verdicts

    def _extract(self, pairs: list) -> tuple[list[tuple[str | None, str | None]], list[str]]:
        """(answer, rule) per pair and the golds as the grader compares them."""
        if self.grader == "paper":
            from dft.eval.paper_grader import paper_job

            jobs = [paper_job(response, normalize_gold(gold), *rest) for response, gold, *rest in pairs]
            return [(answer, rule) for answer, rule, _ in jobs], [gold for _, _, gold in jobs]
        extracted = [extract_answer(response) for response, *_ in pairs]
        return extracted, [
            normalize_gold(gold) if answer else "" for (answer, _), (_, gold, *_) in zip(extracted, pairs)
        ]

    def equivalent(self, a: str, b: str, timeout_s: float | None = None) -> bool:
        """Whether two extracted answers are the same (``a`` plays the gold); a failed comparison says no."""
        return self.judge_many([(b, a)], timeout_s)[0][0]

    def judge_many(
        self, jobs: list[tuple[str, str]], timeout_s: float | None = None, progress: Callable[[int], None] | None = None
    ) -> list[tuple[bool, str | None]]:
        """``judge(answer, gold)`` of every job, in order, in the pool; a job past ``timeout_s`` gets "timeout"."""
        if not jobs:
            return []
        with self._lock:
            self._start()
            try:
                return self._dispatch(jobs, timeout_s or self.timeout_s, progress)
            except BaseException:  # e.g. Ctrl-C: busy workers' late answers must not be read as the next jobs'
                for worker in self._pool:
                    worker.kill()
                self._pool = []
                raise

    def _start(self) -> None:
        if self.pid != os.getpid():
            raise RuntimeError("a Grader cannot be used in a process forked after it was made; make a new one")
        if not self._pool:
            self._pool = [_Worker(self.grader) for _ in range(self.workers)]

    def _replace(self, slot: int) -> None:
        self._pool[slot].kill()
        self._pool[slot] = _Worker(self.grader)

    def _dispatch(self, jobs, timeout_s, progress) -> list[tuple[bool, str | None]]:
        """Keep every worker busy; collect answers as they come; kill and replace workers past their deadline."""
        results: list = [None] * len(jobs)
        queue = deque(range(len(jobs)))
        running: dict[int, tuple[int, float]] = {}  # worker slot -> (job index, deadline)
        while queue or running:
            for slot, worker in enumerate(self._pool):
                if queue and slot not in running and worker.check_ready():
                    index = queue.popleft()
                    if self._send(slot, jobs[index]):
                        running[slot] = (index, time.monotonic() + timeout_s)
                    else:
                        queue.appendleft(index)
            # sleep until a result, a started worker or the next deadline; idle workers are not watched
            watched = [w.conn for slot, w in enumerate(self._pool) if slot in running or not w.ready]
            deadlines = [deadline for _, deadline in running.values()]
            wait(watched, timeout=max(0.0, min(deadlines) - time.monotonic()) if deadlines else 1.0)
            for slot, (index, deadline) in list(running.items()):
                outcome = self._collect(slot, deadline)
                if outcome is not None:
                    results[index] = outcome
                    del running[slot]
                    if progress:
                        progress(1)
        return results

    def _send(self, slot: int, job: tuple[str, str]) -> bool:
        """Hand ``job`` to an idle worker; False if the worker had died (killed from outside) and was replaced."""
        try:
            self._pool[slot].conn.send(job)
            return True
        except OSError:
            self._replace(slot)
            return False

    def _collect(self, slot: int, deadline: float) -> tuple[bool, str | None] | None:
        """The worker's outcome if it has one, (False, "timeout") if it is past its deadline, else None."""
        worker = self._pool[slot]
        if worker.conn.poll():
            outcome = worker.result()
            if worker.dead:
                self._replace(slot)
            return outcome
        if time.monotonic() >= deadline:
            self._replace(slot)
            return False, "timeout"
        return None


_shared: Grader | None = None
_shared_lock = threading.Lock()


def _shared_grader() -> Grader:
    """The process's one-worker Grader behind ``grade``, made on first use (again after a fork), closed at exit."""
    global _shared
    if _shared is None or _shared.pid != os.getpid():
        _shared = Grader(workers=1)
        atexit.register(_shared.close)
    return _shared


def grade(response: str, gold: str | int | float, timeout_s: float = DEFAULT_TIMEOUT_S) -> Verdict:
    """Grade one response; safe from any thread (calls take turns on a shared worker). For many, use a Grader."""
    with _shared_lock:
        grader = _shared_grader()
    return grader.grade_many([(response, gold)], timeout_s)[0]
