"""python -m dft figures on the tiny model: Figure 1 from evaluations of real checkpoints, Figure 2 from token
log-probs scored by verl's engine, the sweep figure from summaries; each PNG is a real 300-dpi image and its JSON
holds the plotted numbers, checked against the result files they came from. PDF and SVG by extension, titles with
model and setting, sample sizes in legends."""

import json
import subprocess
import sys
import xml.etree.ElementTree as ET

import matplotlib.image
import numpy as np
import pandas as pd
import pytest
from conftest import FP32, REPO, check_ok, run_module, tiny_overrides
from PIL import Image

from dft.eval.runner import write_summary
from dft.report import figures
from dft.train.columns import ref_column

STEPS, SAVE_EVERY = 20, 10
PNG_SIGNATURE = b"\x89PNG\r\n\x1a\n"
TITLE = {"model": "Qwen2.5-Math-1.5B", "setting": "paper"}
TITLE_ARGS = ["--model", "Qwen2.5-Math-1.5B", "--setting", "paper"]


@pytest.fixture(scope="module")
def checkpoints(tiny, tmp_path_factory):
    """{training step: HF model dir} of a 20-step SFT run saved every 10 steps; step 0 is the base model."""
    run_dir = tmp_path_factory.mktemp("figures_sft")
    args = tiny_overrides(tiny, run_dir, steps=STEPS) + [
        "loss.name=sft", "optim.lr=3e-3", "trainer.total_epochs=3", f"trainer.save_freq={SAVE_EVERY}",
        "checkpoint.save_contents=[model,optimizer,extra,hf_model]",
    ]  # fmt: skip
    check_ok(run_module("train", args, run_dir / "log.jsonl", nproc=2))
    saved = {step: run_dir / "ckpt" / f"global_step_{step}" / "huggingface" for step in (SAVE_EVERY, STEPS)}
    assert all((path / "config.json").exists() for path in saved.values())
    return {0: tiny.model_dir, **saved}


def check_png(path, width_in, height_in):
    """A real 300-dpi PNG of the expected size in inches, and its numbers beside it, with no temp files left."""
    data = path.read_bytes()
    assert data[:8] == PNG_SIGNATURE and len(data) > 5_000
    assert matplotlib.image.imread(path).shape[:2] == (round(300 * height_in), round(300 * width_in))
    with Image.open(path) as image:
        assert image.info["dpi"] == pytest.approx((300, 300), abs=0.01)
    assert path.with_name(path.name + ".json").is_file()
    assert not list(path.parent.glob(".*.tmp"))


def read_numbers(png):
    return json.loads(png.with_name(png.name + ".json").read_text())


def tiny_benchmark_dir(tiny, root):
    """The tiny held-out problems laid out as a local benchmark (``<dir>/aime24/test.jsonl``): the loader checks
    the count, 30, so the 16 test problems are topped up with validation problems (only the first few are run)."""
    records = (tiny.test_records + tiny.val_records)[:30]
    path = root / "aime24" / "test.jsonl"
    path.parent.mkdir(parents=True)
    rows = [{"id": r["id"], "problem": r["problem"], "answer": r["gold"]} for r in records]  # the benchmark's fields
    path.write_text("".join(json.dumps(row) + "\n" for row in rows))
    return root


def evaluate(model, data_dir, out):
    args = [f"model={model}", "source=local", f"data_dir={data_dir}", "prompt=chat-cot", "benchmarks=[aime24]",
            "limit=4", "sampling.n=2", "sampling.max_new_tokens=24", "grading.workers=1", f"out={out}"]  # fmt: skip
    result = run_module("eval", args, timeout=300)
    assert result.returncode == 0, result.stdout[-3000:] + result.stderr[-5000:]
    return json.loads((out / "summary.json").read_text())


