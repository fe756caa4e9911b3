"""The continuum's table and figure: accuracy per loss and starting strength, and DFT - SFT against the diagnosis.

Input: one ``dft diagnose`` report per starting model (``mean_target_prob``, the verdict's ``position``) and the
held-out accuracy of every (start, loss, seed) model; output ``continuum.md``, ``continuum.json`` and
``continuum.png``. The prediction is the verdict's: a strong prior predicts DFT >= SFT, a weak one SFT > DFT, an
intermediate one no winner. Used by the toy scale (``python -m dft quickstart continuum``) and, from evaluation
summaries, by the cluster scale:

    python -m dft continuum --diagnosis qwen2.5-math-1.5b=runs/diagnose/qwen2.5-math-1.5b \\
        --run "qwen2.5-math-1.5b|dft|0=runs/eval/continuum/qwen2.5-math-1.5b-dft-s0/summary.json" ... \\
        --out runs/continuum
"""

from __future__ import annotations

import numpy as np

from dft.core.io import write_json_atomic, write_text_atomic

LOSSES = ("sft", "dft", "prob_power@0.25", "prob_power@0.5")  # the toy scale's (python -m dft quickstart continuum)


def losses_of(accuracy: dict) -> list[str]:
    """The losses of the runs (``START|LOSS|SEED`` keys, base aside): sft and dft first, then the others as given
    (the recipe's prob_power alphas are its ALPHAS knob)."""
    found = list(dict.fromkeys(key.split("|")[1] for key in accuracy if key.split("|")[1] != "base"))
    missing = [loss for loss in ("sft", "dft") if loss not in found]
    if missing:
        raise ValueError(f"continuum: no {' or '.join(missing)} run (give START|LOSS|SEED=summary.json for each)")
    return ["sft", "dft", *[loss for loss in found if loss not in ("sft", "dft")]]


PREDICTED = {"strong": "DFT", "weak": "SFT", "intermediate": "either"}


def spread(values: list[float]) -> dict:
    """Mean, min and max over seeds (in accuracy points)."""
    return {"mean": float(np.mean(values)), "min": float(min(values)), "max": float(max(values)), "n": len(values)}


def point(strength, report: dict, accuracy: dict, losses: list[str]) -> dict:
    """One starting model: its diagnosis, each loss's accuracy over seeds, and DFT - SFT seed by seed."""
    by_loss = {}
    for loss in losses:
        by_loss[loss] = [100 * a for key, a in sorted(accuracy.items()) if key.startswith(f"{strength}|{loss}|")]
        if not by_loss[loss]:
            raise ValueError(f"continuum: no {loss} run of {strength} (give {strength}|{loss}|SEED=summary.json)")
    diff = [d - s for d, s in zip(by_loss["dft"], by_loss["sft"])]
    observed = "DFT" if np.mean(diff) > 0 else "SFT" if np.mean(diff) < 0 else "tie"
    predicted = PREDICTED[report["verdict"]["position"]]
    return {
        "strength": strength,
        "mean_target_prob": report["mean_target_prob"],
        "share_below_0.1": report["statistics"]["share_below"]["0.1"],
        "position": report["verdict"]["position"],
        "base": 100 * accuracy[f"{strength}|base|0"],
        "accuracy": {loss: spread(values) for loss, values in by_loss.items()},
        "dft_minus_sft": spread(diff),
        "predicted": predicted,
        "observed": observed,
        "prediction_held": predicted == "either" or predicted == observed,
    }


def cell(s: dict) -> str:
    return f"{s['mean']:.1f} [{s['min']:.1f}, {s['max']:.1f}]"


def table(points: list[dict]) -> str:
    losses = list(points[0]["accuracy"])
    start = "start (pretrain steps)" if isinstance(points[0]["strength"], int) else "starting model"
    head = [start, "mean_target_prob", "p < 0.1", "prior", "Base", *losses, "DFT - SFT",
            "predicted", "observed"]  # fmt: skip
    lines = ["| " + " | ".join(head) + " |", "|" + "---|" * len(head)]
    for p in points:
        row = [str(p["strength"]), f"{p['mean_target_prob']:.3f}", f"{100 * p['share_below_0.1']:.0f}%",
               p["position"], f"{p['base']:.1f}", *[cell(p["accuracy"][loss]) for loss in losses],
               cell(p["dft_minus_sft"]), p["predicted"], p["observed"]]  # fmt: skip
        lines.append("| " + " | ".join(row) + " |")
    return "\n".join(lines)


