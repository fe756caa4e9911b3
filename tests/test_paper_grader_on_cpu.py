"""``grader=paper``: the DFT paper's evaluation harness's verdicts (dft/eval/paper_parser.py, paper_grader.py).

Every case's verdict below is the official harness's (``yongliang-wu/DFT`` ``math_evaluation``: its
``extract_answer``, ``parse_ground_truth`` and ``math_equal`` with sympy 1.12 and antlr4 4.11.1), run once outside
this project; the id names the rule the case exercises. Also: the ``$\\$18.90$`` extraction fix of our grader,
regrading a saved evaluation with either grader, ``mean_acc``, the grader in tables and in preflight.
"""

import json

import pytest
from omegaconf import OmegaConf

from dft.cli.validate import evaluation
from dft.eval.answers import extract_answer
from dft.eval.grade_file import regrade
from dft.eval.grading import Grader
from dft.eval.metrics import avg_at_k, mean_acc
from dft.report.tables import build_table

B = "So the final answer is $\\boxed{%s}$."

# (rule, response, gold, benchmark, the official harness's verdict)
CASES = [
    ("extract-open-last-box", "We get $\\boxed{42", "42", "math500", True),
    ("extract-last-box-wins", "First $\\boxed{1}$, then $\\boxed{2}$.", "2", "math500", True),
    ("extract-box-without-brace", "so $\\boxed 7$ it is", "7", "math500", True),
    (
        "extract-minerva-final-answer",
        "Final answer: The final answer is $3 \\times 10^{8}$. I hope it is correct.",
        "3 \\times 10^{8}",
        "minerva_math",
        True,
    ),
    ("extract-the-answer-is", "Thus the answer is 12.", "12", "math500", True),
    ("extract-last-number", "We find 3 and then 5", "5", "math500", True),
    ("extract-last-number-commas", "the total is 10,000 apples", "10000", "math500", True),
    ("extract-escaped-dollar", "The answer is $\\$18.90$.", "18.90", "math500", True),
    (
        "e-notation-times-ten-rejected",
        "So the final answer is $\\boxed{4.5 \\times 10^{33}}$.",
        "4.5e33",
        "minerva_math",
        False,
    ),
    ("e-notation-same-form", "So the final answer is $\\boxed{4.5e33}$.", "4.5e33", "minerva_math", True),
    ("multi-answer-reordered-rejected", "So the final answer is $\\boxed{-2, 1}$.", "1, -2", "olympiadbench", False),
    ("multi-answer-same-order", "So the final answer is $\\boxed{1, -2}$.", "1, -2", "olympiadbench", True),
    (
        "multi-answer-first-element-only",
        "So the final answer is $\\boxed{1, 5}$.",
        "1, 3, 9, 11",
        "olympiadbench",
        False,
    ),
    ("percent-gold-over-100", "So the final answer is $\\boxed{0.25}$.", "25", "math500", True),
    ("percent-gold-times-100", "So the final answer is $\\boxed{2500}$.", "25", "math500", True),
    ("percent-sign-dropped", "So the final answer is $\\boxed{25\\%}$.", "25", "math500", True),
    ("tolerance-1e-4-inside", "So the final answer is $\\boxed{0.3333}$.", "\\frac{1}{3}", "math500", True),
    ("tolerance-1e-4-outside", "So the final answer is $\\boxed{0.33}$.", "\\frac{1}{3}", "math500", False),
    ("tolerance-decimal", "So the final answer is $\\boxed{2.00015}$.", "2", "math500", True),
    ("thousands-braces-rejected", "So the final answer is $\\boxed{10{,}000}$.", "10000", "math500", False),
    ("thousands-comma", "So the final answer is $\\boxed{10,000}$.", "10000", "math500", True),
    ("unit-text-stripped", "So the final answer is $\\boxed{5\\text{ cm}}$.", "5", "math500", True),
    ("unit-word-stripped", "So the final answer is $\\boxed{5 meters}$.", "5", "math500", True),
    ("unit-kept-for-minerva", "So the final answer is $\\boxed{5 meters}$.", "5", "minerva_math", False),
    ("degrees-stripped", "So the final answer is $\\boxed{30^\\circ}$.", "30", "olympiadbench", True),
    ("dollar-stripped", "So the final answer is $\\boxed{\\$5}$.", "5", "math500", True),
    ("number-word", "So the final answer is $\\boxed{\\text{five}}$.", "5", "math500", True),
    ("text-answer", "So the final answer is $\\boxed{\\text{(C)}}$.", "\\text{(C)}", "math500", True),
    ("variable-prefix", "So the final answer is $\\boxed{x = 3}$.", "3", "math500", True),
    ("equation-prefix-short", "So the final answer is $\\boxed{k=\\frac{1}{2}}$.", "\\frac12", "math500", True),
    ("frac-slash", "So the final answer is $\\boxed{3/4}$.", "\\frac{3}{4}", "math500", True),
    ("dfrac", "So the final answer is $\\boxed{\\dfrac{3}{4}}$.", "\\frac{3}{4}", "math500", True),
    (
        "symbolic-sqrt",
        "So the final answer is $\\boxed{\\frac{\\sqrt{3}}{2}}$.",
        "\\frac{1}{2}\\sqrt{3}",
        "math500",
        True,
    ),
    ("symbolic-sum-order", "So the final answer is $\\boxed{1+\\sqrt{2}}$.", "\\sqrt{2}+1", "math500", True),
    ("symbolic-wrong", "So the final answer is $\\boxed{1-\\sqrt{2}}$.", "\\sqrt{2}+1", "math500", False),
    ("pi-is-a-symbol", "So the final answer is $\\boxed{904.779}$.", "288\\pi", "math500", False),
    ("pi-symbolic", "So the final answer is $\\boxed{288\\pi}$.", "288 \\pi", "math500", True),
    ("interval-bracket-kind-ignored", "So the final answer is $\\boxed{(1, 2]}$.", "(1, 2)", "math500", True),
    ("interval-elements", "So the final answer is $\\boxed{[0, \\frac{1}{2}]}$.", "[0, 0.5]", "math500", True),
    ("tuple-elements", "So the final answer is $\\boxed{(1, 2, 3)}$.", "(1,2,3)", "math500", True),
    ("tuple-wrong", "So the final answer is $\\boxed{(1, 3, 2)}$.", "(1,2,3)", "math500", False),
    (
        "matrix-bmatrix",
        "So the final answer is $\\boxed{\\begin{bmatrix} 1 & 2 \\\\ 3 & 4 \\end{bmatrix}}$.",
        "\\begin{pmatrix} 1 & 2 \\\\ 3 & 4 \\end{pmatrix}",
        "math500",
        True,
    ),
    (
        "matrix-entries",
        "So the final answer is $\\boxed{\\begin{pmatrix} 0.5 \\\\ 1 \\end{pmatrix}}$.",
        "\\begin{pmatrix} \\frac{1}{2} \\\\ 1 \\end{pmatrix}",
        "math500",
        True,
    ),
    ("equation-both-sides", "So the final answer is $\\boxed{y = 2x + 1}$.", "y=1+2x", "math500", True),
    ("aime-integer", "So the final answer is $\\boxed{033}$.", "33", "aime24", True),
    ("amc-float-gold", "So the final answer is $\\boxed{27}$.", "27.0", "amc23", True),
    ("empty-box", "so $\\boxed{}$", "3", "math500", False),
]


