"""Agreement of our grader with hand verdicts and with the Qwen2.5-Math harness's grader on real outputs.

    python benchmarks/grader_agreement.py --qwen-eval DIR [--qwen-python PY] [--out docs/grading_agreement.md]

``DIR`` is the ``evaluation/`` folder of a QwenLM/Qwen2.5-Math checkout; ``PY`` an interpreter with its
requirements (``latex2sympy2`` from that folder, antlr4 4.11.1, sympy 1.12, regex, word2number, pebble), since
they conflict with ours (Hydra pins antlr4 4.9). Their code is imported there, never copied here. Measured:

1. The hand-judged set (``tests/data/grading_hand_judged.jsonl``): agreement with the hand verdicts of our
   grader (``dft.eval.grading``), of math-verify alone (``verify(parse(gold), parse(response))``, its defaults)
   and of the Qwen2.5-Math grader (``extract_answer`` + ``strip_string`` + ``math_equal``).
2. Real Qwen2.5-Math outputs: ``DIR/data/eval_rm_maj_example/math_cot_100.jsonl``, 100 MATH test problems x 8
   samples of a Qwen2.5-Math model (the harness's reward-model majority-vote example; the ``system`` field is
   the Qwen2.5-Math chat prompt), with the harness's own verdicts in ``score``. Our verdicts against the
   recorded ones and against the Qwen grader run here, with every disagreement listed.
"""

import argparse
import json
import logging
import subprocess
import sys
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))

from dft.eval.grading import Grader  # noqa: E402

HAND = REPO / "tests" / "data" / "grading_hand_judged.jsonl"
LIMIT_S = 30  # seconds per pair, for both graders
HEADER = (
    "Written by `python benchmarks/grader_agreement.py --qwen-eval <QwenLM/Qwen2.5-Math>/evaluation --qwen-python "
    "<its interpreter> --out docs/grading_agreement.md`. The Qwen2.5-Math grader is its `parser.extract_answer` + "
    "`strip_string` + `grader.math_equal`, run by its own interpreter (antlr4 4.11.1, sympy 1.12, its latex2sympy2) "
    f"as its `evaluate.py` runs it but with {LIMIT_S} s per pair (its own: 3 s), and ours with {LIMIT_S} s (default "
    "5 s), so that a loaded machine turns no slow verdict into a wrong one. Timeouts are counted below."
)
REAL = Path("data") / "eval_rm_maj_example" / "math_cot_100.jsonl"

# Runs under the Qwen interpreter, in the Qwen evaluation folder: its extraction and grader, as evaluate.py calls
# them through pebble (a timeout counted as wrong), but with LIMIT_S per pair instead of its 3 s, so that a loaded
# machine does not turn slow verdicts into wrong ones. Input and output: JSON lines.
QWEN_SCRIPT = r"""
import json, sys
from concurrent.futures import TimeoutError
from pebble import ProcessPool
sys.path.insert(0, ".")
from parser import extract_answer, strip_string
from grader import math_equal_process
jobs = [json.loads(line) for line in sys.stdin]
params = []
for k, job in enumerate(jobs):
    pred = strip_string(extract_answer(job["response"], "math"))
    gt = extract_answer(job["gt_cot"], "math") if job.get("gt_cot") else strip_string(str(job["gold"]))
    params.append((k, pred, gt))
with ProcessPool(max_workers=2) as pool:
    results = pool.map(math_equal_process, params, timeout=float(sys.argv[1])).result()
    for k in range(len(params)):
        try:
            verdict, timeout = bool(next(results)), False
        except TimeoutError:
            verdict, timeout = False, True
        print(json.dumps({"pred": params[k][1], "correct": verdict, "timeout": timeout}))
"""


def qwen_verdicts(jobs: list[dict], qwen_eval: Path, python: str) -> list[dict]:
    payload = "".join(json.dumps(j) + "\n" for j in jobs)
    out = subprocess.run([python, "-c", QWEN_SCRIPT, str(LIMIT_S)], input=payload, capture_output=True, text=True,
                         cwd=qwen_eval, check=True)  # fmt: skip
    return [json.loads(line) for line in out.stdout.splitlines() if line.startswith("{")]


def math_verify_alone(rows: list[dict]) -> list[bool]:
    """math-verify as commonly used: parse the gold and the whole response with its defaults, then verify."""
    from math_verify import parse, verify

    logging.getLogger("math_verify").setLevel(logging.CRITICAL)
    verdicts = []
    for row in rows:
        try:
            verdicts.append(bool(verify(parse(f"${row['gold']}$"), parse(row["response"]))))
        except Exception:
            verdicts.append(False)
    return verdicts


