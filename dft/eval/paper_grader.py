r"""Equality of two answers as the DFT paper's evaluation harness judges it (``grader=paper``).

Our own implementation of the Qwen2.5-Math harness's ``math_equal`` (``math_evaluation/grader.py`` in the DFT
repository), written from reading it; the answers come cleaned by ``dft.eval.paper_parser``. In order:

1. the same text (case aside), or a multiple-choice letter;
2. numbers: both read as floats (commas dropped, a trailing ``%`` divides by 100, ``4.5e33`` is a float); equal
   within a relative 1e-4 to the gold, the gold / 100 or the gold * 100 (so 0.3333 is 1/3 and 25 is 0.25);
3. brackets: with all ``{}()`` removed (and the outer ``[]``/``()`` of the prediction) the same text;
4. tuples and intervals ``(a, b)`` / ``[a, b]``: element by element, in order, brackets not compared;
5. matrices (pmatrix/bmatrix): entry by entry;
6. equations: ``a = b`` and ``c = d`` as ``a - b`` and ``c - d`` (either sign); a short ``x = `` prefix on one side
   is dropped;
7. symbolic: both sides parsed (``parse_latex``, then sympy's ``parse_expr``, then latex2sympy; a side that no
   parser reads stays a string), then equal as strings, as objects, by ``equals`` or ``simplify(a - b) == 0``, as
   equations, as floats within 1e-4, or as matrices rounded to 3 places.

The harness pins sympy 1.12, antlr4 4.11.1 and a bundled latex2sympy2; with our one install (sympy 1.14, antlr4
4.9.x for Hydra) sympy's ``parse_latex`` cannot load, so ``latex2sympy2_extended`` (installed by math-verify, built
for several antlr versions) stands in for both LaTeX parsers; docs/grading.md gives what that costs in agreement.
The harness's 3 s limit per answer is the Grader's deadline (``dft.eval.graders.GRADERS``); it reports no errors.
"""

from __future__ import annotations

import re
from math import isclose

from sympy import Basic, E, N, Symbol, pi, simplify
from sympy.parsing.sympy_parser import parse_expr

from dft.eval.paper_parser import extract_answer, gold_answer

CHOICES = ("A", "B", "C", "D", "E")
MATRIX_BEGINS = ("\\begin{pmatrix}", "\\begin{bmatrix}")
MATRIX_ENDS = ("\\end{pmatrix}", "\\end{bmatrix}")
BRACKETED_RE = re.compile(r"(\(|\[).+(\)|\])")


# commands that sympy's LaTeX lexer (``parse_latex``) knows; any other ``\name``, also one glued to a letter
# (``\cdotx`` once spaces are stripped), is a symbol of that name to it: ``\pi`` is a symbol, not 3.14...
SYMPY_COMMANDS = frozenset(
    "frac dfrac tfrac binom dbinom tbinom sqrt sin cos tan csc sec cot arcsin arccos arctan arccsc arcsec arccot sinh "
    "cosh tanh arsinh arcosh artanh log ln lg exp lim int sum prod cdot times div le ge leq geq leqq geqq leqslant "
    "geqslant neq left right to rightarrow Rightarrow longrightarrow Longrightarrow langle rangle lfloor rfloor lceil "
    "rceil overline mathit infty quad qquad thinspace medspace thickspace negthinspace negmedspace negthickspace hfil "
    "vbox vcenter vrule vskip vspace".split()
)
COMMAND_RE = re.compile(r"\\([a-zA-Z]+)")
OPENERS, CLOSERS = "([{", ")]}"
THOUSANDS_RE = re.compile(r"(?<=\d),(?=\d{3})")


def _complete_prefix(text: str) -> str:
    """What ``parse_latex`` reads of ``text``. Its lexer reads ``9,240`` as one number; its parser stops, without
    error, before what cannot go on (a comma or a closing bracket outside brackets, a ``.`` that is no decimal
    point, an empty ``{}``: ``1,3,9`` is 1, ``-1)+`` is -1, ``np.x`` is np) and fails on a comma inside brackets."""
    text = THOUSANDS_RE.sub("", text)
    depth = 0
    for position, char in enumerate(text):
        depth += (char in OPENERS) - (char in CLOSERS)
        stop = (
            depth < 0
            or (char == "," and depth == 0)
            or (char == "." and not text[position + 1 : position + 2].isdigit())
        )
        if stop or text.startswith("{}", position):
            text = text[:position]
            break
    if "," in text:
        raise ValueError("a comma inside brackets")
    return text


