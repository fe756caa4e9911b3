"""The command line (dft/cli/commands.py, preflight.py, validate.py): `python -m dft` and every command's --help, and
bad input refused before any model loads with a message that names the key or file, as a user sees it
(subprocesses, no traceback)."""

import json
import os
import subprocess
import sys

import pandas as pd
import pytest
from conftest import REPO

from dft.cli.commands import COMMANDS
from dft.cli.preflight import HYDRA_COMMANDS

FILE_TOOLS = [name for name in COMMANDS if name not in HYDRA_COMMANDS]


def run(command, *args, env=None, timeout=120):
    """``python -m dft command args`` (command: one word or two, e.g. ``data numina``)."""
    env = dict(os.environ, PYTHONPATH=str(REPO), **(env or {}))
    cmd = [sys.executable, "-m", "dft", *command.split(), *args]
    result = subprocess.run(cmd, cwd=REPO, env=env, capture_output=True, text=True, timeout=timeout)
    assert "Traceback" not in result.stdout + result.stderr, result.stderr[-3000:]
    return result


def test_dft_lists_every_command_with_what_it_does():
    result = run("--help")
    assert result.returncode == 0 and result.stdout.startswith("usage: python -m dft <command>")
    listed = {line.split("  ")[1].strip(): line for line in result.stdout.splitlines() if line.startswith("  ")}
    assert set(COMMANDS) <= set(listed) and all(len(line.split()) > 3 for line in listed.values())
    unknown = run("trian")
    assert unknown.returncode == 2 and "unknown command 'trian'" in unknown.stderr


@pytest.mark.parametrize("command", list(HYDRA_COMMANDS))
def test_hydra_help_says_what_and_which_choices(command):
    result = run(command, "--help")
    assert result.returncode == 0 and result.stderr == ""
    out = result.stdout
    prog = f"python -m dft {command}"
    assert out.startswith(f"usage: {prog} [key=value ...]") and f"{prog} --cfg job" in out
    assert len(out.splitlines()) < 60 and out.splitlines()[2].strip()  # a line that says what it does
    if command.startswith("train"):
        assert "loss.name:" in out and all(f"  {name} " in out for name in ("dft", "sft", "iw_sft", "dpo"))
        assert "qwen2.5-math-1.5b  Qwen2.5-Math-1.5B (Qwen/Qwen2.5-Math-1.5B)" in out and "setting:" in out
    if command == "eval":
        assert "paper (default): math500, minerva_math" in out and "  aime24 (paper)" in out and "qwen-boxed" in out
        assert "hydra/" not in out


def test_hydra_help_imports_neither_torch_nor_verl():
    code = (
        "import sys\n"
        "from dft.cli.commands import main\n"
        "for command in sys.argv[1:]:\n"
        "    try:\n"
        "        main([*command.split(), '--help'])\n"
        "    except SystemExit as e:\n"
        "        assert e.code == 0, (command, e.code)\n"
        "print(sorted({'torch', 'verl', 'transformers'} & set(sys.modules)))"
    )
    result = subprocess.run([sys.executable, "-c", code, *HYDRA_COMMANDS], cwd=REPO, capture_output=True, text=True,
                            timeout=120, env=dict(os.environ, PYTHONPATH=str(REPO)))  # fmt: skip
    assert result.returncode == 0, result.stderr[-3000:]
    assert result.stdout.strip().splitlines()[-1] == "[]"


@pytest.mark.parametrize("command", FILE_TOOLS)
def test_file_tool_help_shows_defaults(command):
    result = run(command, "--help")
    assert result.returncode == 0 and result.stdout.startswith(f"usage: python -m dft {command}"), result.stderr
    if command in ("data numina", "tiny", "grade"):
        assert "(default: " in result.stdout and "(default: None)" not in result.stdout
        assert not any(line.count("default") > 1 for line in result.stdout.splitlines())


# ---------------------------------------------------------------------------------------------------------------
# Bad input: exit status 2, one error line naming the key or file, before any model loads
# ---------------------------------------------------------------------------------------------------------------


