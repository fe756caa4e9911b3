"""What reproducing Table 1 costs, and how close its numbers can come to the paper's: the README's numbers.

    python -m dft plan cost      # per model: parameters, download, checkpoints, training and evaluation GPU-hours
    python -m dft plan spread    # per benchmark: one problem in points, the standard error of avg@16
    python -m dft plan expect    # the paper's Table 1, each cell with the band a faithful rerun lands in (95%)

**Cost** (estimates, not measurements). Parameters are counted from each model's ``config.json`` (its card in
``../shared/models``, or ``--models-dir`` with downloaded models). Training: 8 FLOPs per parameter per token
(forward, backward, and the forward again of gradient checkpointing) at ``TRAIN_MFU`` of an H100's dense bf16
peak, on ``TRAIN_EXAMPLES`` x ``TOKENS_PER_EXAMPLE`` tokens (one epoch of 100k NuminaMath-CoT examples).
Evaluation: 2 FLOPs per parameter per generated token at ``GENERATE_MFU`` of the peak (vLLM decoding, about
20k tokens/s for 1.5B and 4k for 7-8B per GPU), the five benchmarks x 16 samples x ``TOKENS_PER_SAMPLE``.
Disk: the hub's bf16 weights (2 bytes per parameter) and one checkpoint per run (``setting=paper``: bf16
weights, two bf16 AdamW moments and the Hugging Face copy, 8 bytes per parameter; fp32 master weights double it).

**Spread.** avg@k is a mean over problems of the fraction of k samples that are right. Rerunning the same model
with other seeds moves it by its standard error ``sqrt(sum_i p_i (1 - p_i) / k) / n``, where ``p_i`` is the
model's chance on problem i; for a mean accuracy ``a`` this is at most ``sqrt(a (1 - a) / (k n))`` (all ``p_i =
a``), the bound used here. A rerun against the paper's number is a difference of two such estimates: sqrt(2)
times the standard error, and 95% of faithful reruns land within 1.96 times that. Training nondeterminism
(data order, kernels, hardware) adds to it and is not measured here. A published 0 counts as at most 3 correct
in 16 n samples (the rule of three), so its band is not zero.
"""

from __future__ import annotations

import argparse
import math

from dft.eval.benchmarks import BENCHMARKS, PAPER_BENCHMARKS

# An H100's dense bf16 peak, FLOP/s
PEAK_FLOPS = 989e12
TRAIN_MFU = 0.30
GENERATE_MFU = 0.06
TRAIN_EXAMPLES = 100_000
TOKENS_PER_EXAMPLE = 500
SAMPLES = 16
TOKENS_PER_SAMPLE = 1_000
# a run's checkpoint, bytes per parameter: weights, two AdamW moments and the Hugging Face copy, in bf16
CHECKPOINT_BYTES = {"paper": 8, "corrected": 16}
Z95 = 1.96


def parameters(config: dict) -> int:
    """Parameters of a Qwen2 / Llama-style decoder from its ``config.json``: embeddings, an untied LM head, per
    layer the attention projections (q/k/v biases for Qwen2), the gated MLP and two norms, and the final norm."""
    hidden, layers, vocab = config["hidden_size"], config["num_hidden_layers"], config["vocab_size"]
    heads = config["num_attention_heads"]
    kv_heads = config.get("num_key_value_heads", heads)
    head_dim = config.get("head_dim") or hidden // heads
    q, kv = heads * head_dim, kv_heads * head_dim
    attention = hidden * (q + 2 * kv) + q * hidden + (q + 2 * kv if config.get("model_type") == "qwen2" else 0)
    layer = attention + 3 * hidden * config["intermediate_size"] + 2 * hidden
    head = 0 if config.get("tie_word_embeddings") else vocab * hidden
    return layers * layer + vocab * hidden + head + hidden


def train_gpu_hours(params: int, tokens: int = TRAIN_EXAMPLES * TOKENS_PER_EXAMPLE) -> float:
    return 8 * params * tokens / (TRAIN_MFU * PEAK_FLOPS) / 3600


def eval_gpu_hours(params: int, problems: int, samples: int = SAMPLES, tokens: int = TOKENS_PER_SAMPLE) -> float:
    return 2 * params * problems * samples * tokens / (GENERATE_MFU * PEAK_FLOPS) / 3600


def paper_problems() -> int:
    """Problems of the paper's five benchmarks (1,517)."""
    return sum(BENCHMARKS[name].count for name in PAPER_BENCHMARKS)


def cost_rows(models_dir: str | None = None, setting: str = "paper", runs: int = 2, evals: int = 3) -> list[dict]:
    """Table 1's cost per model: ``runs`` trainings (SFT, DFT) and ``evals`` evaluations (Base, SFT, DFT)."""
    from dft.models.cards import load_card
    from dft.models.presets import presets

    rows = []
    for preset in presets().values():
        if preset.card is None:
            continue
        params = parameters(load_card(preset.card, models_dir).config)
        rows.append({
            "model": preset.paper_name, "hub_id": preset.hub_id, "params_b": params / 1e9,
            "download_gb": 2 * params / 1e9, "checkpoints_gb": runs * CHECKPOINT_BYTES[setting] * params / 1e9,
            "train_h": runs * train_gpu_hours(params), "eval_h": evals * eval_gpu_hours(params, paper_problems()),
        })  # fmt: skip
    return rows


