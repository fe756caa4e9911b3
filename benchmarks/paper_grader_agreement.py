"""Agreement of ``grader=paper`` with the DFT paper's own evaluation harness, on cases built from real golds.

    python benchmarks/paper_grader_agreement.py build --out /tmp/paper_cases.jsonl [--real MATH_COT_100.jsonl]
    python benchmarks/paper_grader_agreement.py official /tmp/paper_cases.jsonl --harness DIR --python PY
    python -m dft grade /tmp/paper_cases.jsonl --grader paper --out /tmp/paper_ours.jsonl
    python benchmarks/paper_grader_agreement.py compare /tmp/paper_cases.official.jsonl /tmp/paper_ours.jsonl

``build`` writes (response, gold, benchmark) lines: every gold of the five paper benchmarks in
``../shared/data`` (sampled per benchmark), each answered in several ways that exercise one rule of the harness
(the gold itself, e-notation, reordered multi-answers, percent, rounding, an open last box, units, text, "the
answer is", a wrong number, plain fractions, thousands separators, a variable prefix, brackets), plus, with
``--real``, the harness's own 100 x 8 real Qwen2.5-Math responses (``data/eval_rm_maj_example/math_cot_100.jsonl``
of its ``math_evaluation``). ``official`` runs the harness's ``parser.extract_answer``, ``parse_ground_truth`` and
``grader.math_equal`` in ``PY`` (an interpreter with its pinned sympy 1.12, antlr4 4.11.1, its bundled latex2sympy2,
regex, word2number and pebble) on ``DIR`` (its ``math_evaluation`` folder) with its 3 s limit per answer, and
writes ``official_correct`` beside each case; their code runs there and is never copied here. ``compare`` prints
the agreement per variant and lists the disagreements.
"""

import argparse
import json
import random
import re
import subprocess
import sys
from collections import Counter
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))

from dft.eval.benchmarks import load_benchmark  # noqa: E402

PAPER_BENCHMARKS = ("math500", "minerva_math", "olympiadbench", "aime24", "amc23", "math_full_test")
HARNESS_NAMES = {"math500": "math_oai", "math_full_test": "math"}  # our benchmark name -> the harness's data_name
E_NOTATION_RE = re.compile(r"^(-?\d+(?:\.\d+)?)e([+-]?\d+)$")
INTEGER_RE = re.compile(r"^-?\d+$")
DECIMAL_RE = re.compile(r"^-?\d+\.\d+$")
FRACTION_RE = re.compile(r"^(-?)\\[dt]?frac\{(\d+)\}\{(\d+)\}$")


def boxed(answer: str, lead: str = "Let me work through it step by step.\n") -> str:
    return f"{lead}So the final answer is $\\boxed{{{answer}}}$."


