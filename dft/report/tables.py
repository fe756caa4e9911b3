"""Build the paper's Tables 1-3 from evaluation summaries, with the published numbers beside ours.

    python -m dft tables table1 --run Qwen2.5-Math-1.5B/Base=runs/eval/base/summary.json \\
        --run Qwen2.5-Math-1.5B/DFT=runs/eval/dft/summary.json [--runs runs.json] [--out table1.md]

A run is ``MODEL/METHOD=SUMMARY`` (model and method as the paper's table names them; ``--runs`` takes a JSON
object of the same pairs). Each cell reads ``ours / paper (ours - paper)`` in percent; the best of ours in
each model's group and column is bold (the paper's, where we have no run for the group). The published
numbers live in ``dft/report/paper_tables.json``, typed once from the paper, with the protocol they were measured
under. A summary is checked against that protocol before it is shown: every benchmark at its full size
(``dft.eval.benchmarks``), ``protocol.samples_per_problem`` samples per problem, the protocol's sampling, and the
model's paper prompt (its preset's ``paper.eval_prompt``). A run that deviates is refused, naming the file and
each deviation; ``--allow-deviations`` shows it instead, its numbers marked ``†`` (never bold) and its deviations
listed under the table. A malformed summary is an error naming the file. Summaries of two graders (``grader``
in summary.json: ours or paper, docs/grading.md) are refused in one table, naming the files; the title says
which grader and which metric (``--metric avg``: avg@k, the default; ``mean_acc``: the paper's harness's).
"""

import argparse
import json
from pathlib import Path

from dft.core.args import DefaultsHelpFormatter, refuse
from dft.eval.graders import check_one_grader

PAPER_TABLES = Path(__file__).with_name("paper_tables.json")
MARK = "†"


def title(benchmark: str) -> str:
    """A benchmark's column title (its registry entry's), or its name where it has none."""
    from dft.eval.benchmarks import BENCHMARKS

    spec = BENCHMARKS.get(benchmark)
    return spec.title if spec is not None and spec.title else benchmark


def load_paper_tables() -> dict:
    return json.loads(PAPER_TABLES.read_text())


def paper_prompt(model: str) -> str | None:
    """The evaluation prompt of the preset whose paper name is ``model`` (None for a model without a preset)."""
    from dft.models.presets import presets

    return next((p.eval_prompt for p in presets().values() if p.paper_name == model), None)


FRACTIONS = ("avg", "pass", "maj", "mean_acc")  # metric names (before any @k) that hold a fraction


def check_summary(summary, where: str, benchmarks: list[str]) -> None:
    """Raise ValueError naming ``where`` unless ``summary`` has the shape ``dft eval`` writes."""
    if not isinstance(summary, dict) or not isinstance(summary.get("benchmarks"), dict):
        raise ValueError(f"{where}: not an evaluation summary (no 'benchmarks' object; written by python -m dft eval)")
    for name in benchmarks:
        metrics = summary["benchmarks"].get(name)
        if metrics is None:
            continue
        n = metrics.get("samples_per_problem") if isinstance(metrics, dict) else None
        if not isinstance(n, int) or not isinstance(metrics.get(f"avg@{n}"), (int, float)):
            raise ValueError(f"{where}: benchmark {name!r} lacks samples_per_problem and its avg@k")
        if not isinstance(metrics.get("problems"), int):
            raise ValueError(f"{where}: benchmark {name!r} lacks its number of problems")
        _check_fractions(metrics, where, name)


def _check_fractions(metrics: dict, where: str, name: str) -> None:
    """Every accuracy of a benchmark (avg@k, pass@k, maj@k, mean_acc) is a fraction: a number in [0, 1]."""
    for key, value in metrics.items():
        if key.split("@")[0] not in FRACTIONS or isinstance(value, bool) or not isinstance(value, (int, float)):
            continue
        if not 0 <= value <= 1:  # NaN fails both
            hint = " (a percent where a fraction belongs?)" if 1 < value <= 100 else ""
            raise ValueError(f"{where}: benchmark {name!r} field {key} is {value}, not a fraction in [0, 1]{hint}; "
                             "evaluate again or fix the file")  # fmt: skip


def deviations(summary: dict, model: str, benchmarks: list[str], protocol: dict) -> list[str]:
    """How a well-formed summary departs from the table's protocol (empty: it follows it)."""
    from dft.eval.benchmarks import BENCHMARKS

    found = []
    n_wanted = protocol["samples_per_problem"]
    for name in benchmarks:
        metrics = summary["benchmarks"].get(name)
        if metrics is None:
            found.append(f"{name}: not evaluated")
            continue
        if BENCHMARKS[name].count is not None and metrics["problems"] != BENCHMARKS[name].count:
            found.append(f"{name}: {metrics['problems']} of {BENCHMARKS[name].count} problems")
        if metrics["samples_per_problem"] != n_wanted:
            found.append(f"{name}: {metrics['samples_per_problem']} samples per problem, not {n_wanted}")
    sampling = summary.get("sampling") if isinstance(summary.get("sampling"), dict) else {}
    for key in ("temperature", "top_p", "max_new_tokens"):
        if sampling.get(key) != protocol[key]:
            found.append(f"sampling.{key} {sampling.get(key)}, not {protocol[key]}")
    wanted = paper_prompt(model)
    if wanted and summary.get("prompt_template") != wanted:
        found.append(f"prompt {summary.get('prompt_template')!r}, not {model}'s {wanted!r}")
    return found


