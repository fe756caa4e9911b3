"""Every command of the README's "From zero to Table 1 on a cluster" is checked without a GPU: scripts and recipes
by their dry runs (each printed command composed, as `python -m dft recipes check` does), dft commands by
dft.cli.recipe_check' start-up checks, pip and hub commands against what they name, and the section's numbers against
`python -m dft plan`. A command this test does not know fails it, so the section cannot grow unchecked."""

import ast
import hashlib
import importlib.metadata
import os
import re
import shlex
import subprocess

import pytest
from conftest import REPO

from dft.cli.recipe_check import check_command, check_lines
from dft.eval.benchmarks import DATA_DIR_ENV, PAPER_BENCHMARKS
from dft.models.presets import presets
from dft.report import plan

SECTION = "## From zero to Table 1 on a cluster"
SHARED_DATA = REPO.parent / "shared" / "data"
ENV_ASSIGNMENT = re.compile(r"^[A-Z_][A-Z0-9_]*=")


def section() -> str:
    readme = (REPO / "README.md").read_text()
    start = readme.index(f"\n{SECTION}\n")
    return readme[start : readme.index("\n## ", start + 1)]


def commands() -> list[str]:
    """Each command line of the section's bash blocks, continuation lines joined."""
    blocks = re.findall(r"```bash\n(.*?)```", section(), re.S)
    return [line.strip() for block in blocks for line in block.replace("\\\n", " ").splitlines() if line.strip()]


def dry_run(script: str, env: dict) -> list[str]:
    result = subprocess.run(["bash", script], cwd=REPO, capture_output=True, text=True, timeout=120,
                            env={**os.environ, **env, "DRY_RUN": "1"})  # fmt: skip
    assert result.returncode == 0, f"DRY_RUN=1 bash {script}: {result.stderr[-2000:]}"
    return [line for line in result.stdout.splitlines() if line.strip()]


def split_env(argv: list[str]) -> tuple[dict, list[str]]:
    """Leading VAR=value words become the environment of the command after them."""
    env = {}
    while argv and ENV_ASSIGNMENT.match(argv[0]):
        key, _, value = argv.pop(0).partition("=")
        env[key] = value
    return env, argv


def check_pip(argv: list[str]) -> None:
    """torch at verl 0.9.1's own pin for its vllm stack; `-e .[extras]` names extras setup.py declares."""
    if "-e" in argv:
        extras = re.fullmatch(r"\.\[([\w,-]+)\]", argv[argv.index("-e") + 1]).group(1).split(",")
        setup = ast.parse((REPO / "setup.py").read_text())
        declared = next(kw.value for node in ast.walk(setup) if isinstance(node, ast.Call)
                        for kw in node.keywords if kw.arg == "extras_require")  # fmt: skip
        assert set(extras) <= {key.value for key in declared.keys}, extras
        return
    pins = [arg for arg in argv[2:] if "==" in arg]
    verl_pins = {r.split(";")[0].strip() for r in importlib.metadata.requires("verl") if 'extra == "vllm"' in r}
    assert pins and set(pins) <= verl_pins, (pins, verl_pins)


def check_hf(argv: list[str]) -> None:
    """The subcommand exists in the installed huggingface_hub CLI (its --help, nothing sent to the hub)."""
    result = subprocess.run([*argv, "--help"], capture_output=True, text=True, timeout=60)
    assert result.returncode == 0 and "Usage: hf " in result.stdout, result.stdout + result.stderr


def check_export(argv: list[str]) -> None:
    key, _, value = argv[1].partition("=")
    assert key == DATA_DIR_ENV, f"export {key}: only {DATA_DIR_ENV} is checked here"
    # scripts/download.sh's default BENCHMARK_DIR, from the repository root
    assert value == "$PWD/data/benchmarks" and "data/benchmarks" in (REPO / "scripts" / "download.sh").read_text()


