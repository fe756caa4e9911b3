"""Run a recipe at toy scale from Python (the quickstart's one orchestration): ``bash recipes/<recipe>/run.sh``.

A local stand-in for the lead's helper of the same interface (issue 19): ``run_recipe(recipe, knobs, overrides, out)``
runs ``SCALE=tiny RUNS=out/runs DATA=out/data bash recipes/<recipe>/run.sh *overrides`` with the knobs as environment
variables, its output streamed to ``out/<recipe>.log``; a failure exits with the log's tail.
"""

import os
import subprocess
import sys
import time
from pathlib import Path

from dft.core import paths


def run_recipe(recipe: str, knobs: dict[str, str], overrides: list[str], out: Path) -> None:
    out.mkdir(parents=True, exist_ok=True)
    log = out / f"{recipe}.log"
    env = dict(os.environ, SCALE="tiny", RUNS=str(out / "runs"), DATA=str(out / "data"), PYTHONUNBUFFERED="1",
               PYTHONPATH=os.pathsep.join(filter(None, [str(paths.REPO), os.environ.get("PYTHONPATH")])), **knobs)
    print(f"recipes/{recipe} (log: {log}) ...", flush=True)
    start = time.time()
    with open(log, "a") as stream:
        code = subprocess.run(["bash", f"recipes/{recipe}/run.sh", *overrides], cwd=paths.REPO, env=env,
                              stdout=stream, stderr=subprocess.STDOUT).returncode  # fmt: skip
    if code != 0:
        raise SystemExit(f"recipes/{recipe} failed (exit {code}); log: {log}\n{log.read_text()[-3000:]}")
    print(f"recipes/{recipe}: {time.time() - start:.0f} s", flush=True)
