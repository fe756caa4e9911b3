"""Build the paper's Figures 1-3 from result files; each command writes the figure and ``<out>.json`` beside it.

    python -m dft figures dynamics --run SFT=runs/eval/sft --run DFT=runs/eval/dft --model M --setting S --out f.pdf
    python -m dft figures token_probs --run Base=data/train.base.parquet --run DFT=... --model M --setting S --out f.png
    python -m dft figures sweep --param lr|batch_size|alpha --run SFT@2e-4=SUMMARY ... --model M --setting S --out f.svg

The extension of ``--out`` picks the format: ``.pdf`` and ``.svg`` (vector) or ``.png`` (300 dpi); any other is an
error before anything is read. Titles name the model and the setting (``--model``, ``--setting``: the training
setting, e.g. ``paper`` or ``corrected``); legends give each line's sample size, problems x samples per problem
(``n=500 x 16``; for the average, the problems of all its benchmarks), and Figure 2's panels their rows and tokens.

- ``dynamics`` (Figure 1, accuracy during training): a run is ``LABEL=DIR`` where ``DIR/step_<N>/summary.json``
  is ``python -m dft eval``'s summary of the checkpoint after N training steps (``step_0``: the base model).
- ``token_probs`` (Figure 2, training-set token probabilities under each model): a run is ``LABEL=PARQUET`` as
  ``python -m dft ref_logprobs`` writes it; p = exp(``ref_log_probs``) of every target token, one histogram
  panel per run, log-scale counts.
- ``sweep`` (learning-rate and batch-size sensitivity): a run is ``METHOD@VALUE=SUMMARY``.

Accuracy is a summary's metric in percent: by default ``avg@k`` (any k) of the benchmark, or of the ``average`` section
(the mean over benchmarks). The JSON holds every plotted number and its file: a figure is checked without pixels.
"""

import argparse
import json
import math
import re
from pathlib import Path

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.parquet as pq
from matplotlib.backends.backend_agg import FigureCanvasAgg
from matplotlib.figure import Figure
from matplotlib.ticker import NullLocator

from dft.core.args import DefaultsHelpFormatter
from dft.core.io import atomic_write, write_json_atomic

STEP_DIR = re.compile(r"^step_(\d+)$")
# dft.train.sft_datasets.ref_column(), named here because importing dft.train.sft_datasets pulls in verl and torch
REF_LOG_PROBS = "ref_log_probs"
SWEEP_PARAMS = {"lr": "Learning rate", "batch_size": "Batch size", "alpha": "prob_power alpha"}
# --out extension -> matplotlib format; PNG is rasterised at PNG_DPI
FORMATS = {".pdf": "pdf", ".svg": "svg", ".png": "png"}
PNG_DPI = 300


# ---------------------------------------------------------------------------------------------------------------
# Reading results
# ---------------------------------------------------------------------------------------------------------------


def parse_labeled(pair: str, form: str) -> tuple[str, Path]:
    """``LABEL=PATH`` -> (label, path); ``form`` names the expected shape in the error."""
    label, sep, path = pair.partition("=")
    if not sep or not label or not path:
        raise ValueError(f"--run {pair!r}: expected {form}")
    return label, Path(path)


def parse_sweep_run(pair: str, param: str) -> tuple[str, float, Path]:
    """``METHOD@VALUE=SUMMARY`` -> (method, value, path); the value must be a positive number (log axis)."""
    form = f"METHOD@VALUE=path/to/summary.json, e.g. DFT@{'5e-5' if param == 'lr' else '256'}=summary.json"
    key, path = parse_labeled(pair, form)
    method, sep, text = key.rpartition("@")
    if not sep or not method:
        raise ValueError(f"--run {pair!r}: expected {form}")
    try:
        value = float(text)
    except ValueError:
        raise ValueError(f"--run {pair!r}: {param} value {text!r} is not a number; expected {form}") from None
    if not math.isfinite(value) or value <= 0:
        raise ValueError(f"--run {pair!r}: {param} value must be positive (the axis is log scale)")
    return method, value, path


