"""Bad input at every entry point, as a table: each is refused before any model, tokenizer or Ray process starts,
with an ``error:`` line naming the key, file or row, the documented exit status, no traceback, within seconds, and
nothing written or changed. Most rows run in one interpreter (``dft.cli.commands.main``, Hydra commands with
``DFT_PREFLIGHT_ONLY=1``: a row that preflight let through would exit 0 and fail); a few run as real processes
(the recipes, scripts/train.sh), and one real training run checks the run folder's record end to end."""

import json
import os
import subprocess
import sys
import time

import pandas as pd
import pyarrow as pa
import pyarrow.parquet as pq
import pytest
from conftest import REPO, run_module

from dft.data.training_format import with_format

SECONDS = 10  # a refusal comes well before a model could load

RUNNER = r"""
import contextlib, io, json, os, sys, time
from pathlib import Path
from dft.cli.commands import main

def snapshot(root):
    return sorted((str(p), p.stat().st_size, p.stat().st_mtime_ns) for p in Path(root).rglob("*"))

out = []
for case in json.load(sys.stdin):
    saved = dict(os.environ)
    os.environ.update(case["env"])
    before = snapshot(case["root"])
    err, std = io.StringIO(), io.StringIO()
    start = time.perf_counter()
    with contextlib.redirect_stderr(err), contextlib.redirect_stdout(std):
        try:
            main(case["argv"])
            code = 0
        except SystemExit as e:
            code = e.code if isinstance(e.code, int) else (0 if e.code is None else 1)
            if isinstance(e.code, str):
                print(e.code, file=sys.stderr)
        except BaseException as e:
            import traceback
            traceback.print_exc(file=err)
            code = -1
    os.environ.clear()
    os.environ.update(saved)
    out.append({"code": code, "seconds": time.perf_counter() - start, "stderr": err.getvalue(),
                "stdout": std.getvalue(), "changed": snapshot(case["root"]) != before})
print("RESULTS" + json.dumps(out))
"""


def _parquet(path, rows, fmt=None):
    table = pa.Table.from_pandas(pd.DataFrame(rows), preserve_index=False)
    pq.write_table(with_format(table, fmt) if fmt else table, path)


@pytest.fixture(scope="module")
def ws(tiny, tmp_path_factory):
    """A workspace of bad inputs beside the tiny model and data."""
    root = tmp_path_factory.mktemp("bad")
    train = pd.read_parquet(tiny.train_parquet)
    _parquet(root / "empty.parquet", train.iloc[:0])
    (root / "text.parquet").write_text("not a parquet file\n")
    (root / "noweights").mkdir()
    for name in ("config.json", "tokenizer.json", "tokenizer_config.json"):
        (root / "noweights" / name).write_bytes((tiny.model_dir / name).read_bytes())
    silent = train.copy()
    silent["messages"] = [[{**m, "content": "" if m["role"] == "assistant" else m["content"]} for m in row]
                          for row in silent["messages"]]  # fmt: skip
    _parquet(root / "silent.parquet", silent)
    _parquet(root / "official.parquet", train, fmt="official")
    _parquet(root / "other.parquet", train.iloc[1:])
    (root / "empty.jsonl").write_text("")
    rows = [{"problem": f"What is {i} + 1?", "solution": f"It is \\boxed{{{i + 1}}}."} for i in range(8)]
    (root / "dup.jsonl").write_text("".join(json.dumps(r) + "\n" for r in rows + rows))
    for name, value in (("nan", float("nan")), ("percent", 50.0)):  # summaries that follow the protocol but this
        (root / f"{name}.json").write_text(json.dumps(summary_with(value)))
    (root / "orphan" / "global_step_1").mkdir(parents=True)
    (root / "scored.parquet").write_bytes(tiny.train_parquet.read_bytes())
    return root


def summary_with(math500: float) -> dict:
    """A summary of the paper's protocol (five benchmarks, 16 samples) whose math500 avg@16 is ``math500``."""
    from dft.eval.benchmarks import BENCHMARKS, PAPER_BENCHMARKS

    sampling = {"n": 16, "temperature": 1.0, "top_p": 1.0, "max_new_tokens": 4096, "seed": 0}
    benchmarks = {b: {"problems": BENCHMARKS[b].count, "samples_per_problem": 16, "avg@16": 0.5}
                  for b in PAPER_BENCHMARKS}  # fmt: skip
    benchmarks["math500"]["avg@16"] = math500
    return {"prompt_template": "qwen-boxed", "sampling": sampling, "benchmarks": benchmarks}