@pytest.fixture(scope="module")
def paper_verdicts():
    with Grader(workers=2, grader="paper") as grader:
        verdicts = grader.grade_many([(response, gold, bench) for _, response, gold, bench, _ in CASES])
    return {case[0]: verdict for case, verdict in zip(CASES, verdicts)}


@pytest.mark.parametrize("rule,response,gold,bench,official", CASES, ids=[c[0] for c in CASES])
def test_paper_grader_gives_the_official_verdict(paper_verdicts, rule, response, gold, bench, official):
    verdict = paper_verdicts[rule]
    assert verdict.correct is official, verdict
    assert verdict.error is None


def test_paper_extraction_records_its_rule(paper_verdicts):
    assert paper_verdicts["extract-open-last-box"].rule == "open_box"
    assert paper_verdicts["extract-last-box-wins"].rule == "boxed"
    assert paper_verdicts["extract-minerva-final-answer"].rule == "final_answer_hope"
    assert paper_verdicts["extract-the-answer-is"].rule == "answer_is"
    assert paper_verdicts["extract-last-number"].rule == "last_number"
    assert paper_verdicts["empty-box"].extracted is None  # an empty prediction is no answer: wrong


def test_paper_grader_waits_three_seconds_and_a_timeout_is_wrong():
    assert Grader(grader="paper").timeout_s == 3.0 and Grader().timeout_s == 5.0
    with Grader(grader="paper", timeout_s=0.002) as grader:
        verdict = grader.grade_many([(B % "\\frac{\\sqrt{3}}{2}+\\sqrt{12}", "\\frac{5}{2}\\sqrt{3}")])[0]
    assert (verdict.correct, verdict.error) == (False, "timeout")


def test_an_unknown_grader_is_refused():
    with pytest.raises(ValueError, match="grader: unknown 'official'"):
        Grader(grader="official")
    config = OmegaConf.load("configs/eval.yaml")
    config.model, config.grader = "Qwen/Qwen2.5-Math-1.5B", "official"
    assert any(e.startswith("grader: unknown 'official'") for e in evaluation(config))


def test_our_extraction_reads_an_escaped_dollar_inside_math():
    assert extract_answer("The answer is $\\$18.90$.") == ("\\$18.90", "the-answer-is")
    with Grader() as grader:
        assert grader.grade_many([("The answer is $\\$18.90$.", "18.90")])[0].correct