def test_dynamics_plots_each_checkpoints_evaluation_by_step(checkpoints, tiny, tmp_path):
    data_dir = tiny_benchmark_dir(tiny, tmp_path / "data")
    out = tmp_path / "sft"
    summaries = {step: evaluate(model, data_dir, out / f"step_{step}") for step, model in checkpoints.items()}
    png = tmp_path / "fig1.png"
    figures.main(["dynamics", "--run", f"SFT={out}", "--benchmark", "aime24", *TITLE_ARGS, "--out", str(png)])
    check_png(png, 6, 4)
    run = read_numbers(png)["runs"]["SFT"]
    assert run["steps"] == [0, SAVE_EVERY, STEPS] and run["metric"] == ["avg@2"] and run["sizes"] == [[4, 2]] * 3
    assert run["values"] == [100 * summaries[step]["benchmarks"]["aime24"]["avg@2"] for step in run["steps"]]
    average = figures.dynamics([f"SFT={out}"], "average", "pass@2", tmp_path / "avg.png", **TITLE)["runs"]["SFT"]
    assert average["values"] == [100 * summaries[step]["average"]["pass@2"] for step in average["steps"]]


@pytest.fixture(scope="module")
def scored(checkpoints, tiny, tmp_path_factory):
    """The tiny training set scored by the base model and by the 20-step SFT model (dft.train.ref_scoring)."""
    root = tmp_path_factory.mktemp("figures_scored")
    paths = {}
    for label, model in (("Base", checkpoints[0]), ("SFT", checkpoints[STEPS])):
        paths[label] = root / f"train.{label.lower()}.parquet"
        args = ["preset=tiny-cpu", f"model.path={model}", f"data.train_files={tiny.train_parquet}",
                f"ref.output={paths[label]}", "ref.rows_per_step=64", *FP32]  # fmt: skip
        check_ok(run_module("ref_logprobs", args, root / f"{label}.log", nproc=2))
    return paths


def probabilities(path, rows=None):
    column = pd.read_parquet(path)[ref_column()].iloc[:rows]
    return np.exp(np.concatenate(column.to_numpy()).astype(np.float64))


def test_token_probs_counts_match_the_scored_parquet_and_training_moves_p_up(scored, tmp_path):
    png = tmp_path / "fig2.png"
    figures.main(["token_probs", *(f"--run={label}={path}" for label, path in scored.items()), "--bins", "20",
                  *TITLE_ARGS, "--out", str(png)])  # fmt: skip
    check_png(png, 7.2, 3)
    numbers = read_numbers(png)
    assert numbers["bin_edges"] == np.linspace(0, 1, 21).tolist()
    for label, path in scored.items():
        p, run = probabilities(path), numbers["runs"][label]
        assert run["tokens"] == p.size > 1000 and run["rows"] == 256
        assert run["counts"] == np.histogram(p, bins=20, range=(0, 1))[0].tolist()
        assert run["frac_below_0.1"] == pytest.approx((p < 0.1).mean()) and run["mean_p"] == pytest.approx(p.mean())
        assert run["frac_above_0.9"] == pytest.approx((p > 0.9).mean())
    runs = numbers["runs"]
    # the base model is near uniform (p ~ 1/vocab); 20 SFT steps raise the training tokens' p several-fold
    assert runs["SFT"]["mean_p"] > 5 * runs["Base"]["mean_p"]
    assert np.mean(probabilities(scored["SFT"]) > probabilities(scored["Base"])) > 0.8  # token by token

    first = figures.token_probs([f"Base={scored['Base']}"], 50, 10, tmp_path / "first.pdf", **TITLE)["runs"]["Base"]
    assert first["rows"] == 10 and first["tokens"] == probabilities(scored["Base"], 10).size


def test_token_probs_names_the_file_and_its_columns_when_ref_log_probs_is_missing(tiny, tmp_path):
    with pytest.raises(ValueError, match=rf"{tiny.train_parquet}: no column 'ref_log_probs' \(columns: \['messages'"):
        figures.token_probs([f"Base={tiny.train_parquet}"], 50, None, tmp_path / "x.png", **TITLE)