def train_args(tiny, ws, *args, run="run"):
    """The tiny model's training overrides; ``args`` replace those of the same key (Hydra refuses two presets)."""
    base = ["preset=tiny-cpu", f"model.path={tiny.model_dir}", f"data.train_files={tiny.train_parquet}",
            f"trainer.default_local_dir={ws / run}", "trainer.total_training_steps=1", *args]  # fmt: skip
    return list({arg.split("=")[0]: arg for arg in base}.values())


def claimed(tiny, ws, run, *args, scoring=False):
    """A run folder (or a scoring's parts folder) claimed by a run of ``args``, as the trainer claims it."""
    from conftest import compose_config

    from dft.train.run_record import claim_run

    claim_run(compose_config(train_args(tiny, ws, *args, run=run)), scoring=scoring)


def cases(tiny, ws):
    """(name, argv, extra env, what the error must name, exit status)."""
    m, d = tiny.model_dir, tiny.train_parquet
    score = ["ref_logprobs", "preset=tiny-cpu", f"model.path={m}", f"data.train_files={d}"]
    ev = ["eval", f"model={m}", "prompt=chat-cot", "benchmarks=[gsm8k]", f"out={ws / 'ev'}"]
    prep = ["data", "numina", "--source", "local", "--out", str(ws / "prep"), "--input"]
    table1 = ["tables", "table1", "--run"]
    off = {"HF_HUB_OFFLINE": "1"}
    t = lambda *a, run="run": ["train", *train_args(tiny, ws, *a, run=run)]  # noqa: E731
    return [
        ("lr nan", t("optim.lr=nan"), {}, "optim.lr=nan", 2),
        ("lr zero", t("optim.lr=0"), {}, "optim.lr=0", 2),
        ("loss alpha", t("loss.alpha=2"), {}, "loss.alpha=2", 2),
        ("normalization", t("loss.normalization=global"), {}, "loss.normalization='global'", 2),
        ("loss key typo", t("loss.nmae=dft"), {}, "did you mean loss.name?", 2),
        ("trainer key typo", t("trainer.total_trainig_steps=2"), {}, "trainer.total_training_steps?", 2),
        ("loss name typo", t("loss.name=dtf"), {}, "did you mean dft?", 2),
        ("preset typo", t("preset=qwen-typo"), {}, "preset=qwen-typo: no such preset", 2),
        ("setting typo", t("setting=papr"), {}, "did you mean paper?", 2),
        ("empty parquet", t(f"data.train_files={ws / 'empty.parquet'}"), {}, "empty.parquet has no rows", 2),
        ("text parquet", t(f"data.train_files={ws / 'text.parquet'}"), {}, "text.parquet is not a parquet", 2),
        ("missing data", t(f"data.train_files={ws / 'nope.parquet'}"), {}, "no such file", 2),
        ("empty val", t(f"data.val_files={ws / 'empty.parquet'}"), {}, "data.val_files", 2),
        ("no weights", t(f"model.path={ws / 'noweights'}"), {}, "but no weights", 2),
        ("no model", t(f"model.path={ws / 'nomodel'}"), {}, "no such folder", 2),
        ("max_length", t("data.max_length=8"), {}, "data.max_length=8", 2),
        ("silent responses", t(f"data.train_files={ws / 'silent.parquet'}"), {}, "are all empty", 2),
        ("no recorded format", t("data.format=official"), {}, "records no format", 2),
        ("other format", t(f"data.train_files={ws / 'official.parquet'}"), {}, "'official' format", 2),
        ("batch 0", t("data.train_batch_size=0"), {}, "data.train_batch_size=0", 2),
        ("steps 0", t("trainer.total_training_steps=0"), {}, "trainer.total_training_steps=0", 2),
        ("logger", t("trainer.logger=[console,nope]"), {}, "trainer.logger", 2),
        ("other data", t(f"data.train_files={ws / 'other.parquet'}", run="a"), {}, "data.train_files_sha256", 2),
        ("other loss", t("loss.name=sft", run="b"), {}, "loss.name", 2),
        ("orphan run", t(run="orphan"), {}, "no fingerprint.json", 2),
        ("ray lr nan", ["train_ray", *train_args(tiny, ws, "optim.lr=nan")], {}, "optim.lr=nan", 2),
        ("output is input", [*score, f"ref.output={d}"], {}, "one of data.train_files", 2),
        ("topk -1", [*score, f"ref.output={ws / 'r1.parquet'}", "ref.topk=-1"], {}, "ref.topk=-1", 2),
        ("unrecorded output", [*score, f"ref.output={ws / 'scored.parquet'}"], {}, "records no scoring", 2),
        ("other parts", [*score, f"ref.output={ws / 'parts.parquet'}", "ref.topk=4"], {}, "ref.topk", 2),
        ("no output", score, {}, "ref.output", 2),
        ("hub offline", [*ev, "source=hub"], off, "source=hub", 2),
        ("benchmarks string", ["eval", f"model={m}", "benchmarks=gsm8k"], {}, "benchmarks=[gsm8k]", 2),
        ("samples 0", [*ev, "sampling.n=0"], {}, "sampling.n=0", 2),
        ("limit 0", [*ev, "limit=0"], {}, "limit=0", 2),
        ("prompt typo", [*ev, "prompt=chat-cott"], {}, "'chat-cott'", 2),
        ("sampling key typo", [*ev, "sampling.nn=2"], {}, "did you mean sampling.n?", 2),
        ("eval no weights", [*ev, f"model={ws / 'noweights'}"], {}, "but no weights", 2),
        ("hub model offline", [*ev, "model=NoSuchOrg/no-such-model"], off, "hf download", 2),
        ("rft input", ["data", "rft", f"model={m}", f"input={ws / 'nope.jsonl'}"], {}, "input: no such file", 2),
        ("prep empty", [*prep, str(ws / "empty.jsonl")], {}, "empty.jsonl has no rows", 2),
        ("prep n 0", [*prep, str(ws / "dup.jsonl"), "--n", "0"], {}, "--n", 2),
        ("tables nan", [*table1, f"Qwen2.5-Math-1.5B/DFT={ws / 'nan.json'}"], {}, "avg@16 is nan", 2),
        ("tables percent", [*table1, f"Qwen2.5-Math-1.5B/DFT={ws / 'percent.json'}"], {}, "a percent where", 2),
        ("quickstart n-train", ["quickstart", "--n-train", "0", "--out", str(ws / "qs")], {}, "--n-train", 2),
        ("quickstart lr", ["quickstart", "--lr", "nan", "--out", str(ws / "qs")], {}, "--lr", 2),
    ]