def variants(gold: str, rng: random.Random) -> list[tuple[str, str]]:
    """(variant name, response) pairs for one gold; each exercises one of the harness's rules."""
    out = [
        ("same", boxed(gold)),
        ("open_box", f"The answer is therefore $\\boxed{{{gold}"),
        ("unit", boxed(gold + "\\text{ cm}")),
    ]
    out += [
        ("answer_is", f"Thus the answer is {gold}."),
        ("prefix", boxed(f"x = {gold}")),
        ("left_right", boxed(f"\\left({gold}\\right)")),
    ]
    if m := E_NOTATION_RE.match(gold):
        out += [
            ("e_notation", boxed(f"{m[1]} \\times 10^{{{int(m[2])}}}")),
            ("e_notation_plain", boxed(f"{m[1]}e{m[2]}")),
        ]
    if "," in gold:
        parts = [p.strip() for p in gold.split(",")]
        out.append(("reordered", boxed(", ".join(reversed(parts)))))
    if INTEGER_RE.match(gold):
        n = int(gold)
        out += [("wrong", boxed(str(n + 1))), ("percent", boxed(f"{n}\\%")), ("times_100", boxed(str(n * 100)))]
        out += [("over_100", boxed(repr(n / 100))), ("last_number", f"We get {n - 1} first, and finally {n}")]
        if abs(n) >= 1000:
            out += [("thousands", boxed(f"{n:,}".replace(",", "{,}"))), ("thousands_comma", boxed(f"{n:,}"))]
        out.append(
            ("words", boxed("\\text{" + ["zero", "one", "two", "three", "four", "five"][n] + "}"))
            if 0 <= n <= 5
            else ("dollar", boxed(f"\\${n}"))
        )
    if DECIMAL_RE.match(gold):
        x = float(gold)
        out += [("tolerance", boxed(f"{x * (1 + 5e-5):.8g}")), ("tolerance_out", boxed(f"{x * (1 + 1e-3):.8g}"))]
    if m := FRACTION_RE.match(gold):
        sign, a, b = m.groups()
        out += [("slash", boxed(f"{sign}{a}/{b}")), ("decimal", boxed(f"{float(sign + a) / float(b):.4f}"))]
        out.append(("decimal_coarse", boxed(f"{float(sign + a) / float(b):.2f}")))
    if gold.startswith(("(", "[")) and gold.endswith((")", "]")):
        out.append(("brackets", boxed("[" + gold[1:-1] + "]")))
    if "pmatrix" in gold:
        out.append(("bmatrix", boxed(gold.replace("pmatrix", "bmatrix"))))
    if "\\frac" in gold:
        out.append(("dfrac", boxed(gold.replace("\\frac", "\\dfrac"))))
    if "\\sqrt" in gold:
        out.append(("sqrt_brace", boxed(re.sub(r"\\sqrt\{(\w)\}", r"\\sqrt\1", gold))))
    return out + symbolic_variants(gold)


def symbolic_variants(gold: str) -> list[tuple[str, str]]:
    """Answers that only the symbolic rule can judge: the gold's value as a decimal, its terms swapped, its
    products written with ``\\cdot``, plus one, with spaces, in ``\\mathrm{}`` units."""
    out = [
        ("plus_one", boxed(f"{gold}+1")),
        ("spaced", boxed(" ".join(gold))),
        ("mathrm_unit", boxed(f"{gold} \\mathrm{{m}}")),
    ]
    if value := _value(gold):
        out += [("value_6", boxed(f"{value:.6g}")), ("value_3", boxed(f"{value:.3g}"))]
    if m := re.match(r"^([^+]+?)\+([^+]+)$", gold):
        out.append(("swap_sum", boxed(f"{m[2]}+{m[1]}")))
    if m := re.match(r"^(\d+)(\\sqrt|\\pi|[a-z])(.*)$", gold):
        out.append(("cdot", boxed(f"{m[1]} \\cdot {m[2]}{m[3]}")))
    return out


def _value(gold: str) -> float | None:
    """The gold's numeric value when it is a LaTeX expression that evaluates to a number (not a plain number)."""
    if "\\" not in gold:
        return None
    try:
        from latex2sympy2_extended import latex2sympy

        return float(latex2sympy(gold).evalf())
    except Exception:
        return None


def build(out: Path, real: Path | None, per_benchmark: int, seed: int) -> None:
    """Write the case set (module doc)."""
    rng, rows = random.Random(seed), []
    for name in PAPER_BENCHMARKS:
        problems = load_benchmark(name, source="local")
        for problem in rng.sample(problems, min(per_benchmark, len(problems))):
            for variant, response in variants(str(problem.gold), rng):
                rows.append({"benchmark": name, "variant": variant, "gold": problem.gold, "response": response})
    if real:
        for line in real.read_text().splitlines():
            sample = json.loads(line)
            for code in sample["code"]:
                rows.append({"benchmark": "math500", "variant": "real", "gold": sample["gt"], "response": code})
    out.write_text("".join(json.dumps(row, ensure_ascii=False) + "\n" for row in rows))
    print(f"{len(rows)} cases -> {out}: {dict(Counter(r['variant'] for r in rows))}")