def read_summary(path: Path) -> dict:
    if not path.is_file():
        raise FileNotFoundError(f"no evaluation summary {path} (written by python -m dft eval)")
    return json.loads(path.read_text())


def metric_value(summary: dict, benchmark: str, metric: str | None, where: Path) -> tuple[str, float]:
    """(metric key, value in percent) of ``benchmark`` (or the ``average`` section); the avg@k key by default."""
    section = summary.get("average") if benchmark == "average" else summary.get("benchmarks", {}).get(benchmark)
    if not section:
        names = sorted(summary.get("benchmarks", {})) + ["average"]
        raise ValueError(f"{where}: no benchmark {benchmark!r} (has {names})")
    key = metric or next((k for k in section if k.startswith("avg@")), None)
    if key not in section:
        raise ValueError(f"{where}: {benchmark!r} has no metric {metric or 'avg@k'!r} (has {sorted(section)})")
    return key, 100 * float(section[key])


def sample_size(summary: dict, benchmark: str) -> list[int] | None:
    """[problems, samples per problem] behind ``benchmark``'s numbers (the ``average``: the problems of all its
    benchmarks); None for a summary that does not record them."""
    sections = summary.get("benchmarks", {})
    chosen = list(sections.values()) if benchmark == "average" else [sections.get(benchmark, {})]
    if not chosen or any("problems" not in s or "samples_per_problem" not in s for s in chosen):
        return None
    samples = {s["samples_per_problem"] for s in chosen}
    return [sum(s["problems"] for s in chosen), samples.pop()] if len(samples) == 1 else None


def size_label(sizes: list) -> str:
    """``n=500 x 16`` for a line whose points share one sample size, ``n=30-500 x 16`` style ranges otherwise."""
    known = [tuple(s) for s in sizes if s]
    if not known or len(known) < len(sizes):
        return ""
    problems, samples = sorted({p for p, _ in known}), sorted({k for _, k in known})
    return f"n={span(problems)} x {span(samples)}"


def span(values: list[int]) -> str:
    return f"{values[0]:,}" if len(values) == 1 else f"{values[0]:,}-{values[-1]:,}"


def labeled(label: str, sizes: list) -> str:
    size = size_label(sizes)
    return f"{label} ({size})" if size else label


def step_summaries(run_dir: Path) -> list[tuple[int, Path]]:
    """(step, summary path) of every ``run_dir/step_<N>/summary.json``, by step."""
    found = [(int(m.group(1)), p) for p in run_dir.glob("step_*/summary.json") if (m := STEP_DIR.match(p.parent.name))]
    if not found:
        raise FileNotFoundError(f"{run_dir}: no step_<N>/summary.json (a python -m dft eval output per checkpoint)")
    return sorted(found)


def dynamics_series(run_dir: Path, benchmark: str, metric: str | None) -> dict:
    """One run's accuracy curve: steps, values (%), the metric key(s) and the summaries read."""
    found = step_summaries(run_dir)
    summaries = [read_summary(path) for _, path in found]
    points = [metric_value(summary, benchmark, metric, path) for summary, (_, path) in zip(summaries, found)]
    return {"dir": str(run_dir), "metric": sorted({key for key, _ in points}), "steps": [step for step, _ in found],
            "values": [value for _, value in points], "sizes": [sample_size(s, benchmark) for s in summaries],
            "summaries": [str(path) for _, path in found]}  # fmt: skip


def token_probabilities(path: Path, max_rows: int | None) -> tuple[np.ndarray, int]:
    """p = exp(log-prob) of every target token in the first ``max_rows`` rows (all by default); (p, rows)."""
    if not path.is_file():
        raise FileNotFoundError(f"no scored parquet {path} (written by python -m dft ref_logprobs)")
    try:
        names = pq.read_schema(path).names
    except pa.ArrowInvalid as error:
        raise ValueError(f"{path}: not a parquet file ({error})") from None
    if REF_LOG_PROBS not in names:
        raise ValueError(f"{path}: no column {REF_LOG_PROBS!r} (columns: {names}); python -m dft ref_logprobs adds it")
    table = pq.read_table(path, columns=[REF_LOG_PROBS])
    if max_rows is not None:
        table = table.slice(0, max_rows)
    log_probs = pc.list_flatten(table.column(REF_LOG_PROBS)).to_numpy(zero_copy_only=False).astype(np.float64)
    return np.exp(log_probs), table.num_rows