def test_every_bad_input_is_refused_before_work_starts(tiny, ws):
    claimed(tiny, ws, "a")  # run folders and a scoring that other runs made
    claimed(tiny, ws, "b", "loss.name=dft")
    claimed(tiny, ws, "run", f"ref.output={ws / 'parts.parquet'}", scoring=True)
    table = cases(tiny, ws)
    assert len(table) >= 40
    batch = [{"argv": argv, "env": {"DFT_PREFLIGHT_ONLY": "1", **env}, "root": str(ws)}
             for _, argv, env, _, _ in table]  # fmt: skip
    env = dict(os.environ, PYTHONPATH=str(REPO))
    done = subprocess.run([sys.executable, "-c", RUNNER], input=json.dumps(batch), cwd=ws, env=env,
                          capture_output=True, text=True, timeout=300)  # fmt: skip
    results = json.loads(done.stdout.split("RESULTS", 1)[1])
    failures = []
    for (name, _, _, wanted, status), result in zip(table, results):
        text = result["stderr"] + result["stdout"]
        errors = [line for line in text.splitlines() if line.startswith(("error:", "python -m dft"))]
        quiet = "Traceback" not in text and "Loading weights" not in text
        named = any(wanted in line for line in errors)
        ok = result["code"] == status and quiet and named and result["seconds"] < SECONDS and not result["changed"]
        if not ok:
            failures.append(f"{name}: exit {result['code']} in {result['seconds']:.1f} s, changed {result['changed']}"
                            f"\n{text[-1500:]}")  # fmt: skip
    assert not failures, "\n\n".join(failures)
    assert not (ws / "r1.parquet.parts").exists() and not (ws / "prep").exists()