def our_scores(summary: dict, benchmarks: list[str], metric: str = "avg") -> dict:
    """avg@k (k as the run used it) or the harness's mean_acc of each benchmark in percent, plus their mean when
    all are present."""
    scores = {}
    for name in benchmarks:
        metrics = summary["benchmarks"].get(name)
        if metrics:
            key = f"avg@{metrics['samples_per_problem']}" if metric == "avg" else metric
            if key not in metrics:
                raise ValueError(f"benchmark {name!r} has no {key} (a summary from before it was recorded)")
            scores[name] = 100 * metrics[key]
    if len(scores) == len(benchmarks):
        scores["avg"] = sum(scores.values()) / len(benchmarks)
    return scores


def _best(values: list[float | None]) -> float | None:
    present = [v for v in values if v is not None]
    return max(present) if present else None


def _cell(ours: float | None, paper: float | None, bold_ours: bool, bold_paper: bool, mark: str) -> str:
    mine = "–" if ours is None else f"**{ours:.2f}**" if bold_ours else f"{ours:.2f}{mark}"
    if paper is None:
        return mine
    published = f"**{paper:.2f}**" if bold_paper else f"{paper:.2f}"
    delta = "" if ours is None else f" ({ours - paper:+.2f})"
    return f"{mine} / {published}{delta}"


def group_rows(model: str, methods: dict, ours: dict, marked: set, columns: list[str]) -> list[str]:
    """Markdown rows of one model's group; ``ours`` maps method -> scores, ``marked`` holds deviating methods."""
    have_ours = any(ours.get(m) for m in methods)
    source = {m: s for m, s in ours.items() if m not in marked} if have_ours else methods
    best = {c: _best([source.get(m, {}).get(c) for m in methods]) for c in columns}
    lines = []
    for method, paper in methods.items():
        mine, mark = ours.get(method, {}), MARK if method in marked else ""
        cells = []
        for c in columns:
            value = mine.get(c) if have_ours else paper.get(c)
            is_best = value is not None and value == best[c] and not mark
            cells.append(_cell(mine.get(c), paper.get(c), is_best and have_ours, is_best and not have_ours, mark))
        lines.append(f"| {model} | {method} | " + " | ".join(cells) + " |")
    return lines


def methods_of(table: dict) -> dict:
    """Every method of the table, in its order, with no published numbers: the rows of a model not in the paper."""
    return {method: {} for rows in table["rows"].values() for method in rows}


def with_other_models(table: dict, runs: dict) -> dict:
    """The table's rows and, after them, a group for each model of ``runs`` the paper has not (a toy scale's tiny
    model): the table's methods, ours only."""
    others = dict.fromkeys(k.split("/", 1)[0] for k in runs if "/" in k and k.split("/", 1)[0] not in table["rows"])
    return {**table, "rows": {**table["rows"], **{model: methods_of(table) for model in others}}}


def _check_names(name: str, table: dict, runs: dict) -> None:
    unknown = [k for k in runs if "/" not in k or k.split("/", 1)[0] not in table["rows"]]
    if unknown:
        raise ValueError(f"runs {unknown} name no model of {name}; models: {sorted(table['rows'])}")
    unknown = [k for k in runs if k.split("/", 1)[1] not in table["rows"][k.split("/", 1)[0]]]
    if unknown:
        methods = {
            model: list(rows) for model, rows in table["rows"].items() if any(k.startswith(model) for k in unknown)
        }
        raise ValueError(f"runs {unknown} name no method of {name}; methods: {methods}")


