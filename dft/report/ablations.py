"""Tables of our own ablations, which the paper does not report, from evaluation summaries.

    python -m dft ablations normalization --run SFT/official=runs/eval/a/summary.json \\
        --run SFT/token=runs/eval/b/summary.json --run DFT/official=... --run DFT/token=... [--out table.md]

    python -m dft ablations cft --run Qwen2.5-Math-1.5B/SFT=runs/eval/a/summary.json \\
        --run Qwen2.5-Math-1.5B/DFT=runs/eval/b/summary.json [--out table.md]

    python -m dft ablations beyond --run SFT=runs/eval/a/summary.json --run "DFT + end tokens=..." [--out table.md]

    python -m dft ablations lora --run Qwen2.5-Math-1.5B/SFT/full=runs/eval/a/summary.json \\
        --run Qwen2.5-Math-1.5B/SFT/lora=runs/eval/b/summary.json ... [--out table.md]

``beyond``: the methods beyond DFT (``recipes/beyond_dft``), a run per method as ``LABEL=SUMMARY``; a row per run
with avg@k (%) on the five benchmarks, their average, and that average minus the first run's (SFT in the recipe).

``cft``: critique fine-tuning with each loss (``recipes/cft``), a run per model and loss as ``MODEL/METHOD=SUMMARY``;
a row per run with avg@k (%) on the five benchmarks and their average, and per model with two or more methods a row
``M - FIRST`` for each later method M (DFT - SFT in the recipe).
``lora``: each method fine-tuned in full (Table 1's runs) and with LoRA (``recipes/lora``), a run as
``MODEL/METHOD/full`` or ``MODEL/METHOD/lora``; per model and method a row for each and a row ``LoRA - full``.

``normalization``: each method trained under ``loss.normalization=official`` (the official DFT trainer's
per-micro-batch means) and ``token`` (the global token mean), everything else equal (``recipes/normalization``).
A run is ``METHOD/NORMALIZATION=SUMMARY``; a row per run with avg@k (%) on the paper's five benchmarks and their
average, and per method a row ``official - token``. Scores are read as ``dft.report.tables`` reads them.
"""

import argparse
from pathlib import Path

from dft.core.args import DefaultsHelpFormatter, refuse
from dft.eval.graders import check_one_grader
from dft.report.tables import (
    MARK,
    check_summary,
    deviations,
    emit,
    load_paper_tables,
    our_scores,
    parse_runs,
    title,
)

NORMALIZATIONS = ("official", "token")


def normalization_table(runs: dict[str, dict], benchmarks: list[str]) -> str:
    """Markdown: one row per (method, normalisation) run, and the official - token difference per method."""
    bad = [key for key in runs if key.partition("/")[2] not in NORMALIZATIONS]
    if bad:
        raise ValueError(f"runs {bad}: expected METHOD/official or METHOD/token")
    columns = [*benchmarks, "avg"]
    header = ["Method", "Normalisation", *map(title, benchmarks), "Avg."]
    lines = ["**Loss normalisation: the official trainer's per-micro-batch means vs the global token mean** "
             "(avg@k %)", "", "| " + " | ".join(header) + " |", "|" + "---|" * len(header)]  # fmt: skip
    methods = list(dict.fromkeys(key.partition("/")[0] for key in runs))
    for method in methods:
        scores = {n: our_scores(runs[f"{method}/{n}"], benchmarks) for n in NORMALIZATIONS if f"{method}/{n}" in runs}
        for norm, values in scores.items():
            lines.append(f"| {method} | {norm} | " + " | ".join(_fmt(values.get(c)) for c in columns) + " |")
        if len(scores) == 2:
            diff = [_diff(scores["official"].get(c), scores["token"].get(c)) for c in columns]
            lines.append(f"| {method} | official - token | " + " | ".join(diff) + " |")
    return "\n".join(lines)


def beyond_table(runs: dict[str, dict], benchmarks: list[str]) -> str:
    """Markdown: one row per method run, in the order given, with its average's difference to the first run's."""
    if not runs:
        raise ValueError("beyond: give at least one --run LABEL=summary.json")
    columns = [*benchmarks, "avg"]
    first = next(iter(runs))
    header = ["Method", *map(title, benchmarks), "Avg.", f"Avg. - {first}"]
    lines = ["**Beyond DFT: SFT, DFT, DFT with full-weight end tokens, ASFT and the probability-power family** "
             "(avg@k %)", "", "| " + " | ".join(header) + " |", "|" + "---|" * len(header)]  # fmt: skip
    base = our_scores(runs[first], benchmarks).get("avg")
    for label, summary in runs.items():
        values = our_scores(summary, benchmarks)
        cells = [_fmt(values.get(c)) for c in columns] + [_diff(values.get("avg"), base)]
        lines.append(f"| {label} | " + " | ".join(cells) + " |")
    return "\n".join(lines)