def run_shell(command, env):
    start = time.perf_counter()
    result = subprocess.run(["bash", "-c", command], cwd=REPO, capture_output=True, text=True, timeout=120,
                            env=dict(os.environ, PYTHONPATH=str(REPO), DRY_RUN="0", **env))  # fmt: skip
    return result, time.perf_counter() - start


@pytest.mark.parametrize(
    "env, named",
    [
        ({"MODELS": "qwen2.5-math-1.5b qwen-typo"}, "MODELS: unknown preset (python -m dft presets) 'qwen-typo'"),
        ({"SETTING": "papr"}, "SETTING: unknown setting (configs/setting/) 'papr'; did you mean paper?"),
        ({"LOSSES": "sft dtf", "N_TRAIN": "0"}, "LOSSES: unknown loss (loss.name) 'dtf'; did you mean dft?"),
    ],
)
def test_recipes_refuse_every_bad_knob_before_their_first_step(env, named, tmp_path):
    result, seconds = run_shell("bash recipes/table1/run.sh", {**env, "DATA": str(tmp_path), "RUNS": str(tmp_path)})
    assert result.returncode == 2 and named in result.stderr and seconds < SECONDS, result.stderr[-2000:]
    assert result.stdout == "" and list(tmp_path.iterdir()) == []  # nothing prepared, trained or evaluated
    if "N_TRAIN" in env:
        assert "N_TRAIN='0' is not a positive whole number" in result.stderr


def test_train_sh_refuses_once_without_torchrun_noise(tiny, ws):
    result, seconds = run_shell(f"bash scripts/train.sh {' '.join(train_args(tiny, ws, 'optim.lr=nan'))}", {})
    assert result.returncode == 2 and seconds < SECONDS
    assert result.stderr.splitlines() == ["error: optim.lr=nan is not a finite number"], result.stderr[-2000:]


def test_a_data_prep_keeps_duplicates_out_of_validation(ws, tmp_path):
    from dft.data.numina import main

    report = main(["--source", "local", "--input", str(ws / "dup.jsonl"), "--val-size", "4", "--out", str(tmp_path)])
    problems = {split: {m[0]["content"] for m in pd.read_parquet(tmp_path / f"{split}.parquet")["messages"]}
                for split in ("train", "val")}  # fmt: skip
    assert not problems["train"] & problems["val"] and report["val_rows"] == 4 == len(problems["val"])
    assert report["skipped"] and report["duplicate_rows"] > 0


def test_a_run_folder_is_never_resumed_with_other_data(tiny, ws, tmp_path):
    """One real training step records the run; the same folder with other data is refused, naming the digest;
    more steps of the same run are not a difference."""
    from conftest import compose_config

    from dft.train.run_record import run_errors

    args = train_args(tiny, tmp_path, "data.train_batch_size=16", run="real")
    result = run_module("train", args, nproc=1)
    assert result.returncode == 0, result.stderr[-3000:]
    recorded = json.loads((tmp_path / "real" / "fingerprint.json").read_text())
    assert recorded["data.train_files_sha256"] and recorded["loss"]["name"] == "dft"
    assert run_errors(compose_config([*args, "trainer.total_training_steps=2"])) == []
    before = sorted(p.name for p in (tmp_path / "real").iterdir())
    again = run_module("train", [*args, f"data.train_files={ws / 'other.parquet'}", "trainer.total_training_steps=2"])
    assert again.returncode == 2 and "Traceback" not in again.stdout + again.stderr
    assert "data.train_files_sha256" in again.stderr and "trainer.default_local_dir=" in again.stderr
    assert sorted(p.name for p in (tmp_path / "real").iterdir()) == before


def test_tables_render_the_same_summary_with_a_fraction(tmp_path, capsys):
    from dft.report.tables import main

    (tmp_path / "good.json").write_text(json.dumps(summary_with(0.4)))
    main(["table1", "--run", f"Qwen2.5-Math-1.5B/DFT={tmp_path / 'good.json'}"])  # the refusals above are the values'
    assert "| Qwen2.5-Math-1.5B | DFT |" in capsys.readouterr().out