@pytest.fixture(scope="module")
def inputs(tmp_path_factory):
    """A folder that passes for a model (config.json, weights), SFT data with `messages`, and a parquet without it."""
    root = tmp_path_factory.mktemp("cli")
    (root / "model").mkdir()
    (root / "model" / "config.json").write_text(json.dumps({"model_type": "qwen2"}))
    (root / "model" / "model.safetensors").write_bytes(b"")  # a folder without weights is refused
    messages = [[{"role": "user", "content": "1+1?"}, {"role": "assistant", "content": "2"}]]
    pd.DataFrame({"messages": messages, "id": ["0"], "answer": ["2"]}).to_parquet(root / "sft.parquet")
    pd.DataFrame({"problem": ["1+1?"], "answer": ["2"]}).to_parquet(root / "plain.parquet")
    pd.DataFrame({"question": ["1+1?"], "answer": ["2"]}).to_parquet(root / "question.parquet")
    return root


def refused(module, *args, env=None):
    result = run(module, *args, env=env)
    errors = [line for line in result.stderr.splitlines() if line.startswith("error: ")]
    assert result.returncode == 2 and len(errors) == 1, result.stdout[-2000:] + result.stderr[-3000:]
    return errors[0]


def train_args(inputs, *args):
    # one row: a batch of one (a file smaller than one batch is itself refused, see below)
    return [f"model.path={inputs / 'model'}", f"data.train_files={inputs / 'sft.parquet'}", "data.train_batch_size=1",
            *args]  # fmt: skip


@pytest.mark.parametrize(
    "args, message",
    [
        (["optim.lr=abc"], "optim.lr='abc' is not a number"),
        (["data.train_batch_size=0"], "data.train_batch_size=0 must be at least 1"),
        (["trainer.total_training_steps=0"], "trainer.total_training_steps=0 must be at least 1"),
        (["loss.name=ce"], "loss.name='ce' is not a known loss; valid names: asft, dft, dpo, iw_sft, prob_power, sft"),
        (["loss.name=dtf"], "loss.name='dtf' is not a known loss (did you mean dft?)"),
        (["loss.normalization=global"], "loss.normalization='global' must be one of token, official"),
        (["trainer.logger=[console,tb]"], "trainer.logger: unknown 'tb'; valid: wandb"),
    ],
)
def test_training_refuses_bad_values(inputs, args, message):
    assert message in refused("train", *train_args(inputs, *args))


def test_training_refuses_a_missing_model_folder(inputs):
    error = refused("train", *train_args(inputs, f"model.path={inputs / 'nope'}"))
    assert f"model.path={inputs / 'nope'}: no such folder" in error


def test_training_refuses_data_smaller_than_one_batch(inputs):
    error = refused("train", *train_args(inputs, "data.train_batch_size=256"))
    assert "data.train_files hold 1 rows, fewer than data.train_batch_size=256: not one full batch" in error


def test_training_refuses_data_without_messages(inputs):
    error = refused("train", *train_args(inputs, f"data.train_files={inputs / 'plain.parquet'}"))
    assert f"data.train_files: {inputs / 'plain.parquet'} has columns ['answer', 'problem'], not (messages)" in error


def test_scoring_needs_an_output(inputs):
    assert "ref.output: give the parquet to write" in refused("ref_logprobs", *train_args(inputs))


@pytest.mark.parametrize(
    "env, message",
    [
        ({"HF_ENDPOINT": "http://127.0.0.1:9"}, "no network: http://127.0.0.1:9 is not reachable"),
        ({"HF_HUB_OFFLINE": "1"}, "HF_HUB_OFFLINE is set and the model is not in the Hugging Face cache"),
    ],
)
def test_hub_id_without_network_fails_at_once(inputs, tmp_path, env, message):
    env = {"HF_HOME": str(tmp_path / "hf"), **env}
    error = refused("train", *train_args(inputs, "model.path=Qwen/Qwen2.5-Math-1.5B"), env=env)
    assert error.startswith("error: model.path=Qwen/Qwen2.5-Math-1.5B: ") and message in error


@pytest.mark.parametrize(
    "args, message",
    [
        (["sampling.n=0"], "sampling.n=0 must be at least 1"),
        (["prompt=qwen"], "prompt: unknown 'qwen'; valid: auto, chat-cot, qwen-boxed"),
        (["limit=0"], "limit=0 selects nothing: give a positive number of problems, or limit=null for all"),
        (["benchmarks=[math501]"], "benchmarks: unknown 'math501'"),
        (["output_dir=runs/x"], "output_dir= was renamed out="),
    ],
)
def test_evaluation_refuses_bad_values(inputs, args, message):
    assert message in refused("eval", f"model={inputs / 'model'}", *args)


def test_evaluation_refuses_a_missing_model(inputs):
    assert f"model={inputs}/nope: no such folder" in refused("eval", f"model={inputs}/nope")


