"""A recipe at toy scale, run from Python: the quickstart commands are recipes (the recipe is the orchestration).

``run_recipe("table1", knobs, overrides, out)`` runs ``SCALE=tiny RUNS=out/runs DATA=out/data KNOB=... bash
recipes/table1/run.sh OVERRIDES...``, exactly what a user types, with its output in ``out/table1.log``; the
lines the recipe's steps announce (``[recipe] ...``) are shown as they come. A recipe that refuses its knobs or a
folder (exit 2) is reported as it says; any other failure shows the log's tail.
"""

from __future__ import annotations

import os
import subprocess
import time
from pathlib import Path

from dft.core import paths

ANNOUNCED = "[recipe] "


def recipe_env(knobs: dict[str, str], out: Path) -> dict[str, str]:
    """The environment of a toy-scale recipe run into ``out``: the knobs, SCALE=tiny, RUNS and DATA."""
    return dict(os.environ, **knobs, SCALE="tiny", RUNS=str(out / "runs"), DATA=str(out / "data"), PYTHONUNBUFFERED="1")


def run_recipe(recipe: str, knobs: dict[str, str], overrides: list[str], out: Path) -> None:
    out.mkdir(parents=True, exist_ok=True)
    log = out / f"{recipe}.log"
    shown = " ".join(f"{k}={v}" for k, v in knobs.items())
    print(f"SCALE=tiny RUNS={out / 'runs'} DATA={out / 'data'} {shown} bash recipes/{recipe}/run.sh "
          f"{' '.join(overrides)}\n  (log: {log})", flush=True)  # fmt: skip
    start = time.time()
    command = ["bash", str(paths.REPO / "recipes" / recipe / "run.sh"), *overrides]
    with open(log, "a") as sink:
        proc = subprocess.Popen(command, env=recipe_env(knobs, out), stdout=subprocess.PIPE, stderr=subprocess.STDOUT,
                                text=True, cwd=paths.REPO)  # fmt: skip
        for line in proc.stdout:
            sink.write(line)
            if line.startswith(ANNOUNCED) or line.startswith("error:"):
                print(f"  {time.time() - start:5.0f} s  {line.rstrip()}", flush=True)
        code = proc.wait()
    if code == 2:
        raise SystemExit(2)  # a refusal: its error lines were shown
    if code != 0:
        raise SystemExit(f"recipes/{recipe} failed (exit {code}); log: {log}\n{log.read_text()[-3000:]}")
    print(f"recipes/{recipe}: {time.time() - start:.0f} s", flush=True)


def table_lines(markdown: Path) -> str:
    """A rendered table without the list of deviations under it (the file keeps it)."""
    text = markdown.read_text()
    return text.split("\n\n† ", 1)[0]
