"""``python -m module`` (or torchrun's N processes of it) as forks of the test process, for speed.

A fresh interpreter spends ~12 s importing torch, transformers and verl and ~3 s collecting them at exit, on
a 2-core machine more than a tiny model's training takes. The test process imports them once; each run is then
forked from it, with the environment torchrun gives its workers (ranks, world size, a rendezvous port), one
thread and sequential tokenization (neither OpenMP's nor the tokenizers' thread pool survives a fork), and
executes the module as ``__main__`` with ``runpy``: the command line's own code (preflight, Hydra, the
trainer), in its own processes, so no state of one run reaches another or the tests. Output goes to files per
rank, returned like ``subprocess.run``'s. ``DFT_TESTS_SUBPROCESS=1`` runs real ``python``/``torchrun``
instead (tests/conftest.py ``run_module``).

The commands that tests run through the real launchers (the quickstarts, ``scripts/*.sh``, the CLI tests)
keep covering interpreter start-up and torchrun itself.
"""

import os
import runpy
import signal
import socket
import sys
import tempfile
import time
import traceback
from pathlib import Path
from types import SimpleNamespace

PREIMPORTED = ("torch", "transformers", "verl.trainer.sft_trainer", "dft.trainer", "hydra")


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


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


def _child(module: str, args: list, env: dict, cwd: Path, out: Path, err: Path) -> None:
    """In the forked process: run the module as ``__main__`` with its output in ``out``/``err``; never return."""
    code = 1
    try:
        os.chdir(cwd)
        os.environ.clear()
        os.environ.update(env)
        # nor does the tokenizers' thread pool: its fork handler turns parallelism off, and verl's trainer module
        # turned it on in the parent's environment (copied into ``env``); a pooled encode would wait forever
        os.environ["TOKENIZERS_PARALLELISM"] = "false"
        for fd, path in ((1, out), (2, err)):
            os.dup2(os.open(path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o644), fd)
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


def _wait(pids: list, timeout: float) -> list:
    """Exit codes of ``pids``; when one fails or time runs out, the others are killed (as torchrun does)."""
    codes, deadline = {}, time.monotonic() + timeout
    while len(codes) < len(pids):
        for pid in pids:
            if pid not in codes:
                done, status = os.waitpid(pid, os.WNOHANG)
                if done:
                    codes[pid] = os.waitstatus_to_exitcode(status)
        failed = any(code != 0 for code in codes.values())
        if failed or time.monotonic() > deadline:
            for pid in pids:
                if pid not in codes:
                    os.kill(pid, signal.SIGKILL)
                    codes[pid] = os.waitstatus_to_exitcode(os.waitpid(pid, 0)[1])
        time.sleep(0.05)
    return [codes[pid] for pid in pids]


def run_forked(module: str, args: list, env: dict, cwd: Path, nproc: int | None, timeout: float) -> SimpleNamespace:
    """``python -m module args`` (nproc None) or torchrun's ``nproc`` workers of it; a ``subprocess.run``-like
    result: the first failing exit code, and stdout/stderr of every rank, rank 0 first."""
    for name in PREIMPORTED:
        __import__(name)
    ranks = [None] if nproc is None else list(range(nproc))
    port = _free_port()
    sys.stdout.flush(), sys.stderr.flush()
    with tempfile.TemporaryDirectory() as tmp:
        files = [(Path(tmp) / f"{i}.out", Path(tmp) / f"{i}.err") for i in range(len(ranks))]
        pids = []
        for rank, (out, err) in zip(ranks, files):
            rank_env = dict(env) if rank is None else {**env, **torchrun_env(rank, nproc, port)}
            pid = os.fork()
            if pid == 0:
                _child(module, args, rank_env, cwd, out, err)
            pids.append(pid)
        codes = _wait(pids, timeout)
        stdout = "".join(out.read_text(errors="replace") for out, _ in files)
        stderr = "".join(err.read_text(errors="replace") for _, err in files)
    returncode = next((code for code in codes if code != 0), 0)
    return SimpleNamespace(returncode=returncode, stdout=stdout, stderr=stderr, args=[module, *args])
