"""Will DFT help on this data? Score it with the starting model and report the prior's strength, before training.

    python -m dft diagnose model.path=Qwen/Qwen2.5-Math-1.5B data.train_files=data/numina/train.parquet out=runs/diag
    torchrun --nproc_per_node=8 -m dft diagnose preset=qwen2.5-math-1.5b data.train_files=... out=runs/diag

The first ``limit`` rows of ``data.train_files`` (default 2000; ``limit=null``: all) are scored by the model
exactly as ``dft ref_logprobs`` scores them (:mod:`dft.train.ref_scoring`, verl's engine, forward only, resumable;
the same tokens training trains on, so pass the training run's ``setting``/``data.format``). Then ``out/``
gets ``report.md``, ``report.json`` and ``target_probs.png``: the distribution of the target tokens' p, DFT's
gradient scale relative to SFT's (``mean_target_prob``), the p of the structural tokens (eos, end of turn and
the answer format's ``\\boxed``, resolved with the model's tokenizer) with a warning and a fix where DFT would not
learn them, and a verdict (:mod:`dft.report.prior`). Without torchrun it runs as one process (a CPU, tiny models).
"""

from __future__ import annotations

import json
import os
import socket
import sys
from pathlib import Path

import hydra
import pyarrow.parquet as pq
from omegaconf import open_dict

from dft.core.io import atomic_write, write_json_atomic, write_text_atomic
from dft.core.paths import CONFIGS
from dft.report.prior import structural_entry, structural_warning, target_statistics, verdict
from dft.train.progress import hydra_logs_beside

# answer-format markers looked for among the targets (their tokens in the model's vocabulary)
ANSWER_MARKERS = ("\\boxed",)
END_TOKENS = ("eos", "end_of_turn")
SCORED = "target_log_probs.parquet"


def single_process_env() -> None:
    """Started without torchrun: the environment of a one-process group, so verl's set-up runs unchanged."""
    if "RANK" in os.environ:
        return
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        port = probe.getsockname()[1]
    os.environ.update(RANK="0", LOCAL_RANK="0", WORLD_SIZE="1", LOCAL_WORLD_SIZE="1", MASTER_ADDR="127.0.0.1",
                      MASTER_PORT=str(port))  # fmt: skip


def sample_rows(files: list[str], limit: int | None, out: Path) -> Path:
    """The first ``limit`` rows of ``files`` as one parquet in ``out`` (schema metadata, the data format, kept)."""
    import pyarrow as pa

    table = pa.concat_tables([pq.read_table(f) for f in files])
    table = table.slice(0, limit) if limit else table
    path = out / "rows.parquet"
    atomic_write(path, lambda tmp: pq.write_table(table, tmp))
    return path


def target_token_ids(config) -> list[list[int]]:
    """Each row's target token ids, in the order the scorer stores their log-probs (the dataset training reads)."""
    from verl.trainer.sft_trainer import create_sft_dataset
    from verl.utils import hf_tokenizer

    tokenizer = hf_tokenizer(config.model.path, trust_remote_code=bool(config.model.get("trust_remote_code")))
    dataset = create_sft_dataset([config.data.train_files], config.data, tokenizer, None)
    rows = []
    for i in range(len(dataset)):
        item = dataset[i]
        rows.append(item["input_ids"][item["loss_mask"].bool()].tolist())
    return rows


def structural_tokens(tokenizer, target_ids: list, log_probs: list) -> tuple[list[dict], list[str]]:
    """(entries, warnings) for the end tokens (by id) and the answer markers (by text), resolved with the model's
    tokenizer; an end token that is both eos and end of turn (Llama-3 base's eos, the tiny model's) is one entry."""
    from dft.report.prior import find_runs, find_text, never_ends
    from dft.train.full_weight import token_id

    names, warnings = {}, []
    for name in END_TOKENS:
        try:
            names.setdefault(token_id(tokenizer, name), []).append(name)
        except ValueError:
            warnings.append(f"{name}: the tokenizer has none (no chat template, or no eos token)")
    entries, end_names = [], ",".join(name for both in names.values() for name in both)
    for tid, both in names.items():
        found = [find_runs(list(ids), [tid]) for ids in target_ids]
        entries.append(structural_entry(" = ".join(both), tokenizer.convert_ids_to_tokens(tid), found, log_probs))
        entries[-1]["token_ids"] = [tid]
        warnings.append(structural_warning(entries[-1], end_token=True, end_names=end_names))
    warnings.append(never_ends(entries))
    pieces = {}
    texts = [[pieces.setdefault(t, tokenizer.decode([t])) for t in ids] for ids in target_ids]
    for marker in ANSWER_MARKERS:
        entries.append(structural_entry("answer format", marker, [find_text(t, marker) for t in texts], log_probs))
        entries[-1]["token_ids"] = list(tokenizer(marker, add_special_tokens=False)["input_ids"])
        warnings.append(structural_warning(entries[-1], end_token=False))
    return entries, [w for w in warnings if w]


def write_figure(stats: dict, structural: list[dict], path: Path, title: str) -> None:
    """The histogram of the target tokens' p, the structural tokens' mean p marked, mean p dashed."""
    from matplotlib.backends.backend_agg import FigureCanvasAgg
    from matplotlib.figure import Figure

    figure = Figure(figsize=(6.4, 3.6))
    FigureCanvasAgg(figure)
    axes = figure.add_subplot()
    edges, counts = stats["histogram"]["edges"], stats["histogram"]["counts"]
    axes.bar(edges[:-1], counts, width=edges[1] - edges[0], align="edge", color="0.6", edgecolor="0.3")
    axes.set_yscale("log")
    axes.axvline(stats["mean_target_prob"], color="k", ls="--", label=f"mean p = {stats['mean_target_prob']:.3f}")
    for entry, color in zip([e for e in structural if "mean_p" in e], ("C3", "C0", "C2", "C1")):
        axes.axvline(entry["mean_p"], color=color, label=f"{entry['text']}: {entry['mean_p']:.3f}")
    axes.set(xlabel="p of the target token under the starting model", ylabel="target tokens", xlim=(0, 1))
    axes.set_title(title, fontsize=9)
    axes.legend(fontsize=7)
    figure.tight_layout()
    atomic_write(path, lambda tmp: figure.savefig(tmp, format="png", dpi=150))