def token_prob_stats(p: np.ndarray, edges: np.ndarray) -> dict:
    """What a Figure 2 panel shows: token count, mean p, mass at the extremes and the histogram counts."""
    counts, _ = np.histogram(p, bins=edges)
    return {
        "tokens": int(p.size),
        "mean_p": float(p.mean()) if p.size else None,
        "frac_below_0.1": float((p < 0.1).mean()) if p.size else None,
        "frac_above_0.9": float((p > 0.9).mean()) if p.size else None,
        "counts": counts.tolist(),
    }


def sweep_series(runs: list[tuple[str, float, Path]], benchmark: str, metric: str | None) -> dict:
    """Per method, the (value, accuracy %) points sorted by value; a repeated METHOD@VALUE is an error."""
    by_method: dict[str, dict[float, Path]] = {}
    for method, value, path in runs:
        paths = by_method.setdefault(method, {})
        if value in paths:
            raise ValueError(f"--run {method}@{value:g} given twice ({paths[value]} and {path})")
        paths[value] = path
    series = {}
    for method, paths in by_method.items():
        values = sorted(paths)
        summaries = [read_summary(paths[v]) for v in values]
        points = [metric_value(s, benchmark, metric, paths[v]) for s, v in zip(summaries, values)]
        series[method] = {"metric": sorted({key for key, _ in points}), "values": values,
                          "accuracy": [acc for _, acc in points],
                          "sizes": [sample_size(s, benchmark) for s in summaries],
                          "summaries": [str(paths[v]) for v in values]}  # fmt: skip
    return series


# ---------------------------------------------------------------------------------------------------------------
# Drawing
# ---------------------------------------------------------------------------------------------------------------


def new_figure(width: float, height: float) -> Figure:
    """A figure on the Agg canvas (no pyplot, no global backend state)."""
    fig = Figure(figsize=(width, height), dpi=100, layout="constrained")
    FigureCanvasAgg(fig)
    return fig


def figure_format(out: Path) -> str:
    """The file format ``out``'s extension asks for; any other extension is an error naming it and the file."""
    fmt = FORMATS.get(out.suffix.lower())
    if fmt is None:
        raise ValueError(f"--out {out}: unsupported extension {out.suffix!r}; use one of {', '.join(FORMATS)}")
    return fmt


def save(fig: Figure, out: Path, numbers: dict) -> Path:
    """Write the figure in the format of ``out``'s extension (PNG at 300 dpi) and ``<out>.json`` (the plotted
    numbers), each atomically; return the JSON's path."""
    fmt = figure_format(out)
    dpi = PNG_DPI if fmt == "png" else None
    atomic_write(out, lambda tmp: fig.savefig(tmp, format=fmt, dpi=dpi))
    numbers_path = out.with_name(out.name + ".json")
    write_json_atomic(numbers_path, numbers)
    return numbers_path


def metric_label(keys) -> str:
    return "/".join(sorted(set(keys))) or "accuracy"


def benchmark_title(benchmark: str) -> str:
    return "Average over benchmarks" if benchmark == "average" else benchmark


def run_title(model: str, setting: str) -> str:
    """What every figure's title starts with: the model and the training setting."""
    return f"{model}, setting={setting}"


def draw_dynamics(series: dict, benchmark: str, title: str) -> Figure:
    fig = new_figure(6, 4)
    ax = fig.add_subplot()
    for label, s in series.items():
        ax.plot(s["steps"], s["values"], marker="o", label=labeled(label, s["sizes"]))
    keys = [k for s in series.values() for k in s["metric"]]
    ax.set(xlabel="Training step", ylabel=f"{metric_label(keys)} (%)", title=f"{title}\n{benchmark_title(benchmark)}")
    ax.grid(alpha=0.3)
    ax.legend()
    return fig


