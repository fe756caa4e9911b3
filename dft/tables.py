"""Build the paper's Tables 1-3 from evaluation summaries, with the published numbers beside ours.

    python -m dft.tables table1 --run Qwen2.5-Math-1.5B/Base=runs/eval/base/summary.json \\
        --run Qwen2.5-Math-1.5B/DFT=runs/eval/dft/summary.json [--runs runs.json] [--out table1.md]

A run is ``MODEL/METHOD=SUMMARY`` (model and method as the paper's table names them; ``--runs`` takes a JSON
object of the same pairs). Each cell reads ``ours / paper (ours - paper)`` in percent; the best of ours in
each model's group and column is bold (the paper's, where we have no run for the group). The published
numbers live in ``dft/paper_tables.json``, typed once from the paper.
"""

import argparse
import json
from pathlib import Path

PAPER_TABLES = Path(__file__).with_name("paper_tables.json")
BENCHMARK_TITLES = {"math500": "Math500", "minerva_math": "Minerva Math", "olympiadbench": "Olympiad Bench",
                    "aime24": "AIME24", "amc23": "AMC23"}  # fmt: skip


def load_paper_tables() -> dict:
    return json.loads(PAPER_TABLES.read_text())


def our_scores(summary: dict, benchmarks: list[str]) -> dict:
    """avg@k of each benchmark in percent (k as the run used it), plus their mean when all are present."""
    scores = {}
    for name in benchmarks:
        metrics = summary.get("benchmarks", {}).get(name)
        if metrics:
            key = next(k for k in metrics if k.startswith("avg@"))
            scores[name] = 100 * metrics[key]
    if len(scores) == len(benchmarks):
        scores["avg"] = sum(scores.values()) / len(benchmarks)
    return scores


def _best(values: list[float | None]) -> float | None:
    present = [v for v in values if v is not None]
    return max(present) if present else None


def _cell(ours: float | None, paper: float | None, bold_ours: bool, bold_paper: bool) -> str:
    mine = "–" if ours is None else f"**{ours:.2f}**" if bold_ours else f"{ours:.2f}"
    if paper is None:
        return mine
    published = f"**{paper:.2f}**" if bold_paper else f"{paper:.2f}"
    delta = "" if ours is None else f" ({ours - paper:+.2f})"
    return f"{mine} / {published}{delta}"


def group_rows(model: str, methods: dict, ours: dict, columns: list[str]) -> list[str]:
    """Markdown rows of one model's group; ``ours`` maps method -> scores."""
    have_ours = any(ours.get(m) for m in methods)
    source = ours if have_ours else methods
    best = {c: _best([source.get(m, {}).get(c) for m in methods]) for c in columns}
    lines = []
    for method, paper in methods.items():
        mine = ours.get(method, {})
        cells = []
        for c in columns:
            value = mine.get(c) if have_ours else paper.get(c)
            is_best = value is not None and value == best[c]
            cells.append(_cell(mine.get(c), paper.get(c), is_best and have_ours, is_best and not have_ours))
        lines.append(f"| {model} | {method} | " + " | ".join(cells) + " |")
    return lines


def build_table(name: str, runs: dict[str, dict], paper: dict | None = None) -> str:
    """The markdown table ``name`` (table1/2/3); ``runs`` maps 'MODEL/METHOD' to a summary dict."""
    paper = paper or load_paper_tables()
    if name not in ("table1", "table2", "table3"):
        raise ValueError(f"unknown table {name!r}; valid tables: table1, table2, table3")
    table, benchmarks = paper[name], paper["benchmarks"]
    columns = benchmarks + ["avg"]
    unknown = [k for k in runs if k.split("/", 1)[0] not in table["rows"] or "/" not in k]
    if unknown:
        raise ValueError(f"runs {unknown} name no model of {name}; models: {sorted(table['rows'])}")
    unknown = [k for k in runs if k.split("/", 1)[1] not in table["rows"][k.split("/", 1)[0]]]
    if unknown:
        methods = {
            model: list(rows) for model, rows in table["rows"].items() if any(k.startswith(model) for k in unknown)
        }
        raise ValueError(f"runs {unknown} name no method of {name}; methods: {methods}")
    header = ["Model", "Method", *(BENCHMARK_TITLES.get(b, b) for b in benchmarks), "Avg."]
    lines = [f"**{table['title']}** (ours / paper (ours - paper), avg@k %)", "",
             "| " + " | ".join(header) + " |", "|" + "---|" * len(header)]  # fmt: skip
    for model, methods in table["rows"].items():
        ours = {k.split("/", 1)[1]: our_scores(s, benchmarks) for k, s in runs.items() if k.startswith(model + "/")}
        lines += group_rows(model, methods, ours, columns)
    return "\n".join(lines)


def parse_runs(pairs: list[str], runs_file: Path | None) -> dict[str, dict]:
    """'MODEL/METHOD=path' pairs (and a JSON file of them) -> {'MODEL/METHOD': summary}."""
    mapping = json.loads(Path(runs_file).read_text()) if runs_file else {}
    for pair in pairs:
        key, sep, path = pair.partition("=")
        if not sep:
            raise ValueError(f"--run {pair!r}: expected MODEL/METHOD=path/to/summary.json")
        mapping[key] = path
    return {key: json.loads(Path(path).read_text()) for key, path in mapping.items()}


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(description="Render the paper's Tables 1-3 with our results beside.")
    parser.add_argument("table", choices=["table1", "table2", "table3"])
    parser.add_argument("--run", action="append", default=[], help="MODEL/METHOD=path/to/summary.json")
    parser.add_argument("--runs", type=Path, help="JSON object of MODEL/METHOD -> summary path")
    parser.add_argument("--out", type=Path, help="also write the markdown here")
    return parser


def main(argv=None) -> None:
    args = build_parser().parse_args(argv)
    text = build_table(args.table, parse_runs(args.run, args.runs))
    print(text)
    if args.out:
        args.out.write_text(text + "\n")


if __name__ == "__main__":
    main()