def figure(points: list[dict], path) -> None:
    """DFT - SFT (and prob_power - SFT) accuracy against mean_target_prob; bars: min and max over seeds."""
    from matplotlib.backends.backend_agg import FigureCanvasAgg
    from matplotlib.figure import Figure

    fig = Figure(figsize=(6.0, 3.8))
    FigureCanvasAgg(fig)
    axes = fig.add_subplot()
    x = [p["mean_target_prob"] for p in points]
    for loss, marker in zip(list(points[0]["accuracy"])[1:], "os^vDp"):
        sft = [p["accuracy"]["sft"]["mean"] for p in points]
        means = [p["accuracy"][loss]["mean"] - s for p, s in zip(points, sft)]
        label = "DFT - SFT" if loss == "dft" else f"{loss} - SFT"
        if loss == "dft":
            low = [m - p["dft_minus_sft"]["min"] for m, p in zip(means, points)]
            high = [p["dft_minus_sft"]["max"] - m for m, p in zip(means, points)]
            axes.errorbar(x, means, yerr=[low, high], marker=marker, capsize=3, label=label)
        else:
            axes.plot(x, means, marker=marker, ls=":", label=label)
    for p in points:
        label = f"{p['strength']} steps" if isinstance(p["strength"], int) else str(p["strength"])
        axes.annotate(label, (p["mean_target_prob"], 0), fontsize=7, rotation=90, va="bottom")
    axes.axhline(0, color="k", lw=0.8)
    axes.set(xlabel="mean target-token p under the starting model (dft diagnose)",
             ylabel="accuracy difference (points)")  # fmt: skip
    axes.set_title("the continuum: accuracy vs the prior's strength", fontsize=9)
    axes.legend(fontsize=7)
    fig.tight_layout()
    fig.savefig(path, format="png", dpi=150)


def write_continuum(out, diagnoses: dict, accuracy: dict, config: dict, wall_s: float) -> dict:
    """``continuum.md``/``.json``/``.png`` in ``out`` from {strength: diagnose report} and {"S|loss|seed": acc}."""
    losses = losses_of(accuracy)
    # weak to strong: by pretraining steps (the toy scale), by the diagnosis (named starting models)
    order = sorted(diagnoses, key=lambda s: s if isinstance(s, int) else diagnoses[s]["mean_target_prob"])
    points = [point(s, diagnoses[s], accuracy, losses) for s in order]
    summary = {"config": config, "points": points, "wall_s": wall_s,
               "predictions_held": sum(p["prediction_held"] for p in points), "starts": len(points)}  # fmt: skip
    write_json_atomic(out / "continuum.json", summary)
    measure = config.get("measure") or f"Accuracy in % on {config['n_test']} held-out problems"
    note = (f"{measure}, mean [min, max] over {config['seeds']} seeds; the prediction is dft diagnose's verdict. "
            f"It held for {summary['predictions_held']} of {len(points)} starting models."
            + (f" Wall time {wall_s:.0f} s." if wall_s else ""))  # fmt: skip
    out.mkdir(parents=True, exist_ok=True)
    write_text_atomic(out / "continuum.md", table(points) + "\n\n" + note + "\n")
    figure(points, out / "continuum.png")
    return summary


def build_parser():
    import argparse

    from dft.core.args import DefaultsHelpFormatter

    parser = argparse.ArgumentParser(prog="python -m dft continuum", description=__doc__.splitlines()[0],
                                     formatter_class=DefaultsHelpFormatter)  # fmt: skip
    parser.add_argument("--diagnosis", action="append", default=[], required=True,
                        help="START=DIR: dft diagnose's folder (DIR/report.json) for a starting model")  # fmt: skip
    parser.add_argument(
        "--run",
        action="append",
        default=[],
        required=True,
        help="START|LOSS|SEED=summary.json of dft eval (LOSS: base, or one of " + ", ".join(LOSSES) + ")",
    )
    parser.add_argument("--out", type=str, required=True, help="folder for continuum.md, .json and .png")
    return parser


def main(argv=None) -> dict:
    """``python -m dft continuum``: the table and figure from diagnoses and evaluation summaries (the cluster
    scale of recipes/continuum; accuracy is the average over the summary's benchmarks of avg@k)."""
    import json
    import sys
    from pathlib import Path

    from dft.report.tables import load_paper_tables, our_scores

    args = build_parser().parse_args(argv)
    try:
        diagnoses = {k: json.loads((Path(v) / "report.json").read_text()) for k, v in
                     (item.split("=", 1) for item in args.diagnosis)}  # fmt: skip
        benchmarks = load_paper_tables()["benchmarks"]
        accuracy = {k: our_scores(json.loads(Path(v).read_text()), benchmarks)["avg"] / 100 for k, v in
                    (item.split("=", 1) for item in args.run)}  # fmt: skip
    except (OSError, ValueError, KeyError) as exc:
        print(f"error: {exc}", file=sys.stderr)
        raise SystemExit(2) from None
    seeds = {int(key.rsplit("|", 1)[1]) for key in accuracy}
    config = {"seeds": len(seeds), "measure": "Accuracy: avg@k in % averaged over the evaluation's benchmarks"}
    try:
        summary = write_continuum(Path(args.out), diagnoses, accuracy, config, 0.0)
    except ValueError as exc:
        print(f"error: {exc}", file=sys.stderr)
        raise SystemExit(2) from None
    print((Path(args.out) / "continuum.md").read_text())
    return summary