def panel_grid(n: int) -> tuple[int, int]:
    """(rows, columns) for n panels: one row up to 3, then rows of 2 (n = 4) or 3 (six methods: 2 x 3)."""
    ncols = n if n <= 3 else 2 if n == 4 else 3
    return math.ceil(n / ncols), ncols


def draw_token_probs(stats: dict, edges: np.ndarray, title: str) -> Figure:
    """One panel per run, shared axes: counts of token probabilities in [0, 1], log-scale count axis."""
    nrows, ncols = panel_grid(len(stats))
    fig = new_figure(3.6 * ncols, 3.0 * nrows)
    axes = fig.subplots(nrows, ncols, sharex=True, sharey=True, squeeze=False).ravel()
    for ax, (label, s) in zip(axes, stats.items()):
        ax.bar(edges[:-1], s["counts"], width=np.diff(edges), align="edge", log=True, color="tab:blue")
        ax.set_title(f"{label} (n={s['rows']:,} rows, {s['tokens']:,} tokens)", fontsize=10)
        if s["tokens"]:
            extremes = f"mean p {s['mean_p']:.2f}\np<0.1: {s['frac_below_0.1']:.0%}\np>0.9: {s['frac_above_0.9']:.0%}"
            ax.text(0.5, 0.95, extremes, transform=ax.transAxes, ha="center", va="top", fontsize=8,
                    bbox={"facecolor": "white", "alpha": 0.8, "edgecolor": "none"})  # fmt: skip
        ax.set_xlim(0, 1)
        ax.xaxis.set_tick_params(labelbottom=True)  # also under a panel with no panel below it
        ax.grid(alpha=0.3, axis="y")
    for ax in axes[len(stats) :]:
        ax.set_visible(False)
    fig.suptitle(f"{title}: training-set token probabilities")
    fig.supxlabel("Token probability p")
    fig.supylabel("Token count (log scale)")
    return fig


def format_value(param: str, value: float) -> str:
    """Tick labels as the paper writes them: 2e-4, 5e-5 for learning rates; 32, 256 for batch sizes."""
    if param == "lr":
        mantissa, exponent = f"{value:e}".split("e")
        return f"{float(mantissa):g}e{int(exponent)}"
    return f"{value:g}"


def draw_sweep(series: dict, param: str, benchmark: str, title: str) -> Figure:
    fig = new_figure(6, 4)
    ax = fig.add_subplot()
    for method, s in series.items():
        ax.plot(s["values"], s["accuracy"], marker="o", label=labeled(method, s["sizes"]))
    ax.set_xscale("log", base=2 if param == "batch_size" else 10)
    ticks = sorted({v for s in series.values() for v in s["values"]})
    ax.set_xticks(ticks, [format_value(param, v) for v in ticks])
    ax.xaxis.set_minor_locator(NullLocator())
    keys = [k for s in series.values() for k in s["metric"]]
    ax.set(xlabel=f"{SWEEP_PARAMS[param]} (log scale)", ylabel=f"{metric_label(keys)} (%)",
           title=f"{title}\n{benchmark_title(benchmark)}: {SWEEP_PARAMS[param].lower()} sensitivity")  # fmt: skip
    ax.grid(alpha=0.3)
    ax.legend()
    return fig


# ---------------------------------------------------------------------------------------------------------------
# Commands
# ---------------------------------------------------------------------------------------------------------------


def dynamics(runs: list[str], benchmark: str, metric: str | None, out: Path, *, model: str, setting: str) -> dict:
    figure_format(out)
    series = {}
    for pair in runs:
        label, run_dir = parse_labeled(pair, "LABEL=DIR (DIR/step_<N>/summary.json per checkpoint)")
        series[label] = dynamics_series(run_dir, benchmark, metric)
    numbers = {"figure": "dynamics", "model": model, "setting": setting, "benchmark": benchmark, "unit": "percent",
               "runs": series}  # fmt: skip
    save(draw_dynamics(series, benchmark, run_title(model, setting)), out, numbers)
    return numbers