# Run in the harness's interpreter, with its folder on sys.path: its own functions, as its evaluate.py calls them.
OFFICIAL_DRIVER = r"""
import json, sys
from pebble import ProcessPool
from concurrent.futures import TimeoutError
from parser import extract_answer, parse_ground_truth, strip_string, STRIP_EXCEPTIONS
from grader import math_equal_process
rows = [json.loads(line) for line in open(sys.argv[1])]
def gold_example(row):
    data, gold = row["data_name"], str(row["gold"])
    if data in ("math", "math_oai", "minerva_math"):
        return {"solution": "\\boxed{" + gold + "}"}
    if data == "olympiadbench":
        return {"final_answer": [gold]}
    return {"answer": gold}
params = []
for row in rows:
    data = row["data_name"]
    pred = strip_string(extract_answer(row["response"], data), skip_unit=data in STRIP_EXCEPTIONS)
    params.append((pred, parse_ground_truth(gold_example(row), data)[1]))
with ProcessPool(max_workers=int(sys.argv[3])) as pool:
    results = pool.map(math_equal_process, params, timeout=3).result()
    verdicts = []
    while True:
        try:
            verdicts.append(bool(next(results)))
        except StopIteration:
            break
        except TimeoutError:
            verdicts.append(False)
with open(sys.argv[2], "w") as f:
    for row, (pred, gold), verdict in zip(rows, params, verdicts):
        f.write(json.dumps({**row, "official_pred": pred, "official_gold": gold, "official_correct": verdict}) + "\n")
"""


def official(cases: Path, harness: Path, python: str, workers: int) -> None:
    """Write ``<cases>.official.jsonl`` with the harness's verdicts (module doc)."""
    rows = [json.loads(line) for line in cases.read_text().splitlines()]
    tagged = cases.with_suffix(".tagged.jsonl")
    tagged.write_text(
        "".join(json.dumps({**r, "data_name": HARNESS_NAMES.get(r["benchmark"], r["benchmark"])}) + "\n" for r in rows)
    )
    out = cases.with_suffix(".official.jsonl")
    subprocess.run([python, "-c", OFFICIAL_DRIVER, str(tagged), str(out), str(workers)], cwd=harness, check=True)
    print(f"official verdicts -> {out}")


def compare(official_file: Path, ours_file: Path, show: int) -> None:
    """Agreement overall and per variant; the first ``show`` disagreements."""
    theirs = [json.loads(line) for line in official_file.read_text().splitlines()]
    ours = [json.loads(line) for line in ours_file.read_text().splitlines()]
    by_variant, differ = Counter(), []
    for a, b in zip(theirs, ours):
        by_variant[(a["variant"], a["official_correct"] == b["correct"])] += 1
        if a["official_correct"] != b["correct"]:
            differ.append((a, b))
    agree = len(theirs) - len(differ)
    print(f"agreement {agree}/{len(theirs)} = {100 * agree / len(theirs):.2f}%")
    for variant in sorted({v for v, _ in by_variant}):
        yes, no = by_variant[(variant, True)], by_variant[(variant, False)]
        print(f"  {variant:18s} {yes}/{yes + no}")
    for a, b in differ[:show]:
        where = f"[{a['benchmark']}/{a['variant']}] gold {a['gold']!r}"
        print(f"- {where} official {a['official_correct']} (pred {a['official_pred']!r}, gold {a['official_gold']!r})")
        print(f"  ours {b['correct']} ({b['extracted']!r})")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    sub = parser.add_subparsers(dest="command", required=True)
    b = sub.add_parser("build")
    b.add_argument("--out", type=Path, required=True)
    b.add_argument("--real", type=Path)
    b.add_argument("--per-benchmark", type=int, default=80)
    b.add_argument("--seed", type=int, default=0)
    o = sub.add_parser("official")
    o.add_argument("cases", type=Path)
    o.add_argument("--harness", type=Path, required=True)
    o.add_argument("--python", required=True)
    o.add_argument("--workers", type=int, default=2)
    c = sub.add_parser("compare")
    c.add_argument("official_file", type=Path)
    c.add_argument("ours_file", type=Path)
    c.add_argument("--show", type=int, default=40)
    args = parser.parse_args()
    if args.command == "build":
        build(args.out, args.real, args.per_benchmark, args.seed)
    elif args.command == "official":
        official(args.cases, args.harness, args.python, args.workers)
    else:
        compare(args.official_file, args.ours_file, args.show)


if __name__ == "__main__":
    main()
