"""avg@k, pass@k and maj@k against brute force; the response store's kill-safety."""

import itertools
import json
import random

import pytest

from dft.eval.metrics import avg_at_k, maj_at_k, majority_class, pass_at_k, pass_at_k_unbiased
from dft.eval.store import append_rows, load_rows


def brute_force_pass_at_k(samples: list[bool], k: int) -> float:
    subsets = list(itertools.combinations(range(len(samples)), k))
    return sum(any(samples[i] for i in subset) for subset in subsets) / len(subsets)


@pytest.mark.parametrize("seed", range(20))
def test_unbiased_pass_at_k_equals_enumeration_over_all_k_subsets(seed):
    rng = random.Random(seed)
    n = rng.randint(1, 10)
    samples = [rng.random() < 0.3 for _ in range(n)]
    for k in range(1, n + 1):
        assert pass_at_k_unbiased(n, sum(samples), k) == pytest.approx(brute_force_pass_at_k(samples, k), abs=1e-12)


def test_pass_at_1_is_avg_and_pass_at_n_is_any_correct():
    correct = [[True, False, False, False], [False] * 4, [True] * 4]
    assert pass_at_k(correct, 1) == pytest.approx(avg_at_k(correct)) == pytest.approx(5 / 12)
    assert pass_at_k(correct, 4) == pytest.approx(2 / 3)
    with pytest.raises(ValueError, match="0 < k <= n"):
        pass_at_k(correct, 5)


def numeric_equal(a: str, b: str) -> bool:
    return float(a) == float(b)


def test_majority_groups_equivalent_answers_not_strings():
    # "0.5", ".5" and "0.50" are one answer; None never votes
    assert majority_class(["0.5", "2", ".5", None, "0.50", "2"], numeric_equal) == [0, 2, 4]


def test_maj_at_k_counts_the_correct_class_against_the_largest_wrong_class():
    answers = [
        ["1", "2", "2", "1.0"],  # correct "1" x2 vs wrong "2" x2: a tie is no credit
        ["3", "3.0", "4", "5"],  # correct x2 beats three different wrong answers
        ["7", "8", "8", "8"],  # wrong "8" x3 wins
    ]
    correct = [[True, False, False, True], [True, True, False, False], [True, False, False, False]]
    assert maj_at_k(answers, correct, 4, numeric_equal) == pytest.approx(1 / 3)
    # over the first sample only, each problem's single answer is the majority
    assert maj_at_k(answers, correct, 1, numeric_equal) == pytest.approx(1.0)


def test_store_cuts_a_torn_last_line_and_refuses_duplicates(tmp_path):
    path = tmp_path / "bench.jsonl"
    append_rows(path, [{"id": "a", "sample": 0, "correct": True}, {"id": "a", "sample": 1, "correct": False}])
    with open(path, "a") as f:
        f.write('{"id": "a", "sample": 2, "corr')  # killed in the middle of a write
    assert sorted(load_rows(path)) == [("a", 0), ("a", 1)]
    append_rows(path, [{"id": "a", "sample": 2, "correct": True}])
    assert [json.loads(line)["sample"] for line in path.read_text().splitlines()] == [0, 1, 2]
    append_rows(path, [{"id": "a", "sample": 1, "correct": True}])
    with pytest.raises(ValueError, match="bench.jsonl: line 4: duplicate row for problem 'a' sample 1"):
        load_rows(path)