def token_probs(runs: list[str], bins: int, max_rows: int | None, out: Path, *, model: str, setting: str) -> dict:
    figure_format(out)
    edges = np.linspace(0.0, 1.0, bins + 1)
    stats = {}
    for pair in runs:
        label, path = parse_labeled(pair, "LABEL=PARQUET (written by python -m dft ref_logprobs)")
        p, rows = token_probabilities(path, max_rows)
        stats[label] = {"parquet": str(path), "rows": rows, **token_prob_stats(p, edges)}
    numbers = {"figure": "token_probs", "model": model, "setting": setting, "bin_edges": edges.tolist(), "runs": stats}
    save(draw_token_probs(stats, edges, run_title(model, setting)), out, numbers)
    return numbers


def sweep(param: str, runs: list[str], benchmark: str, metric: str | None, out: Path, *, model: str,
          setting: str) -> dict:  # fmt: skip
    figure_format(out)
    series = sweep_series([parse_sweep_run(pair, param) for pair in runs], benchmark, metric)
    numbers = {"figure": "sweep", "model": model, "setting": setting, "param": param, "benchmark": benchmark,
               "unit": "percent", "methods": series}  # fmt: skip
    save(draw_sweep(series, param, benchmark, run_title(model, setting)), out, numbers)
    return numbers


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="python -m dft figures",
        description="Render the paper's Figures 1-3.",
        formatter_class=DefaultsHelpFormatter,
    )
    commands = parser.add_subparsers(dest="figure", required=True)
    dyn = commands.add_parser(
        "dynamics",
        help="Figure 1: accuracy against training step, one line per run",
        formatter_class=DefaultsHelpFormatter,
    )
    dyn.add_argument("--run", action="append", required=True, help="LABEL=DIR with DIR/step_<N>/summary.json")
    probs = commands.add_parser(
        "token_probs",
        help="Figure 2: token-probability histograms, one panel per run",
        formatter_class=DefaultsHelpFormatter,
    )
    probs.add_argument("--run", action="append", required=True, help="LABEL=PARQUET with ref_log_probs")
    probs.add_argument("--bins", type=int, default=50, help="histogram bins over [0, 1]")
    probs.add_argument("--max-rows", type=int, help="read only the first N rows of each parquet")
    swp = commands.add_parser(
        "sweep",
        help="learning-rate or batch-size sensitivity, one line per method",
        formatter_class=DefaultsHelpFormatter,
    )
    swp.add_argument("--param", choices=sorted(SWEEP_PARAMS), required=True, help="the swept hyperparameter")
    swp.add_argument("--run", action="append", required=True, help="METHOD@VALUE=path/to/summary.json")
    for sub in (dyn, swp):
        sub.add_argument("--benchmark", default="average", help="a benchmark name, or average (default)")
        sub.add_argument("--metric", help="summary metric key (default: the avg@k key)")
    for sub in (dyn, probs, swp):
        sub.add_argument("--model", required=True, help="the model, as the title names it (e.g. Qwen2.5-Math-1.5B)")
        sub.add_argument("--setting", required=True, help="the training setting, as the title names it (e.g. paper)")
        sub.add_argument("--out", type=Path, required=True, help=f"figure ({', '.join(FORMATS)}); numbers: <out>.json")
    return parser


def main(argv=None) -> None:
    parser = build_parser()
    args = parser.parse_args(argv)
    if args.figure == "token_probs" and (args.bins < 1 or (args.max_rows is not None and args.max_rows < 1)):
        parser.error("--bins and --max-rows must be at least 1")
    title = {"model": args.model, "setting": args.setting}
    try:
        if args.figure == "dynamics":
            dynamics(args.run, args.benchmark, args.metric, args.out, **title)
        elif args.figure == "token_probs":
            token_probs(args.run, args.bins, args.max_rows, args.out, **title)
        else:
            sweep(args.param, args.run, args.benchmark, args.metric, args.out, **title)
    except (ValueError, FileNotFoundError) as error:
        parser.exit(2, f"python -m dft figures {args.figure}: error: {error}\n")
    print(f"wrote {args.out} and {args.out.name}.json")


if __name__ == "__main__":
    main()
