"""How strong a starting model's prior on fine-tuning data is, from its per-target-token log-probs: the statistics
and the verdict of ``python -m dft diagnose`` (:mod:`dft.report.diagnose`), without torch.

DFT scales each target token's SFT gradient by the token's own probability p (held constant). Where the model
already gives the targets high p it behaves like SFT that ignores the few tokens it finds unlikely; where most
targets have low p, DFT trains them at a fraction of SFT's weight. "Beyond Log Likelihood" (arXiv 2510.00526)
finds prior-leaning objectives (DFT, -p) win on a strong prior and lose on a weak one. The thresholds below are
that finding made operational, a hypothesis to check with ``recipes/continuum``, not a measured law.
"""

from __future__ import annotations

import numpy as np

QUANTILES = (0.01, 0.05, 0.1, 0.25, 0.5, 0.75, 0.9, 0.99)
LOW_P = (0.1, 0.01)  # the shares of target tokens below these probabilities are reported
STRUCTURAL_LOW_P = 0.1  # a structural token whose mean p is below this is one DFT would hardly learn
# mean_target_prob at or above STRONG (with few unlikely tokens): strong prior; below WEAK: weak prior
STRONG, WEAK = 0.6, 0.3
STRONG_MAX_UNLIKELY = 0.2  # a strong prior also has at most this share of target tokens with p < 0.1
HISTOGRAM_BINS = 20  # equal bins of p over [0, 1]
ALPHAS = (0.25, 0.5)  # the prob_power exponents the verdict speaks about (0 is SFT's gradient, 1 is DFT's)


def flat_probs(log_probs: list) -> np.ndarray:
    """All target tokens' p = exp(log p), rows concatenated, in float64."""
    pieces = [np.asarray(row, dtype=np.float64) for row in log_probs if len(row)]
    return np.exp(np.concatenate(pieces)) if pieces else np.zeros(0)


def target_statistics(log_probs: list) -> dict:
    """The distribution of the target tokens' p and what DFT's loss and gradient scale are at step 0.

    ``mean_target_prob`` is the token-weighted mean of p: DFT's gradient is sum_t p_t grad log p_t, SFT's is
    sum_t grad log p_t, so with comparable per-token gradients DFT's is about ``mean_target_prob`` times SFT's.
    """
    p = flat_probs(log_probs)
    if p.size == 0:
        raise ValueError("no target tokens: every row's loss mask is empty (is data.max_length too small?)")
    log_p = np.log(np.clip(p, 1e-300, None))
    counts, edges = np.histogram(p, bins=HISTOGRAM_BINS, range=(0.0, 1.0))
    return {
        "rows": len(log_probs),
        "target_tokens": int(p.size),
        "mean_target_prob": float(p.mean()),
        "quantiles": {f"{q:g}": float(v) for q, v in zip(QUANTILES, np.quantile(p, QUANTILES))},
        "share_below": {f"{t:g}": float((p < t).mean()) for t in LOW_P},
        "sft_loss": float(-log_p.mean()),
        "dft_loss": float(-(p * log_p).mean()),
        "histogram": {"edges": edges.tolist(), "counts": counts.tolist()},
    }


def find_runs(ids: list[int], pattern: list[int]) -> list[list[int]]:
    """The positions of every occurrence of the token sequence ``pattern`` in ``ids``."""
    n = len(pattern)
    return [list(range(i, i + n)) for i in range(len(ids) - n + 1) if n and ids[i : i + n] == pattern]


def find_text(pieces: list[str], text: str) -> list[list[int]]:
    """The token positions covering every occurrence of ``text`` in the concatenation of the tokens' ``pieces``
    (a marker such as ``\\boxed`` is tokenized differently after a space, a digit or a brace)."""
    ends = np.cumsum([len(piece) for piece in pieces])
    joined, found, start = "".join(pieces), [], 0
    while (at := joined.find(text, start)) >= 0:
        first, last = (
            int(np.searchsorted(ends, at, side="right")),
            int(np.searchsorted(ends, at + len(text) - 1, side="right")),
        )
        found.append(list(range(first, last + 1)))
        start = at + len(text)
    return found


def structural_entry(name: str, text: str, occurrences: list[list[int]], log_probs: list) -> dict:
    """p under the model of a structural token (or a marker's tokens) at its occurrences among the targets
    (``occurrences[row]``: the token positions of each occurrence): the mean p of its tokens, the smallest p and
    the share of occurrences whose mean p is below STRUCTURAL_LOW_P."""
    per_occurrence = [np.exp(np.asarray(lps, dtype=np.float64)[positions])
                      for found, lps in zip(occurrences, log_probs) for positions in found]  # fmt: skip
    entry = {"name": name, "text": text, "occurrences": len(per_occurrence)}
    if per_occurrence:
        means = np.array([o.mean() for o in per_occurrence])
        entry |= {"mean_p": float(means.mean()), "min_p": float(min(o.min() for o in per_occurrence)),
                  "share_below": float((means < STRUCTURAL_LOW_P).mean())}  # fmt: skip
    return entry