def summary(tmp_path, name, avg, k=16):
    """A summary.json as dft eval writes it, with avg@k on math500 and aime24 (aime24 lower by 10 points)."""
    sizes = {"samples_per_problem": k}
    per_benchmark = {"math500": {"problems": 500, **sizes, f"avg@{k}": avg, f"pass@{k}": avg},
                     "aime24": {"problems": 30, **sizes, f"avg@{k}": avg - 0.1, "pass@1": 0}}  # fmt: skip
    write_summary(tmp_path / name, {"model": name}, per_benchmark)
    return tmp_path / name / "summary.json"


def test_sweep_sorts_each_methods_points_by_value_on_a_log_axis(tmp_path):
    accuracy = {("SFT", 2e-4): 0.30, ("SFT", 1e-5): 0.20, ("SFT", 5e-5): 0.25, ("DFT", 1e-4): 0.50, ("DFT", 1e-5): 0.40}
    runs = [f"{m}@{v:g}={summary(tmp_path, f'{m}-{v:g}', a)}" for (m, v), a in accuracy.items()]
    png = tmp_path / "fig3.png"
    figures.main(["sweep", "--param", "lr", *(f"--run={run}" for run in runs), *TITLE_ARGS, "--out", str(png)])
    check_png(png, 6, 4)
    methods = read_numbers(png)["methods"]
    assert methods["SFT"]["values"] == [1e-5, 5e-5, 2e-4] and methods["DFT"]["values"] == [1e-5, 1e-4]
    assert methods["SFT"]["accuracy"] == pytest.approx([15.0, 20.0, 25.0])  # the average of math500 and aime24
    assert methods["DFT"]["accuracy"] == pytest.approx([35.0, 45.0]) and methods["DFT"]["metric"] == ["avg@16"]
    on_math = figures.sweep("batch_size", [f"SFT@64={runs[0].split('=')[1]}", f"SFT@32={runs[1].split('=')[1]}"],
                            "math500", None, tmp_path / "bs.png", **TITLE)["methods"]["SFT"]  # fmt: skip
    assert on_math["values"] == [32, 64] and on_math["accuracy"] == pytest.approx([20.0, 30.0])
    assert figures.format_value("lr", 5e-5) == "5e-5" and figures.format_value("batch_size", 256.0) == "256"


@pytest.mark.parametrize(
    "run, message",
    [
        ("SFT=summary.json", r"expected METHOD@VALUE=path/to/summary.json"),
        ("SFT@1e-4", r"expected METHOD@VALUE=path/to/summary.json"),
        ("@1e-4=summary.json", r"expected METHOD@VALUE=path/to/summary.json"),
        ("SFT@fast=summary.json", r"lr value 'fast' is not a number"),
        ("SFT@0=summary.json", r"lr value must be positive"),
    ],
)
def test_sweep_refuses_a_malformed_run(run, message, tmp_path):
    with pytest.raises(ValueError, match=message):
        figures.sweep("lr", [run], "average", None, tmp_path / "x.png", **TITLE)


def test_missing_results_are_errors_that_name_the_file(tmp_path):
    path = summary(tmp_path, "sft", 0.3)
    with pytest.raises(ValueError, match=r"given twice"):
        figures.sweep("lr", [f"SFT@1e-4={path}", f"SFT@0.0001={path}"], "average", None, tmp_path / "x.png", **TITLE)
    with pytest.raises(ValueError, match=rf"{path}: no benchmark 'amc23' \(has \['aime24', 'math500', 'average'\]\)"):
        figures.sweep("lr", [f"SFT@1e-4={path}"], "amc23", None, tmp_path / "x.png", **TITLE)
    with pytest.raises(ValueError, match=rf"{path}: 'aime24' has no metric 'maj@16'"):
        figures.sweep("lr", [f"SFT@1e-4={path}"], "aime24", "maj@16", tmp_path / "x.png", **TITLE)
    (tmp_path / "empty" / "step_x").mkdir(parents=True)
    with pytest.raises(FileNotFoundError, match=rf"{tmp_path / 'empty'}: no step_<N>/summary.json"):
        figures.dynamics([f"SFT={tmp_path / 'empty'}"], "average", None, tmp_path / "x.png", **TITLE)
    assert not list(tmp_path.glob("x.png*"))