def standard_error(problems: int, k: int = SAMPLES, accuracy: float = 0.5) -> float:
    """The bound on avg@k's seed-to-seed standard error, in points, for ``problems`` problems at mean accuracy
    ``accuracy`` (a fraction); 0.5 gives the largest."""
    if problems < 1 or k < 1 or not 0 <= accuracy <= 1:
        raise ValueError(f"need problems >= 1, k >= 1 and 0 <= accuracy <= 1 (got {problems}, {k}, {accuracy})")
    return 100 * math.sqrt(accuracy * (1 - accuracy) / (k * problems))


def rerun_band(problems: int, accuracy_points: float, k: int = SAMPLES) -> float:
    """Half-width, in points, of the 95% band a faithful rerun's avg@k lands in around a published value."""
    return Z95 * math.sqrt(2) * standard_error(problems, k, plausible_accuracy(accuracy_points / 100, problems * k))


def plausible_accuracy(accuracy: float, samples: int) -> float:
    """A published 0 (or 100) is an estimate too: the rule of three keeps the accuracy at least 3 / samples (the
    95% upper bound when no sample of ``samples`` was right) away from 0 and 1."""
    floor = min(3 / samples, 0.5)
    return min(max(accuracy, floor), 1 - floor)


def spread_rows(k: int = SAMPLES) -> list[dict]:
    return [{"benchmark": name, "problems": BENCHMARKS[name].count, "one_problem": 100 / BENCHMARKS[name].count,
             "se_at_50": standard_error(BENCHMARKS[name].count, k),
             "band_at_50": rerun_band(BENCHMARKS[name].count, 50, k)} for name in PAPER_BENCHMARKS]  # fmt: skip


def average_band(values: dict, k: int = SAMPLES) -> float:
    """The 95% rerun band of the mean over the five benchmarks (independent benchmarks: variances add)."""
    counts = {b: BENCHMARKS[b].count for b in PAPER_BENCHMARKS}
    variance = sum(standard_error(n, k, plausible_accuracy(values[b] / 100, n * k)) ** 2 for b, n in counts.items())
    return Z95 * math.sqrt(2 * variance) / len(PAPER_BENCHMARKS)


def expect_lines(table: str = "table1") -> list[str]:
    from dft.report.tables import load_paper_tables

    paper = load_paper_tables()[table]
    lines = [f"| model | method | {' | '.join(PAPER_BENCHMARKS)} | avg |", "|---|---|" + "---|" * 6]
    for model, methods in paper["rows"].items():
        for method, values in methods.items():
            cells = [f"{values[b]:.1f} ± {rerun_band(BENCHMARKS[b].count, values[b]):.1f}" for b in PAPER_BENCHMARKS]
            average = f"{values['avg']:.1f} ± {average_band(values):.1f}"
            lines.append(f"| {model} | {method} | {' | '.join(cells)} | {average} |")
    return lines


def cost_lines(models_dir: str | None, setting: str) -> list[str]:
    rows = cost_rows(models_dir, setting)
    lines = ["| model | parameters | download (GB) | 2 checkpoints (GB) | training (GPU-h) | evaluation (GPU-h) |",
             "|---|---|---|---|---|---|"]  # fmt: skip
    for r in rows:
        lines.append(f"| {r['model']} | {r['params_b']:.2f}B | {r['download_gb']:.1f} | {r['checkpoints_gb']:.0f} | "
                     f"{r['train_h']:.1f} | {r['eval_h']:.1f} |")  # fmt: skip
    total = {key: sum(r[key] for r in rows) for key in ("download_gb", "checkpoints_gb", "train_h", "eval_h")}
    lines.append(f"| total | | {total['download_gb']:.0f} | {total['checkpoints_gb']:.0f} | {total['train_h']:.0f} | "
                 f"{total['eval_h']:.0f} |")  # fmt: skip
    return lines


def spread_lines() -> list[str]:
    lines = ["| benchmark | problems | one problem (points) | standard error at 50% | 95% rerun band at 50% |",
             "|---|---|---|---|---|"]  # fmt: skip
    for r in spread_rows():
        lines.append(f"| {r['benchmark']} | {r['problems']} | {r['one_problem']:.2f} | {r['se_at_50']:.2f} | "
                     f"± {r['band_at_50']:.1f} |")  # fmt: skip
    return lines


def main(argv=None) -> None:
    parser = argparse.ArgumentParser(prog="python -m dft plan", description=__doc__.splitlines()[0],
                                     formatter_class=argparse.ArgumentDefaultsHelpFormatter)  # fmt: skip
    parser.add_argument("what", choices=["cost", "spread", "expect"])
    parser.add_argument("--models-dir", help="folder of model folders with config.json (default: ../shared/models)")
    parser.add_argument("--setting", choices=sorted(CHECKPOINT_BYTES), default="paper", help="checkpoint precision")
    args = parser.parse_args(argv)
    if args.what == "cost":
        lines = cost_lines(args.models_dir, args.setting)
    else:
        lines = spread_lines() if args.what == "spread" else expect_lines()
    print("\n".join(lines))


if __name__ == "__main__":
    main()