def _as_symbols(text: str) -> str:
    """Every ``\\name`` that sympy's lexer does not know as ``\\text{name}``, a symbol to latex2sympy2_extended."""
    return COMMAND_RE.sub(lambda m: m[0] if m[1] in SYMPY_COMMANDS else f"\\text{{{m[1]}}}", text)


def _sympy_latex(text: str):
    """A stand-in for sympy's ``parse_latex`` (which needs antlr4 4.11): latex2sympy2_extended on what
    ``parse_latex`` would read, without normalisation, symbols keeping their case, ``2\\frac12`` a product, not a
    mixed number; ``e`` and ``\\pi`` stay symbols, as ``parse_latex`` leaves them."""
    from latex2sympy2_extended import latex2sympy
    from latex2sympy2_extended.latex2sympy2 import ConversionConfig

    config = ConversionConfig(interpret_as_mixed_fractions=False, lowercase_symbols=False)
    result = latex2sympy(_as_symbols(_complete_prefix(text)), normalization_config=None, conversion_config=config)
    return result.subs({E: Symbol("e"), pi: Symbol("pi")}) if isinstance(result, Basic) else result


PARSERS = (_sympy_latex, parse_expr)


def choice_clean(prediction: str) -> str:
    """The last standalone letter A-E of a prediction (the harness's multiple-choice cleaning)."""
    prediction = prediction.strip("\n").rstrip(".").rstrip("/").strip(" ").lstrip(":")
    letters = re.findall(r"\b(A|B|C|D|E)\b", prediction.upper())
    return (letters[-1] if letters else prediction.strip().strip(".")).rstrip(".").rstrip("/")


def parse_number(text) -> float | None:
    """A float from ``text`` with commas dropped; ``x%`` / ``x\\%`` is x / 100; None if not a number."""
    text = str(text).replace(",", "")
    try:
        return float(text)
    except ValueError:
        pass
    if text.endswith("%"):
        text = text[:-1].removesuffix("\\")
        try:
            return float(text) / 100
        except ValueError:
            return None
    return None


def numbers_equal(prediction: float, reference: float) -> bool:
    """The harness's tolerance: relative 1e-4 to the reference."""
    return isclose(reference, prediction, rel_tol=1e-4)


def _numeric(prediction: str, reference: str) -> bool | None:
    """Rule 2; None when either side is no number (then the other rules decide)."""
    pred, ref = parse_number(prediction), parse_number(reference)
    if pred is None or ref is None:
        return None
    return any(numbers_equal(pred, item) for item in (ref / 100, ref, ref * 100))


def as_pmatrix(text: str) -> str:
    r"""A gold like ``{1,2}`` as ``\begin{pmatrix}1\2\end{pmatrix}`` (the harness's ``str_to_pmatrix``)."""
    rows = [m.strip("{}") for m in re.findall(r"\{.*,.*\}", text.strip())]
    return ", ".join(r"\begin{pmatrix}" + m.replace(",", "\\") + r"\end{pmatrix}" for m in rows)


def _same_without_brackets(prediction: str, reference: str) -> bool:
    """Rule 3."""
    pred, ref = prediction, reference
    strip_outer = (pred.startswith("[") and pred.endswith("]") and not ref.startswith("(")) or (
        pred.startswith("(") and pred.endswith(")") and not ref.startswith("[")
    )
    if strip_outer:
        pred, ref = pred.strip("[]()"), ref.strip("[]()")
    for bracket in "{}()":
        pred, ref = pred.replace(bracket, ""), ref.replace(bracket, "")
    return pred.lower() == ref.lower()


def _same_elements(prediction: str, reference: str) -> bool:
    """Rule 4: ``(a, b)`` and ``[c, d]`` element by element (first and last characters dropped, split on commas)."""
    if not (BRACKETED_RE.match(prediction) and BRACKETED_RE.match(reference)):
        return False
    pred_parts, ref_parts = prediction[1:-1].split(","), reference[1:-1].split(",")
    return len(pred_parts) == len(ref_parts) and all(math_equal(p, r) for p, r in zip(pred_parts, ref_parts))


def _is_matrix(text: str) -> bool:
    return text.startswith(MATRIX_BEGINS) and text.endswith(MATRIX_ENDS)