def cft_table(runs: dict[str, dict], benchmarks: list[str]) -> str:
    """Markdown: one row per (model, method) run, and per model each later method minus its first."""
    bad = [key for key in runs if not all(key.partition("/")[::2])]
    if bad or not runs:
        raise ValueError(f"cft: expected --run MODEL/METHOD=summary.json, got {bad or 'none'}")
    columns = [*benchmarks, "avg"]
    header = ["Model", "Method", *map(title, benchmarks), "Avg."]
    lines = ["**Critique fine-tuning (WebInstruct-CFT) with each loss** (avg@k %)", "",
             "| " + " | ".join(header) + " |", "|" + "---|" * len(header)]  # fmt: skip
    for model in dict.fromkeys(key.partition("/")[0] for key in runs):
        scores = {key.partition("/")[2]: our_scores(summary, benchmarks)
                  for key, summary in runs.items() if key.partition("/")[0] == model}  # fmt: skip
        for method, values in scores.items():
            lines.append(f"| {model} | {method} | " + " | ".join(_fmt(values.get(c)) for c in columns) + " |")
        first, *later = scores
        for method in later:
            diff = [_diff(scores[method].get(c), scores[first].get(c)) for c in columns]
            lines.append(f"| {model} | {method} - {first} | " + " | ".join(diff) + " |")
    return "\n".join(lines)


def protocol_note(runs: dict[str, dict], benchmarks: list[str]) -> str:
    """Under the table, each run that departs from the paper's protocol (the toy scale's, say) and how."""
    protocol = load_paper_tables()["protocol"]
    off = {key: found for key, summary in runs.items() if (found := deviations(summary, "", benchmarks, protocol))}
    if not off:
        return ""
    return "\n\n" + "\n".join(
        [f"{MARK} not the paper's protocol:"] + [f"- {k}: " + "; ".join(v) for k, v in off.items()]
    )


def lora_table(runs: dict[str, dict], benchmarks: list[str]) -> str:
    """Markdown: per model and method, the full fine-tuning run, the LoRA run and LoRA - full."""
    keys = {key: tuple(key.rsplit("/", 2)) for key in runs}
    bad = [key for key, parts in keys.items() if len(parts) != 3 or parts[2] not in TUNINGS]
    if bad:
        raise ValueError(f"runs {bad}: expected MODEL/METHOD/full or MODEL/METHOD/lora")
    columns = [*benchmarks, "avg"]
    header = ["Model", "Method", "Fine-tuning", *map(title, benchmarks), "Avg."]
    lines = ["**LoRA vs full fine-tuning, SFT and DFT** (avg@k %)", "", "| " + " | ".join(header) + " |",
             "|" + "---|" * len(header)]  # fmt: skip
    for model, method in dict.fromkeys(parts[:2] for parts in keys.values()):
        scores = {t: our_scores(runs[f"{model}/{method}/{t}"], benchmarks) for t in TUNINGS
                  if f"{model}/{method}/{t}" in runs}  # fmt: skip
        for tuning, values in scores.items():
            lines.append(f"| {model} | {method} | {TUNINGS[tuning]} | "
                         + " | ".join(_fmt(values.get(c)) for c in columns) + " |")  # fmt: skip
        if len(scores) == 2:
            diff = [_diff(scores["lora"].get(c), scores["full"].get(c)) for c in columns]
            lines.append(f"| {model} | {method} | LoRA - full | " + " | ".join(diff) + " |")
    return "\n".join(lines)


TUNINGS = {"full": "full", "lora": "LoRA"}
TABLES = {"normalization": normalization_table, "beyond": beyond_table, "cft": cft_table, "lora": lora_table}


def _fmt(value: float | None) -> str:
    return "–" if value is None else f"{value:.2f}"


def _diff(a: float | None, b: float | None) -> str:
    return "–" if a is None or b is None else f"{a - b:+.2f}"


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="python -m dft ablations", description=__doc__.splitlines()[0],
                                     formatter_class=DefaultsHelpFormatter)  # fmt: skip
    parser.add_argument("table", choices=sorted(TABLES))
    runs = (
        "METHOD/NORMALIZATION=summary.json (normalization), LABEL=summary.json (beyond), "
        "MODEL/METHOD=summary.json (cft), MODEL/METHOD/full|lora=summary.json (lora)"
    )
    parser.add_argument("--run", action="append", default=[], help=runs)
    parser.add_argument("--out", type=Path, help="also write the markdown here")
    return parser


def main(argv=None) -> None:
    args = build_parser().parse_args(argv)
    benchmarks = load_paper_tables()["benchmarks"]
    try:
        runs, where = parse_runs(args.run, None)
        for key, summary in runs.items():
            check_summary(summary, where[key], benchmarks)
        check_one_grader(runs, where)
        text = TABLES[args.table](runs, benchmarks) + protocol_note(runs, benchmarks)
    except ValueError as exc:
        refuse(str(exc))
    emit(text, args.out)


if __name__ == "__main__":
    main()