def test_the_command_line_reports_errors_without_a_traceback(tmp_path):
    cmd = [sys.executable, "-m", "dft", "figures", "dynamics", "--run", "SFT", *TITLE_ARGS]
    cmd += ["--out", f"{tmp_path}/x.png"]
    result = subprocess.run(cmd, cwd=REPO, capture_output=True, text=True, timeout=120)
    assert result.returncode == 2 and "Traceback" not in result.stderr
    assert "dft figures dynamics: error: --run 'SFT': expected LABEL=DIR" in result.stderr
    assert figures.REF_LOG_PROBS == ref_column()


def sweep_runs(tmp_path):
    return [f"{m}@{v}={summary(tmp_path, f'{m}-{v}', a)}" for m, v, a in (("SFT", "1e-5", 0.2), ("DFT", "1e-5", 0.4))]


def test_the_extension_picks_the_format_and_png_is_300_dpi(tmp_path):
    runs = sweep_runs(tmp_path)
    for ext in ("pdf", "svg", "png"):
        figures.sweep("lr", runs, "average", None, tmp_path / f"fig.{ext}", **TITLE)
    assert (tmp_path / "fig.pdf").read_bytes()[:5] == b"%PDF-"
    assert ET.parse(tmp_path / "fig.svg").getroot().tag == "{http://www.w3.org/2000/svg}svg"
    check_png(tmp_path / "fig.png", 6, 4)
    assert read_numbers(tmp_path / "fig.svg")["methods"]["DFT"]["accuracy"] == pytest.approx([35.0])


def test_an_unsupported_extension_is_an_error_naming_it_before_anything_is_read(tmp_path, capsys):
    with pytest.raises(ValueError, match=r"fig\.xyz: unsupported extension '\.xyz'; use one of \.pdf, \.svg, \.png"):
        figures.sweep("lr", ["SFT@1e-5=missing.json"], "average", None, tmp_path / "fig.xyz", **TITLE)
    argv = ["sweep", "--param", "lr", "--run", f"SFT@1e-5={tmp_path}/s.json", *TITLE_ARGS, "--out", f"{tmp_path}/f.jpg"]
    with pytest.raises(SystemExit) as exit_:
        figures.main(argv)
    assert exit_.value.code == 2 and "sweep: error: --out " in (err := capsys.readouterr().err)
    assert "f.jpg: unsupported extension '.jpg'" in err
    assert not list(tmp_path.glob("fig.*"))


def test_titles_name_model_and_setting_and_legends_the_sample_size(tmp_path):
    runs = [figures.parse_sweep_run(run, "lr") for run in sweep_runs(tmp_path)]
    series = figures.sweep_series(runs, "average", None)
    ax = figures.draw_sweep(series, "lr", "average", figures.run_title(**TITLE)).axes[0]
    assert ax.get_title().startswith("Qwen2.5-Math-1.5B, setting=paper\n")
    # the average of math500 (500 problems) and aime24 (30), 16 samples each
    assert [t.get_text() for t in ax.get_legend().get_texts()] == ["SFT (n=530 x 16)", "DFT (n=530 x 16)"]
    aime = figures.sweep_series(runs, "aime24", None)
    ax = figures.draw_sweep(aime, "lr", "aime24", "T").axes[0]
    assert ax.get_legend().get_texts()[0].get_text() == "SFT (n=30 x 16)"
    assert figures.size_label([[500, 16], [30, 16]]) == "n=30-500 x 16" and figures.size_label([[500, 16], None]) == ""
