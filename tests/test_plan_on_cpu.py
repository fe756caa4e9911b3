"""dft.report.plan: parameter counts against transformers' own models, the standard error of avg@k against simulated
reruns, problem counts against the benchmark files."""

import json

import numpy as np
import pytest
import torch
from conftest import REPO
from transformers import AutoConfig, AutoModelForCausalLM

from dft.eval.benchmarks import PAPER_BENCHMARKS
from dft.models.cards import load_card
from dft.models.presets import paper_presets
from dft.report import plan

PAPER_CARDS = [p.card for p in paper_presets()]

SHARED_DATA = REPO.parent / "shared" / "data"


@pytest.mark.parametrize("card", PAPER_CARDS)
def test_parameters_equal_the_count_of_the_model_transformers_builds(card):
    """The full-size model built on the meta device (no memory, no weights): every parameter counted once."""
    config = AutoConfig.from_pretrained(load_card(card).path)
    with torch.device("meta"):
        model = AutoModelForCausalLM.from_config(config)
    assert plan.parameters(load_card(card).config) == sum(p.numel() for p in model.parameters())


@pytest.mark.parametrize("name", PAPER_BENCHMARKS)
def test_problem_counts_are_the_benchmark_files(name):
    lines = (SHARED_DATA / name / "test.jsonl").read_text().splitlines()
    row = next(r for r in plan.spread_rows() if r["benchmark"] == name)
    assert row["problems"] == len(lines) and row["one_problem"] == pytest.approx(100 / len(lines))


def simulated_sd(p: np.ndarray, k: int, reruns: int = 5_000, seed: int = 0) -> float:
    """Standard deviation, in points, of avg@k over reruns of a model whose chance on problem i is p[i]."""
    correct = np.random.default_rng(seed).binomial(k, p, size=(reruns, p.size))
    return 100 * (correct / k).mean(axis=1).std()


def test_the_standard_error_is_what_simulated_reruns_show_and_bounds_uneven_problems():
    # AIME24: 30 problems, 16 samples, every problem at 50%: 2.28 points; one problem is 3.33
    assert plan.standard_error(30, 16) == pytest.approx(100 * np.sqrt(0.25 / 480))
    assert simulated_sd(np.full(30, 0.5), 16) == pytest.approx(plan.standard_error(30, 16), rel=0.03)
    assert simulated_sd(np.full(500, 0.2), 16) == pytest.approx(plan.standard_error(500, 16, 0.2), rel=0.03)
    uneven = np.random.default_rng(1).beta(0.5, 1.5, size=40)  # most problems hard, a few easy
    assert simulated_sd(uneven, 16) < plan.standard_error(40, 16, uneven.mean())
    # the rerun band: a difference of two such estimates, 95%
    assert plan.rerun_band(30, 50) == pytest.approx(1.96 * np.sqrt(2) * plan.standard_error(30, 16))


def test_a_published_zero_still_has_a_band_and_bad_input_is_refused():
    assert plan.rerun_band(30, 0.0) == pytest.approx(plan.rerun_band(30, 100 * 3 / 480))
    assert plan.rerun_band(30, 0.0) > 0.9  # points; 3 of 480 samples right: 0.6%
    assert plan.rerun_band(30, 100.0) == pytest.approx(plan.rerun_band(30, 0.0))
    with pytest.raises(ValueError, match=r"need problems >= 1"):
        plan.standard_error(0, 16)
    with pytest.raises(ValueError, match=r"0 <= accuracy <= 1"):
        plan.standard_error(30, 16, 1.5)


def test_the_average_band_adds_the_benchmarks_variances():
    values = {b: 50.0 for b in PAPER_BENCHMARKS}
    rows = plan.spread_rows()
    expected = 1.96 * np.sqrt(2 * sum(r["se_at_50"] ** 2 for r in rows)) / len(rows)
    assert plan.average_band(values) == pytest.approx(expected)


def test_costs_follow_the_stated_assumptions():
    rows = {r["model"]: r for r in plan.cost_rows()}
    qwen = rows["Qwen2.5-Math-1.5B"]
    params = qwen["params_b"] * 1e9
    assert qwen["download_gb"] == pytest.approx(2 * params / 1e9)
    assert qwen["train_h"] == pytest.approx(2 * 8 * params * 100_000 * 500 / (0.3 * 989e12) / 3600)
    assert qwen["eval_h"] == pytest.approx(3 * 2 * params * 1517 * 16 * 1000 / (0.06 * 989e12) / 3600)
    assert set(rows) == {"Qwen2.5-Math-1.5B", "Qwen2.5-Math-7B", "LLaMA-3.2-3B", "LLaMA-3.1-8B", "DeepSeekMath-7B"}
    assert plan.cost_rows(setting="corrected")[0]["checkpoints_gb"] == 2 * plan.cost_rows()[0]["checkpoints_gb"]


def test_expect_prints_every_cell_of_the_papers_table_with_its_band(capsys):
    plan.main(["expect"])
    lines = capsys.readouterr().out.splitlines()
    paper = json.loads((REPO / "dft" / "report" / "paper_tables.json").read_text())["table1"]["rows"]
    assert len(lines) == 2 + sum(len(methods) for methods in paper.values())
    dft_row = next(line for line in lines if line.startswith("| Qwen2.5-Math-1.5B | DFT |"))
    aime = paper["Qwen2.5-Math-1.5B"]["DFT"]["aime24"]
    assert f"{aime:.1f} ± {plan.rerun_band(30, aime):.1f}" in dft_row