def build_table(name: str, runs: dict[str, dict], paper: dict | None = None, allow_deviations: bool = False,
                where: dict[str, str] | None = None, metric: str = "avg", runs_only: bool = False) -> str:  # fmt: skip
    """The markdown table ``name`` (table1/2/3); ``runs`` maps 'MODEL/METHOD' to a summary dict (``where``: to the
    file it came from, for messages)."""
    paper = paper or load_paper_tables()
    if name not in ("table1", "table2", "table3"):
        raise ValueError(f"unknown table {name!r}; valid tables: table1, table2, table3")
    table, benchmarks, where = paper[name], paper["benchmarks"], where or {}
    if allow_deviations:  # a model the paper has not is a deviation too, shown in a group of its own
        table = with_other_models(table, runs)
    _check_names(name, table, runs)
    off = {}
    for key, summary in runs.items():
        check_summary(summary, where.get(key, key), benchmarks)
        found = deviations(summary, key.split("/", 1)[0], benchmarks, paper["protocol"])
        if key.split("/", 1)[0] not in paper[name]["rows"]:
            found.insert(0, "not a model of the paper")
        if found:
            off[key] = found
    grader = check_one_grader(runs, where)
    if off and not allow_deviations:
        listed = "\n".join(f"  {where.get(k, k)} ({k}): " + "; ".join(v) for k, v in off.items())
        raise ValueError(f"{len(off)} run(s) do not follow the protocol of {name} (avg@"
                         f"{paper['protocol']['samples_per_problem']} on the full benchmarks):\n{listed}\n"
                         "Pass --allow-deviations to show them marked.")  # fmt: skip
    if runs_only:  # the benchmarks the runs evaluated (a toy scale's tiny_math among them), in the registry's order
        benchmarks = evaluated_benchmarks(runs)
    columns = benchmarks + ["avg"]
    header = ["Model", "Method", *map(title, benchmarks), "Avg."]
    shown = "avg@k" if metric == "avg" else metric
    lines = [f"**{table['title']}** (ours / paper (ours - paper), {shown} %, graded by {grader})", "",
             "| " + " | ".join(header) + " |", "|" + "---|" * len(header)]  # fmt: skip
    for model, methods in table["rows"].items():
        if runs_only and not any(k.startswith(model + "/") for k in runs):
            continue
        mine = {k.split("/", 1)[1]: our_scores(s, benchmarks, metric) for k, s in runs.items()
                if k.startswith(model + "/")}  # fmt: skip
        marked = {k.split("/", 1)[1] for k in off if k.startswith(model + "/")}
        if runs_only:
            methods = {m: v for m, v in methods.items() if m in mine}
        lines += group_rows(model, methods, mine, marked, columns)
    if off:
        lines += ["", f"{MARK} not the paper's protocol:"] + [f"- {k}: " + "; ".join(v) for k, v in off.items()]
    return "\n".join(lines)


def evaluated_benchmarks(runs: dict[str, dict]) -> list[str]:
    """Every benchmark some run evaluated, in the registry's order (the paper's five first)."""
    from dft.eval.benchmarks import BENCHMARKS

    found = {name for summary in runs.values() for name in summary["benchmarks"]}
    return [name for name in BENCHMARKS if name in found]


def _read_json(path: Path, what: str):
    try:
        return json.loads(Path(path).read_text())
    except FileNotFoundError:
        raise ValueError(f"{path}: no such {what}") from None
    except json.JSONDecodeError as err:
        raise ValueError(f"{path}: not valid JSON ({err.msg}, line {err.lineno})") from None


def parse_runs(pairs: list[str], runs_file: Path | None) -> tuple[dict[str, dict], dict[str, str]]:
    """'MODEL/METHOD=path' pairs (and a JSON file of them) -> ({'MODEL/METHOD': summary}, {key: path})."""
    mapping = _read_json(runs_file, "runs file") if runs_file else {}
    if not isinstance(mapping, dict) or not all(isinstance(v, str) for v in mapping.values()):
        raise ValueError(f"{runs_file}: expected a JSON object of MODEL/METHOD -> path/to/summary.json")
    for pair in pairs:
        key, sep, path = pair.partition("=")
        if not sep:
            raise ValueError(f"--run {pair!r}: expected MODEL/METHOD=path/to/summary.json")
        mapping[key] = path
    return {key: _read_json(path, "evaluation summary") for key, path in mapping.items()}, mapping


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        description="Render the paper's Tables 1-3 with our results beside.",
        formatter_class=DefaultsHelpFormatter,
    )
    parser.add_argument("table", choices=["table1", "table2", "table3"])
    parser.add_argument("--run", action="append", default=[], help="MODEL/METHOD=path/to/summary.json")
    parser.add_argument("--runs", type=Path, help="JSON object of MODEL/METHOD -> summary path")
    deviations = "show runs that do not follow the table's protocol, marked, instead of refusing them"
    parser.add_argument("--allow-deviations", action="store_true", help=deviations)
    parser.add_argument("--out", type=Path, help="also write the markdown here")
    parser.add_argument("--runs-only", action="store_true", help="only the models with a run (no published-only rows)")
    metric = "avg: avg@k; mean_acc: the paper's harness's (sample columns' accuracy, rounded)"
    parser.add_argument("--metric", choices=["avg", "mean_acc"], default="avg", help=metric)
    return parser


def main(argv=None) -> None:
    args = build_parser().parse_args(argv)
    try:
        runs, where = parse_runs(args.run, args.runs)
        text = build_table(
            args.table,
            runs,
            allow_deviations=args.allow_deviations,
            where=where,
            metric=args.metric,
            runs_only=args.runs_only,
        )
    except ValueError as exc:
        refuse(str(exc))
    emit(text, args.out)


def emit(text: str, out: Path | None) -> None:
    """Print a rendered table, and write it to ``out`` when given."""
    print(text)
    if out:
        out.write_text(text + "\n")


if __name__ == "__main__":
    main()