def agreement(verdicts, truth) -> str:
    same = sum(bool(v) == bool(t) for v, t in zip(verdicts, truth))
    return f"{same}/{len(truth)} ({100 * same / len(truth):.1f}%)"


def hand_section(qwen_eval: Path, python: str, grader: Grader) -> list[str]:
    rows = [json.loads(line) for line in HAND.read_text().splitlines()]
    truth = [r["correct"] for r in rows]
    ours = grader.grade_many([(r["response"], r["gold"]) for r in rows])
    qwen = qwen_verdicts([{"response": r["response"], "gold": r["gold"]} for r in rows], qwen_eval, python)
    alone = math_verify_alone(rows)
    lines = [f"## Hand-judged set ({len(rows)} responses, `{HAND.relative_to(REPO)}`)", "",
             "| grader | agrees with the hand verdicts |", "|---|---|",
             f"| ours (`dft.eval.grading`) | {agreement([v.correct for v in ours], truth)} |",
             f"| math-verify alone | {agreement(alone, truth)} |",
             f"| Qwen2.5-Math harness grader | {agreement([q['correct'] for q in qwen], truth)} |", "",
             f"Timeouts: ours {sum(v.error == 'timeout' for v in ours)}, Qwen {sum(q['timeout'] for q in qwen)}.", "",
             "The set was written together with our grader's fixes and holds the failure kinds they address, so it "
             "favours ours; the real outputs below do not.", "",
             "Where ours disagrees with the hand verdict:", ""]  # fmt: skip
    for r, v in zip(rows, ours):
        if v.correct != r["correct"]:
            lines.append(f"- {r['kind']}: `{v.extracted}` vs gold `{r['gold']}`: hand {r['correct']} ({r['why']})")
    return lines


def real_section(qwen_eval: Path, python: str, grader: Grader) -> list[str]:
    problems = [json.loads(line) for line in (qwen_eval / REAL).read_text().splitlines()]
    jobs = [{"response": code, "gold": p["answer"], "gt_cot": p["gt_cot"], "recorded": score, "idx": p["idx"]}
            for p in problems for code, score in zip(p["code"], p["score"])]  # fmt: skip
    ours = grader.grade_many([(j["response"], j["gold"]) for j in jobs])
    qwen = qwen_verdicts(jobs, qwen_eval, python)
    recorded = [j["recorded"] for j in jobs]
    mine, theirs = [v.correct for v in ours], [q["correct"] for q in qwen]
    lines = [f"## Real Qwen2.5-Math outputs ({len(jobs)} responses: {len(problems)} MATH problems x 8)", "",
             "| comparison | agreement |", "|---|---|",
             f"| ours vs the harness's recorded verdicts (`score`) | {agreement(mine, recorded)} |",
             f"| ours vs the Qwen2.5-Math grader run here | {agreement(mine, theirs)} |",
             f"| Qwen2.5-Math grader run here vs recorded | {agreement(theirs, recorded)} |", "",
             f"Accuracy: ours {sum(mine)}, recorded {sum(recorded)}, Qwen grader here {sum(theirs)} of {len(jobs)}. "
             f"Timeouts: ours {sum(v.error == 'timeout' for v in ours)}, Qwen {sum(q['timeout'] for q in qwen)}.", "",
             "Disagreements between ours and the Qwen2.5-Math grader:", ""]  # fmt: skip
    for j, v, q in zip(jobs, ours, qwen):
        if v.correct != q["correct"]:
            lines.append(f"- problem {j['idx']}: ours `{v.extracted}` -> {v.correct}, Qwen `{q['pred']}` -> "
                         f"{q['correct']}, gold `{j['gold']}`")  # fmt: skip
    return lines


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--qwen-eval", type=Path, required=True, help="QwenLM/Qwen2.5-Math's evaluation/ folder")
    parser.add_argument("--qwen-python", default=sys.executable, help="an interpreter with its requirements")
    parser.add_argument("--out", type=Path, help="also write the markdown here")
    args = parser.parse_args()
    lines = ["# Grader agreement", "", HEADER, ""]
    with Grader(workers=2, timeout_s=LIMIT_S) as grader:
        lines += hand_section(args.qwen_eval, args.qwen_python, grader)
        lines += [""] + real_section(args.qwen_eval, args.qwen_python, grader)
    text = "\n".join(lines)
    print(text)
    if args.out:
        args.out.write_text(text + "\n")


if __name__ == "__main__":
    main()