def structural_warning(entry: dict, end_token: bool, end_names: str = "eos,end_of_turn") -> str | None:
    """What DFT would do with a structural token, and the fix (``end_names``: the end tokens the tokenizer has, for
    ``loss.full_weight_tokens``); None where nothing needs saying."""
    name = f"{entry['name']} ({entry['text']!r})"
    if entry["occurrences"] == 0:  # an end token the format does not train (see never_ends)
        return None
    if entry["mean_p"] >= STRUCTURAL_LOW_P:
        return None
    if end_token:
        risk, fix = "a model that never stops", f"loss.full_weight_tokens=[{end_names}] (SFT's weight on them)"
    else:
        risk, fix = "a model that never writes the answer format", "loss.weight_floor=0.1 (every weight >= 0.1)"
    return (
        f"{name}: mean p {entry['mean_p']:.3g} under the starting model, so DFT trains it at about "
        f"{entry['mean_p']:.2g} of SFT's weight and may never learn it ({risk}); fix: {fix}"
    )


def never_ends(entries: list[dict]) -> str | None:
    """The warning where no end token (eos, end of turn) is ever a target: no loss teaches the model to stop."""
    if entries and not any(e["occurrences"] for e in entries):
        names = ", ".join(f"{e['name']} ({e['text']!r})" for e in entries)
        return (f"no end token is ever a target ({names}): no loss, SFT's or DFT's, teaches the model to stop; "
                "check the data's format (data.format) against the model's chat template")  # fmt: skip
    return None


def position(stats: dict) -> str:
    """``strong``, ``weak`` or ``intermediate``: where the data sits on the prior-strength continuum."""
    mean, unlikely = stats["mean_target_prob"], stats["share_below"]["0.1"]
    if mean >= STRONG and unlikely <= STRONG_MAX_UNLIKELY:
        return "strong"
    return "weak" if mean < WEAK else "intermediate"


def learning_rate_note(stats: dict) -> str:
    mean = stats["mean_target_prob"]
    return (f"DFT's gradient is about {mean:.3g} x SFT's at step 0 (token-weighted mean p), and its loss reads "
            f"{stats['dft_loss']:.3g} against SFT's {stats['sft_loss']:.3g}. A smaller loss is not a smaller "
            f"learning signal on the tokens the model already predicts; the paper keeps SFT's learning rate. Raising "
            f"it by 1/mean p = {1 / mean:.3g}x restores the average step size but not the signal on the unlikely "
            "tokens, which DFT down-weights by design.")  # fmt: skip


EXPECT = {
    "strong": (
        "DFT >= SFT by the hypothesis (at toy scale SFT still won, by less): the model already puts most "
        "mass on the targets, and DFT sharpens that prior "
        "without the 1/p pull of the few unlikely tokens (often noise or paraphrase) that SFT follows",
        "prob_power at alpha {a} weights tokens between SFT and DFT (at toy scale it beat both on strong priors)",
        "ASFT (DFT + KL to the start) keeps DFT's behaviour and limits drift; a safe choice here",
    ),
    "weak": (
        "SFT > DFT likely: most targets are unlikely under the model, and DFT trains them at p of SFT's "
        "weight, so it learns the new tokens (including format and end tokens) slowly or not at all",
        "prob_power at alpha {a} keeps more of SFT's weight on unlikely tokens; expect it between "
        "DFT and SFT, the closer to SFT the smaller alpha",
        "ASFT anchors to a starting model that does not know the data: no help for learning it",
    ),
    "intermediate": (
        "no clear winner expected: DFT helps where the prior is right and slows learning where it "
        "is not; run SFT and DFT on a small slice and compare",
        "prob_power at alpha {a} is the hedge between the two",
        "ASFT adds a KL anchor to DFT: useful if DFT drifts, no help on unlikely targets",
    ),
}


def verdict(stats: dict, structural: list[dict]) -> dict:
    """The data's place on the continuum, what to expect of each loss and why, stated as a hypothesis."""
    where = position(stats)
    dft, power, asft = EXPECT[where]
    evidence = (f"mean target p {stats['mean_target_prob']:.3g}; {100 * stats['share_below']['0.1']:.1f}% of "
                f"target tokens have p < 0.1 and {100 * stats['share_below']['0.01']:.1f}% p < 0.01; median p "
                f"{stats['quantiles']['0.5']:.3g}")  # fmt: skip
    weak_structure = [e["name"] for e in structural if e.get("mean_p", 1.0) < STRUCTURAL_LOW_P and e["occurrences"]]
    return {
        "position": where,
        "evidence": evidence,
        "thresholds": {"strong": f"mean p >= {STRONG} and share(p < 0.1) <= {STRONG_MAX_UNLIKELY}",
                       "weak": f"mean p < {WEAK}"},  # fmt: skip
        "expect": {"SFT vs DFT": dft, **{f"prob_power alpha={a}": power.format(a=a) for a in ALPHAS}, "ASFT": asft},
        "structural_tokens_at_risk": weak_structure,
        "learning_rate": learning_rate_note(stats),
        "hypothesis": ("Beyond Log Likelihood (arXiv 2510.00526): probability-based objectives win with a strong "
                       "prior and lose with a weak one. The thresholds are ours: at toy scale (recipes/continuum, "
                       "docs/when_dft_helps.md) the weak-prior prediction held and the strong-prior one did not (SFT "
                       "beat DFT at every strength, by less as p grew), so read a strong verdict as 'the gap will be "
                       "small', and check on a slice of your data"),
    }  # fmt: skip
