"""Sampling metrics over k graded samples per problem: avg@k, pass@k and maj@k.

- avg@k: mean accuracy over all samples of all problems; the number the DFT paper reports (avg@16).
- pass@k: probability that at least one of k samples drawn without replacement from the n generated is
  correct, with the unbiased estimator of Chen et al. 2021 (Codex): ``1 - C(n - c, k) / C(n, k)``.
- mean_acc: what the DFT paper's harness (its ``evaluate.py``) reports: the accuracy of each sample column
  (sample i of every problem) in percent rounded to 0.1, then their mean; as a fraction here, like the others.
  It differs from avg@k by at most 0.05 points (the rounding).
- maj@k: the majority answer among the first k samples is correct. Answers are grouped by mathematical
  equivalence (an ``equivalent(a, b)`` callable, math-verify in the harness), not by string.
"""

from math import comb
from typing import Callable, Sequence


def avg_at_k(correct: Sequence[Sequence[bool]]) -> float:
    """Mean of every sample's correctness, over all problems."""
    flat = [c for samples in correct for c in samples]
    return sum(flat) / len(flat) if flat else 0.0


def mean_acc(correct: Sequence[Sequence[bool]]) -> float:
    """The harness's ``mean_acc`` / 100: per-column accuracy in percent rounded to 0.1 by numpy (as it does), mean
    over columns. Problems with fewer samples are padded with their last verdict, as the harness pads them."""
    import numpy as np

    width = max((len(s) for s in correct), default=0)
    if not width:
        return 0.0
    padded = [list(s) + [s[-1]] * (width - len(s)) if s else [False] * width for s in correct]
    columns = np.round(np.array(padded, dtype=float).mean(axis=0) * 100, decimals=1)
    return float(np.mean(columns)) / 100


def pass_at_k_unbiased(n: int, c: int, k: int) -> float:
    """Chance that k of n samples, c of them correct, contain a correct one (drawn without replacement)."""
    if not 0 < k <= n:
        raise ValueError(f"pass@k needs 0 < k <= n, got k={k}, n={n}")
    if n - c < k:
        return 1.0
    return 1.0 - comb(n - c, k) / comb(n, k)


def pass_at_k(correct: Sequence[Sequence[bool]], k: int) -> float:
    """Mean over problems of the unbiased pass@k."""
    values = [pass_at_k_unbiased(len(s), sum(s), k) for s in correct]
    return sum(values) / len(values) if values else 0.0


def majority_class(answers: Sequence[str | None], equivalent: Callable[[str, str], bool]) -> list[int]:
    """Indices of the largest class of equivalent answers (ties: the class seen first); None never votes.

    Identical strings are grouped without calling ``equivalent``; distinct strings are compared against one
    representative per class, so a problem costs (distinct answers x classes) comparisons at most.
    """
    classes: list[list[int]] = []
    for i, answer in enumerate(answers):
        if answer is None:
            continue
        for members in classes:
            rep = answers[members[0]]
            if answer == rep or equivalent(answer, rep):
                members.append(i)
                break
        else:
            classes.append([i])
    return max(classes, key=len) if classes else []


def maj_at_k(
    answers: Sequence[Sequence[str | None]],
    correct: Sequence[Sequence[bool]],
    k: int,
    equivalent: Callable[[str, str], bool],
) -> float:
    """Share of problems whose majority answer over the first k samples is correct.

    Correct samples are all equivalent to the gold answer, so they form one class without comparisons; only
    wrong answers are compared with each other.
    """
    hits = 0
    for problem_answers, problem_correct in zip(answers, correct):
        pairs = list(zip(problem_answers[:k], problem_correct[:k]))
        n_correct = sum(c for _, c in pairs)
        wrong = [a for a, c in pairs if not c]
        largest_wrong = len(majority_class(wrong, equivalent))
        # a tie between the correct class and a wrong one is counted as a miss (no credit for a coin flip)
        hits += n_correct > largest_wrong
    return hits / len(answers) if answers else 0.0
