"""``python -m module`` (or torchrun's N processes of it) as forks of the test process, for speed.

A fresh interpreter spends ~12 s importing torch, transformers and verl and ~3 s collecting them at exit, on
a 2-core machine more than a tiny model's training takes. The test process imports them once; each run is then
forked from it, with the environment torchrun gives its workers (ranks, world size, a rendezvous port), one
thread and sequential tokenization (neither OpenMP's nor the tokenizers' thread pool survives a fork), and
executes the module as ``__main__`` with ``runpy``: the command line's own code (preflight, Hydra, the
trainer), in its own processes, so no state of one run reaches another or the tests.

``run_forked`` is ``subprocess.run`` of such a command, with the output of every rank returned (``ForkedPopen``
its ``subprocess.Popen``). ``DFT_TESTS_SUBPROCESS=1`` runs real ``python``/``torchrun`` instead
(tests/conftest.py). The commands that tests run through the real launchers (the recipes at toy scale in
tests_toy_scale/, ``scripts/*.sh``, the CLI tests) keep covering interpreter start-up and torchrun itself.
"""

import os
import runpy
import signal
import sys
import tempfile
import time
import traceback
from pathlib import Path
from types import SimpleNamespace

PREIMPORTED = ("verl.trainer.sft_trainer", "dft.train.trainer")  # torch, transformers and hydra with them


def torchrun_env(rank: int, nproc: int, port: int) -> dict:
    """What torchrun --standalone sets for worker ``rank`` of ``nproc`` on one node."""
    env = {"RANK": rank, "LOCAL_RANK": rank, "GROUP_RANK": 0, "ROLE_RANK": rank, "WORLD_SIZE": nproc,
           "LOCAL_WORLD_SIZE": nproc, "ROLE_WORLD_SIZE": nproc, "ROLE_NAME": "default", "MASTER_ADDR": "127.0.0.1",
           "MASTER_PORT": port, "TORCHELASTIC_RUN_ID": "forked", "TORCHELASTIC_RESTART_COUNT": 0,
           "TORCHELASTIC_MAX_RESTARTS": 0, "OMP_NUM_THREADS": 1}  # fmt: skip
    return {key: str(value) for key, value in env.items()}


def _exit_code(exit: SystemExit) -> int:
    if exit.code is None or isinstance(exit.code, int):
        return exit.code or 0
    print(exit.code, file=sys.stderr)  # sys.exit("message"), as the interpreter prints it
    return 1


def _child(module: str, args: list, env: dict, cwd: str, out_fd: int, err_fd: int) -> None:
    """In the forked process: run the module as ``__main__`` writing to ``out_fd``/``err_fd``; never return."""
    code = 1
    try:
        os.chdir(cwd)
        os.environ.clear()
        os.environ.update(env)
        # nor does the tokenizers' thread pool: its fork handler turns parallelism off, and verl's trainer module
        # turned it on in the parent's environment (copied into ``env``); a pooled encode would wait forever
        os.environ["TOKENIZERS_PARALLELISM"] = "false"
        os.dup2(out_fd, 1)
        os.dup2(err_fd, 2)
        sys.stdout = open(1, "w", buffering=1, closefd=False)
        sys.stderr = open(2, "w", buffering=1, closefd=False)
        import torch
        from hydra.core.global_hydra import GlobalHydra

        # one thread: OpenMP's pool does not survive a fork (a parallel region of the parent's pool hangs)
        torch.set_num_threads(1)
        GlobalHydra.instance().clear()  # the tests' own config compositions
        sys.argv = [module, *args]
        runpy.run_module(module, run_name="__main__", alter_sys=True)
        code = 0
    except SystemExit as exit:
        code = _exit_code(exit)
    except BaseException:
        traceback.print_exc()
    finally:
        for stream in (sys.stdout, sys.stderr):
            stream.flush()
        os._exit(code)


class ForkedPopen:
    """``subprocess.Popen`` of ``python -m module args`` (``nproc`` None) or of torchrun's ``nproc`` workers of it,
    as forks; ``outputs[i]`` is rank i's (stdout fd, stderr fd). When one rank fails the others are killed, as
    torchrun does, and ``returncode`` is the first failing exit code."""

    def __init__(self, module: str, args: list, env: dict, cwd, nproc: int | None, outputs: list):
        from torch.distributed.elastic.utils.distributed import get_free_port

        for name in PREIMPORTED:
            __import__(name)
        ranks = [None] if nproc is None else list(range(nproc))
        port = get_free_port()
        sys.stdout.flush(), sys.stderr.flush()
        self.pids, self.codes, self.returncode = [], {}, None
        for rank, (out_fd, err_fd) in zip(ranks, outputs):
            rank_env = dict(env) if rank is None else {**env, **torchrun_env(rank, nproc, port)}
            pid = os.fork()
            if pid == 0:
                _child(module, [str(a) for a in args], rank_env, str(cwd), out_fd, err_fd)
            self.pids.append(pid)

    def _kill_the_rest(self) -> None:
        for pid in self.pids:
            if pid not in self.codes:
                os.kill(pid, signal.SIGKILL)
                self.codes[pid] = os.waitstatus_to_exitcode(os.waitpid(pid, 0)[1])

    def poll(self) -> int | None:
        for pid in self.pids:
            if pid not in self.codes:
                done, status = os.waitpid(pid, os.WNOHANG)
                if done:
                    self.codes[pid] = os.waitstatus_to_exitcode(status)
        if any(code != 0 for code in self.codes.values()):
            self._kill_the_rest()
        if len(self.codes) == len(self.pids):
            self.returncode = next((self.codes[pid] for pid in self.pids if self.codes[pid] != 0), 0)
        return self.returncode

    def wait(self, timeout: float | None = None) -> int:
        deadline = None if timeout is None else time.monotonic() + timeout
        while self.poll() is None:
            if deadline is not None and time.monotonic() > deadline:
                self._kill_the_rest()
                return self.poll()
            time.sleep(0.05)
        return self.returncode


def run_forked(module: str, args: list, env: dict, cwd: Path, nproc: int | None, timeout: float) -> SimpleNamespace:
    """``python -m module args`` (nproc None) or torchrun's ``nproc`` workers of it; a ``subprocess.run``-like
    result: the first failing exit code, and stdout/stderr of every rank, rank 0 first."""
    with tempfile.TemporaryDirectory() as tmp:
        paths = [(Path(tmp) / f"{i}.out", Path(tmp) / f"{i}.err") for i in range(nproc or 1)]
        files = [tuple(open(path, "w") for path in pair) for pair in paths]
        try:
            proc = ForkedPopen(module, args, env, cwd, nproc, [(out.fileno(), err.fileno()) for out, err in files])
            returncode = proc.wait(timeout)
        finally:
            for pair in files:
                for file in pair:
                    file.close()
        stdout = "".join(out.read_text(errors="replace") for out, _ in paths)
        stderr = "".join(err.read_text(errors="replace") for _, err in paths)
    return SimpleNamespace(returncode=returncode, stdout=stdout, stderr=stderr, args=[module, *args])