def test_regrading_changes_only_the_verdicts(tmp_path):
    saved = tmp_path / "minerva_math.jsonl"  # the file name gives the benchmark, as dft.eval writes it
    rows = [
        {"id": "p1", "sample": 0, "gold": "4.5e33", "response": B % "4.5 \\times 10^{33}", "finish": "stop"},
        {"id": "p2", "sample": 1, "gold": "12", "response": "We get $\\boxed{12", "finish": "length"},
        {"id": "p3", "sample": 0, "gold": "3", "response": B % "3", "finish": "stop", "extra": [1, 2]},
    ]
    saved.write_text("".join(json.dumps(r) + "\n" for r in rows))
    graded = {}
    for name in ("ours", "paper"):
        regrade(saved, tmp_path / f"{name}.jsonl", None, 1, name)
        graded[name] = [json.loads(line) for line in (tmp_path / f"{name}.jsonl").read_text().splitlines()]
    verdict_fields = {"correct", "extracted", "extracted_by", "error", "grader"}
    for before, ours, paper in zip(rows, graded["ours"], graded["paper"]):
        for after in (ours, paper):
            assert {k: v for k, v in after.items() if k not in verdict_fields} == before
    assert [r["correct"] for r in graded["ours"]] == [True, False, True]  # e-notation yes, open box no
    assert [r["correct"] for r in graded["paper"]] == [False, True, True]  # e-notation no, open box yes
    assert {r["grader"] for r in graded["paper"]} == {"paper"}


def test_mean_acc_is_the_harness_mean_of_rounded_sample_columns():
    correct = [[True, False], [False, False], [False, True]]  # columns 1/3 and 1/3: 33.3 % each, not 33.33
    assert mean_acc(correct) == pytest.approx(0.333)
    assert avg_at_k(correct) == pytest.approx(1 / 3)
    assert abs(mean_acc(correct) - avg_at_k(correct)) <= 0.0005


def summary(grader: str | None) -> dict:
    from dft.eval.benchmarks import BENCHMARKS

    benchmarks = {b: {"avg@16": 0.5, "mean_acc": 0.5, "problems": BENCHMARKS[b].count, "samples_per_problem": 16}
                  for b in ("math500", "minerva_math", "olympiadbench", "aime24", "amc23")}  # fmt: skip
    sampling = {"n": 16, "temperature": 1.0, "top_p": 1.0, "max_new_tokens": 4096, "seed": 0}
    out = {"prompt_template": "qwen-boxed", "sampling": sampling, "benchmarks": benchmarks}
    return {**out, "grader": grader} if grader else out


def test_tables_refuse_two_graders_and_say_which_they_show():
    runs = {"Qwen2.5-Math-1.5B/Base": summary("paper"), "Qwen2.5-Math-1.5B/DFT": summary(None)}
    where = {"Qwen2.5-Math-1.5B/Base": "a/summary.json", "Qwen2.5-Math-1.5B/DFT": "b/summary.json"}
    with pytest.raises(ValueError, match=r"paper: a/summary.json.*ours: b/summary.json|ours: b/summary.json.*paper"):
        build_table("table1", runs, where=where)
    runs["Qwen2.5-Math-1.5B/DFT"] = summary("paper")
    assert "mean_acc %, graded by paper" in build_table("table1", runs, metric="mean_acc").splitlines()[0]


def test_a_run_regraded_by_the_other_grader_gets_its_own_summary(tmp_path):
    from dft.eval.regrade import regrade_run

    rows = [{"id": f"p{i}", "sample": s, "gold": "4.5e33", "response": B % "4.5 \\times 10^{33}", "finish": "stop",
             "stop": None, "extracted": "x", "extracted_by": "boxed", "correct": True, "error": None}
            for i in range(2) for s in range(2)]  # fmt: skip
    (tmp_path / "minerva_math.jsonl").write_text("".join(json.dumps(r) + "\n" for r in rows))
    original = {"grader": "ours", "model": "m", "commit": "c", "average": {},
                "benchmarks": {"minerva_math": {"problems": 2, "samples_per_problem": 2, "avg@2": 1.0,
                                                "prompts_cut_by_context": 0}}}  # fmt: skip
    (tmp_path / "summary.json").write_text(json.dumps(original))
    summary = regrade_run(tmp_path, tmp_path / "regraded-paper", "paper", 1)
    metrics = summary["benchmarks"]["minerva_math"]
    assert (summary["grader"], summary["model"], summary["regraded_from"]) == ("paper", "m", str(tmp_path))
    assert (metrics["avg@2"], metrics["mean_acc"], metrics["problems"], metrics["prompts_cut_by_context"]) == (
        0,
        0,
        2,
        0,
    )
    assert json.loads((tmp_path / "summary.json").read_text()) == original  # the original is left alone
