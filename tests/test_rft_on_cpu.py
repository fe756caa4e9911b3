"""Rejection sampling and DPO pairs end to end on the tiny Base of tests/tiny_base.py.

The accepted samples and pairs then train in the Table 3 quickstart test (RFT, iw-SFT, DFT and DPO rows).
"""

import json

import pandas as pd
from conftest import run_module

from dft.eval.grading import grade
from dft.rl.pairs import pair_indices


def run_rft(model, problems, out, *overrides):
    args = [f"model={model}", f"input={problems}", f"out={out}"]
    # 16 samples per problem at temperature 0.7 (the paper: 4 at 1.0) so the tiny model surely gets some right
    args += ["limit=16", "sampling.n=16", "sampling.temperature=0.7", "sampling.max_new_tokens=48"]
    result = run_module("data rft", [*args, "grading.workers=1", *overrides])
    assert result.returncode == 0, result.stdout[-3000:] + result.stderr[-5000:]
    return json.loads((out / "report.json").read_text())


def test_rft_keeps_verified_samples_pairs_them_and_reports_counts_that_add_up(tiny_base, tmp_path):
    (assets, base), out = tiny_base, tmp_path / "rft"
    report = run_rft(base, assets.test_jsonl, out)
    samples = [json.loads(line) for line in (out / "samples.jsonl").read_text().splitlines()]
    assert report["samples"] == len(samples) == 256
    assert report["accepted"] + report["rejected"] + report["grading_errors"] == 256
    histogram = {int(k): v for k, v in report["problems_by_correct_samples"].items()}
    assert sum(histogram.values()) == 16 and sum(k * v for k, v in histogram.items()) == report["accepted"]
    assert report["problems_without_a_correct_sample"] == histogram.get(0, 0)
    assert 2 <= report["accepted"] < 256, "the trained tiny model should get some, not all, samples right"

    rft = pd.read_parquet(out / "rft.parquet")
    assert len(rft) == report["accepted"]
    assert all(grade(m[1]["content"], a).correct for m, a in zip(rft["messages"], rft["gold"]))

    pairs = pd.read_parquet(out / "pairs.parquet")
    by_problem = {}
    for s in samples:
        by_problem.setdefault(s["id"], []).append(s["correct"])
    assert len(pairs) == report["dpo_pairs"] == sum(sum(c) * (len(c) - sum(c)) for c in by_problem.values())
    for chosen, rejected, answer in zip(pairs["chosen"], pairs["rejected"], pairs["gold"]):
        assert grade(chosen[0]["content"], answer).correct and not grade(rejected[0]["content"], answer).correct

    # started again, nothing is regenerated and the outputs are the same
    assert run_rft(base, assets.test_jsonl, out) == report
    assert [json.loads(line) for line in (out / "samples.jsonl").read_text().splitlines()] == samples


def test_pair_policy_is_every_combination_or_a_seeded_sample():
    import random

    assert pair_indices([0, 2], [1, 3], None, random.Random(0)) == [(0, 1), (0, 3), (2, 1), (2, 3)]
    one = pair_indices([0, 2], [1, 3], 1, random.Random(5))
    assert len(one) == 1 and one == pair_indices([0, 2], [1, 3], 1, random.Random(5))
    assert pair_indices([0], [], None, random.Random(0)) == []