def check_download(env: dict) -> None:
    """The five paper models by their presets' hub ids, and the five benchmarks with the sha256 of the files
    `../shared/data` holds (byte-for-byte copies of what the DFT repository evaluated)."""
    lines = dry_run("scripts/download.sh", env)
    hub_ids = [shlex.split(line)[2] for line in lines if line.startswith("hf download ")]
    assert sorted(hub_ids) == sorted(p.hub_id for p in presets().values() if p.hub_id)
    checked = dict(re.fullmatch(r"verify data/benchmarks/(\w+)/test\.jsonl sha256=(\w+)", line).groups()
                   for line in lines if line.startswith("verify "))  # fmt: skip
    assert sorted(checked) == sorted(PAPER_BENCHMARKS)
    for name, sha256 in checked.items():
        assert hashlib.sha256((SHARED_DATA / name / "test.jsonl").read_bytes()).hexdigest() == sha256, name


def default_recipe_lines(recipe: str) -> set[str]:
    """The recipe's default dry run, whose every command tests/test_recipes_on_cpu.py composes."""
    return set(dry_run(f"recipes/{recipe}/run.sh", {}))


def check_recipe(script: str, env: dict) -> None:
    """Dry-run with the command's knobs; compose every command the default dry run does not already cover."""
    recipe = re.fullmatch(r"recipes/(\w+)/run\.sh", script).group(1)
    lines = dry_run(script, env)
    assert lines, f"{script} printed no command"
    composed, errors = check_lines([line for line in lines if line not in default_recipe_lines(recipe)])
    assert not errors, "\n".join(errors)


def check_plan(argv: list[str], capsys) -> None:
    """The section quotes `python -m dft plan`'s tables verbatim and its numbers in the text."""
    plan.main(argv[4:])
    printed = capsys.readouterr().out.splitlines()
    if argv[4] == "expect":
        dft_row = next(line for line in printed if line.startswith("| Qwen2.5-Math-1.5B | DFT |"))
        quoted = re.search(r"\(Qwen2\.5-Math-1\.5B DFT: math500 (.+?), AIME24 (.+?), average (.+?)\)", section())
        assert quoted and all(f" {cell} |" in dft_row for cell in quoted.groups()), dft_row
    else:
        assert "\n".join(printed) in section()


def check_one(line: str, capsys) -> str:
    """Check one command (no pipes, no &&); return what it ran."""
    env, argv = split_env(shlex.split(line))
    program = argv[0]
    if program == "pip":
        check_pip(argv)
    elif program == "hf":
        check_hf(argv)
    elif program == "export":
        check_export(argv)
    elif argv[:2] == ["bash", "scripts/download.sh"]:
        check_download(env)
    elif program == "bash" and argv[1].startswith("recipes/"):
        check_recipe(argv[1], env)
    elif argv[:4] == ["python", "-m", "dft", "plan"]:
        check_plan(argv, capsys)
    elif argv[:2] == ["python", "-m"]:
        check_command(shlex.join(argv))
    else:
        pytest.fail(f"no check for the README command: {line}")
    return " ".join(argv[:3])


def test_every_command_of_the_section_is_checked(capsys):
    checked = []
    for line in commands():
        if " | " in line:  # a dry run piped into the composition check: the dry run is checked as above
            left, right = line.split(" | ")
            assert right == "python -m dft recipes check" and left.startswith("DRY_RUN=1 "), line
            line = left.removeprefix("DRY_RUN=1 ")
        checked += [check_one(part, capsys) for part in line.split(" && ")]
    assert len(checked) >= 12, checked


def test_the_training_data_command_is_the_one_the_recipe_runs():
    prep = next(line for line in commands() if " dft data numina " in line)
    assert prep in default_recipe_lines("table1") | {line.strip() for line in default_recipe_lines("table1")}


def test_the_recipe_order_lists_every_recipe_with_its_estimate():
    rows = re.findall(r"^\| (\d+) \| `(\w+)` \| (.+?) \| (~\d+) \|$", section(), re.M)
    recipes = sorted(p.parent.name for p in (REPO / "recipes").glob("*/run.sh"))
    assert sorted(name for _, name, _, _ in rows) == recipes
    assert [int(n) for n, *_ in rows] == list(range(1, len(recipes) + 1))
    table = (REPO / "recipes" / "README.md").read_text()
    for _, name, _, hours in rows:
        assert re.search(rf"^\| \[{name}\]\({name}/\) \|.*\| {hours}[ |(]", table, re.M), (name, hours)