def render_markdown(report: dict) -> str:
    """``report.md``: the numbers, the structural tokens and their warnings, the verdict."""
    s, v = report["statistics"], report["verdict"]
    lines = [f"# Diagnosis: {report['model']} on {report['data']}", "",
             f"{s['rows']} rows, {s['target_tokens']} target tokens. ![target token probabilities](target_probs.png)",
             "", "## Target-token probabilities", "", "| statistic | value |", "|---|---|",
             f"| mean_target_prob (DFT's gradient scale vs SFT's) | {s['mean_target_prob']:.4g} |",
             *[f"| share p < {t} | {100 * share:.1f}% |" for t, share in s["share_below"].items()],
             *[f"| quantile {q} | {value:.4g} |" for q, value in s["quantiles"].items()],
             f"| SFT loss at step 0 (-mean log p) | {s['sft_loss']:.4f} |",
             f"| DFT loss at step 0 (-mean p log p) | {s['dft_loss']:.4f} |",
             "", v["learning_rate"], "", "## Structural tokens", "",
             "| token | text | occurrences | mean p | min p |", "|---|---|---|---|---|"]  # fmt: skip
    for e in report["structural"]:
        mean, low = (f"{e['mean_p']:.4g}", f"{e['min_p']:.4g}") if "mean_p" in e else ("-", "-")
        lines.append(f"| {e['name']} | `{e['text']}` {e['token_ids']} | {e['occurrences']} | {mean} | {low} |")
    lines += [""] + [f"- **warning**: {w}" for w in report["warnings"]] + ["", "## Verdict (a hypothesis)", ""]
    lines += [f"Prior strength: **{v['position']}** ({v['evidence']}).", ""]
    lines += [f"- {loss}: {what}" for loss, what in v["expect"].items()]
    lines += ["", f"Why: {v['hypothesis']}. Thresholds: strong = {v['thresholds']['strong']}; "
              f"weak = {v['thresholds']['weak']}.", ""]  # fmt: skip
    return "\n".join(lines)


def write_report(config, scored: Path, out: Path) -> dict:
    """Statistics of the scored rows, written as report.json, report.md and target_probs.png; return the report."""
    from verl.utils import hf_tokenizer

    from dft.train.columns import ref_column

    log_probs = [list(row) for row in pq.read_table(scored).column(ref_column()).to_pylist()]
    target_ids = target_token_ids(config)
    if [len(r) for r in target_ids] != [len(r) for r in log_probs]:
        raise RuntimeError(f"{scored}: its log-probs do not line up with the dataset's target tokens; delete it")
    tokenizer = hf_tokenizer(config.model.path, trust_remote_code=bool(config.model.get("trust_remote_code")))
    stats = target_statistics(log_probs)
    structural, warnings = structural_tokens(tokenizer, target_ids, log_probs)
    report = {"model": str(config.model.path), "data": str(config.data.train_files), "statistics": stats,
              "mean_target_prob": stats["mean_target_prob"], "structural": structural, "warnings": warnings,
              "verdict": verdict(stats, structural)}  # fmt: skip
    write_json_atomic(out / "report.json", report)
    write_text_atomic(out / "report.md", render_markdown(report))
    write_figure(stats, structural, out / "target_probs.png", f"{Path(str(config.model.path)).name}: target p")
    return report


def check_config(config) -> None:
    """``out`` is required; the rows are scored into ``out/`` by :mod:`dft.train.ref_scoring`'s checks."""
    from dft.train.ref_scoring import check_config as check_scoring

    if not config.get("out"):
        raise ValueError("out: give the report's folder, e.g. out=runs/diagnose")
    with open_dict(config):
        config.ref.output = str(Path(config.out) / SCORED)
        config.ref.topk = 0
    check_scoring(config)


def main() -> None:
    """``dft diagnose``: its Hydra folder (composed config, job log) goes under ``out/logs``."""
    sys.argv = hydra_logs_beside(sys.argv, "out", "/logs")
    diagnose_from_config()


@hydra.main(config_path=str(CONFIGS), config_name="dft_trainer", version_base=None)
def diagnose_from_config(config) -> None:
    from dft.train.config import prepare_config
    from dft.train.ref_scoring import data_files, score

    check_config(config)
    out = Path(config.out)
    out.mkdir(parents=True, exist_ok=True)
    single_process_env()
    if not (out / SCORED).exists():  # every rank writes the same sample (atomically): no rank waits for another
        sample_rows(data_files(config), config.get("limit"), out)
    with open_dict(config):
        config.data.train_files = str(out / "rows.parquet")
    if not (out / SCORED).exists():
        score(prepare_config(config, training=False))
    else:
        prepare_config(config, training=False)
    if os.environ["RANK"] == "0":
        report = write_report(config, out / SCORED, out)
        s = report["statistics"]
        print(f"[dft diagnose] {s['target_tokens']} target tokens: mean p {s['mean_target_prob']:.4g}, "
              f"p < 0.1: {100 * s['share_below']['0.1']:.1f}%; prior {report['verdict']['position']}; "
              f"{len(report['warnings'])} warning(s); wrote {out / 'report.md'}")  # fmt: skip
        print(json.dumps({"mean_target_prob": s["mean_target_prob"]}))