def _matrix_rows(text: str) -> list[str]:
    body = text[len("\\begin{pmatrix}") : -len("\\end{pmatrix}")]
    return [line.strip() for line in body.split("\\\\") if line.strip()]


def _same_matrix(prediction: str, reference: str) -> bool:
    """Rule 5: the same number of rows and of entries per row, entries equal by ``math_equal``."""
    if not (_is_matrix(prediction) and _is_matrix(reference)):
        return False
    pred_rows, ref_rows = _matrix_rows(prediction), _matrix_rows(reference)
    if len(pred_rows) != len(ref_rows):
        return False
    for pred_row, ref_row in zip(pred_rows, ref_rows):
        pred_cells, ref_cells = pred_row.split("&"), ref_row.split("&")
        if len(pred_cells) != len(ref_cells) or not all(math_equal(p, r) for p, r in zip(pred_cells, ref_cells)):
            return False
    return True


def _same_equation(prediction: str, reference: str) -> bool:
    """Rule 6."""
    if prediction.count("=") == 1 and reference.count("=") == 1:
        pred_lhs, pred_rhs = prediction.split("=")
        ref_lhs, ref_rhs = reference.split("=")
        pred = f"{pred_lhs.strip()} - ({pred_rhs.strip()})"
        ref = f"{ref_lhs.strip()} - ({ref_rhs.strip()})"
        return symbolic_equal(pred, ref) or symbolic_equal(f"-({pred})", ref)
    if prediction.count("=") == 1 and len(prediction.split("=")[0].strip()) <= 2 and "=" not in reference:
        return math_equal(prediction.split("=")[1], reference)
    if reference.count("=") == 1 and len(reference.split("=")[0].strip()) <= 2 and "=" not in prediction:
        return math_equal(prediction, reference.split("=")[1])
    return False


def math_equal(prediction: str | None, reference: str | None) -> bool:
    """Whether the cleaned prediction equals the cleaned gold by the harness's rules (module doc, 1-7)."""
    if prediction is None or reference is None:
        return False
    if prediction.strip().lower() == reference.strip().lower():
        return True
    if reference in CHOICES and choice_clean(prediction) == reference:
        return True
    numeric = _numeric(prediction, reference)
    if numeric is not None:
        return numeric
    if not prediction:
        return False
    reference, prediction = reference.strip(), prediction.strip()
    if "pmatrix" in prediction and "pmatrix" not in reference:
        reference = as_pmatrix(reference)
    return (
        _same_without_brackets(prediction, reference)
        or _same_elements(prediction, reference)
        or _same_matrix(prediction, reference)
        or _same_equation(prediction, reference)
        or symbolic_equal(prediction, reference)
    )


def parse_math(text: str):
    """The first parser that reads ``text`` (with ``\\\\`` as ``\\`` first, then as written); else the text."""
    for parser in PARSERS:
        for candidate in (text.replace("\\\\", "\\"), text):
            try:
                return parser(candidate)
            except Exception:
                continue
    return text


def _attempt(check) -> bool:
    """``check()``, with any exception (sympy raises many kinds) read as no."""
    try:
        return bool(check())
    except Exception:
        return False


def symbolic_equal(a_text: str, b_text: str) -> bool:
    """Rule 7."""
    a, b = parse_math(a_text), parse_math(b_text)
    checks = (
        lambda: str(a) == str(b) or a == b,
        lambda: a.equals(b) or simplify(a - b) == 0,
        lambda: abs(a.lhs - a.rhs).equals(abs(b.lhs - b.rhs)),
        lambda: numbers_equal(float(N(a)), float(N(b))),
        lambda: a.shape == b.shape and a.applyfunc(lambda x: round(x, 3)).equals(b.applyfunc(lambda x: round(x, 3))),
    )
    return any(_attempt(check) for check in checks)


def paper_job(response: str, gold, benchmark: str | None = None) -> tuple[str | None, str, str]:
    """(prediction, extraction rule, gold) as the harness compares them; the prediction is None when empty (no
    answer: wrong, as ``math_equal`` judges an empty prediction), unless the gold is empty too (equal to it)."""
    prediction, rule = extract_answer(response, benchmark)
    gold = gold_answer(str(gold), benchmark)
    return prediction if prediction or not gold else None, rule, gold


def judge_paper(prediction: str, gold: str) -> tuple[bool, None]:
    """(equal, no error) for a cleaned prediction and gold: the worker function of ``grader=paper``."""
    return math_equal(prediction, gold), None