def test_rejection_sampling_refuses_bad_input(inputs):
    error = refused("data rft", f"model={inputs / 'model'}", f"input={inputs / 'question.parquet'}")
    assert error.startswith(f"error: input: {inputs / 'question.parquet'} has columns ['answer', 'question'], not")
    assert "(messages) or (problem) or (extra_info, reward_model)" in error
    assert "limit=0" in refused("data rft", f"model={inputs / 'model'}", f"input={inputs / 'sft.parquet'}", "limit=0")


def test_data_prep_refuses_limit_zero(tmp_path):
    result = run("data numina", "--out", str(tmp_path), "--limit", "0")
    assert result.returncode == 2 and "argument --limit: 0 selects nothing" in result.stderr


# ---------------------------------------------------------------------------------------------------------------
# Progress in the run's unit, logs in the run's folder
# ---------------------------------------------------------------------------------------------------------------


def test_training_bar_counts_the_runs_steps_across_epochs(monkeypatch):
    """A stand-in for verl's fit: one tqdm per epoch of 8 batches, returning at the step limit (10) in epoch 2."""
    import types

    from dft.train.progress import step_bar

    verl_module = types.ModuleType("fake_verl_trainer")
    verl_module.tqdm = None
    monkeypatch.setitem(sys.modules, "fake_verl_trainer", verl_module)

    def fit(done, total):
        step = done
        for epoch in range(2):
            for _ in verl_module.tqdm(range(8), initial=0, total=8, desc=f"Epoch {epoch + 1}/2", disable=False):
                step += 1
                if step >= total:
                    return step

    with step_bar("fake_verl_trainer", total=10, done=3) as bar:
        assert (bar.total, bar.done) == (10, 3)
        assert fit(3, 10) == 10
        assert (bar.bar.total, bar.bar.n) == (10, 9)  # the last step is counted when fit returns
    assert (bar.bar.n, verl_module.tqdm) == (10, None)


def test_evaluation_bar_moves_per_generated_batch(tmp_path):
    """The runner reports samples already saved, then each batch the backend generates, not one chunk at a time."""
    from types import SimpleNamespace

    from dft.eval.backends import Completion, SamplingParams
    from dft.eval.benchmarks import Problem
    from dft.eval.runner import run_benchmark

    prompts = [SimpleNamespace(problem=Problem(str(i), "p", "1"), ids=(1,), budget=4) for i in range(5)]

    def generate(requests, params, stops, progress=None):
        for request in requests:  # a backend of batch size 1
            if progress is not None:
                progress(request.n)
        return [[Completion("\\boxed{1}", "stop", "eos")] * r.n for r in requests]

    def grade_many(pairs):
        return [SimpleNamespace(correct=True, extracted="1", rule="boxed", error=None) for _ in pairs]

    seen = []
    params = SamplingParams(n=2)
    run_benchmark(prompts[:2], tmp_path / "b.jsonl", generate, params, None, grade_many, chunk_size=32)
    run_benchmark(prompts, tmp_path / "b.jsonl", generate, params, None, grade_many, chunk_size=32,
                  on_samples=seen.append)  # fmt: skip
    assert seen == [4, 2, 2, 2]


def test_training_logs_go_to_the_runs_folder(tmp_path, monkeypatch):
    from dft.cli.preflight import HYDRA_COMMANDS, compose_config
    from dft.train.progress import scope_logs

    for name in ("TENSORBOARD_DIR", "VERL_FILE_LOGGER_PATH"):
        monkeypatch.delenv(name, raising=False)
    overrides = [f"trainer.default_local_dir={tmp_path}/run", "trainer.logger=[console,file]"]
    config = compose_config(HYDRA_COMMANDS["train"], overrides)
    run_dir = scope_logs(config)
    assert run_dir.parent == tmp_path / "run" / "logs" and run_dir.is_dir()
    assert os.environ["TENSORBOARD_DIR"] == str(run_dir / "tensorboard")
    assert os.environ["VERL_FILE_LOGGER_PATH"] == str(run_dir / "metrics.jsonl")


def test_hydra_run_folder_is_inside_the_run(tmp_path):
    from dft.cli.preflight import HYDRA_COMMANDS, compose_config

    config = compose_config(HYDRA_COMMANDS["train"], [f"trainer.default_local_dir={tmp_path}"], with_hydra=True)
    assert config.hydra.run.dir.startswith(f"{tmp_path}/logs/")
