"""A recipe's steps run once (dft/cli/recipe_steps.py): begin/done, skipping, refusing another command or other
knobs with each difference named, through the command line common.sh calls."""

import json
import subprocess
import sys

from conftest import REPO


def recipes(*args):
    return subprocess.run([sys.executable, "-m", "dft", "recipes", *args], cwd=REPO, capture_output=True, text=True)


def test_a_step_runs_until_done_then_is_skipped_and_another_command_is_refused(tmp_path):
    out = tmp_path / "eval" / "qwen2.5-math-1.5b-base"  # a folder whose name has dots
    command = ["--", "python", "-m", "dft", "eval", "model=m", f"out={out}", "sampling.n=16", "data_parallel=8"]
    assert recipes("step", "begin", str(out), *command).returncode == 0  # new: run it
    assert json.loads((out / "recipe_step.json").read_text())["finished"] is False
    assert recipes("step", "begin", str(out), *command).returncode == 0  # unfinished (killed): run it again
    assert recipes("step", "done", str(out), *command).returncode == 0
    assert recipes("step", "begin", str(out), *command).returncode == 3  # finished: skip
    # on another number of GPUs the same step is still the same step
    assert recipes("step", "begin", str(out), *command[:-1], "data_parallel=4").returncode == 3
    other = recipes("step", "begin", str(out), *command[:-2], "sampling.n=4", "data_parallel=8")
    assert other.returncode == 2
    assert "argument sampling.n: '16' there, '4' now" in other.stderr and str(out) in other.stderr


def test_a_file_output_is_recorded_beside_it(tmp_path):
    output = tmp_path / "train.ref.parquet"
    command = ["--", "bash", "scripts/train.sh", f"ref.output={output}"]
    assert recipes("step", "begin", str(output), *command).returncode == 0
    assert (tmp_path / "train.ref.parquet.recipe_step.json").is_file() and not output.exists()


def test_other_knobs_are_refused_naming_each_and_layout_knobs_are_not_recorded(tmp_path):
    assert recipes("claim", str(tmp_path), "table1", "MODELS=a b", "N_TRAIN=64", "NPROC_PER_NODE=8").returncode == 0
    assert json.loads((tmp_path / "recipes" / "table1.json").read_text()) == {"MODELS": "a b", "N_TRAIN": "64"}
    assert recipes("claim", str(tmp_path), "table1", "MODELS=a b", "N_TRAIN=64", "NPROC_PER_NODE=2").returncode == 0
    refused = recipes("claim", str(tmp_path), "table1", "MODELS=a", "N_TRAIN=32")
    assert refused.returncode == 2
    assert "knob MODELS: 'a b' there, 'a' now" in refused.stderr
    assert "knob N_TRAIN: '64' there, '32' now" in refused.stderr
    # a knob added to the recipes since the runs were made is recorded, not refused
    assert recipes("claim", str(tmp_path), "table1", "MODELS=a b", "N_TRAIN=64", "RL_LR=1e-4").returncode == 0
    assert json.loads((tmp_path / "recipes" / "table1.json").read_text())["RL_LR"] == "1e-4"
    assert recipes("claim", str(tmp_path), "table2", "MODELS=a").returncode == 0  # another recipe: its own record
