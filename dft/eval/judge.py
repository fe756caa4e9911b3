r"""Whether an answer equals a gold answer: math-verify, with the fixes a hand-judged set asked for.

``judge(answer, gold) -> (equal, error)`` runs with no time bound; ``dft.eval.grading`` runs it in worker
processes with a hard deadline. Before math-verify parses them (``$...$``-wrapped, see ``as_math``):

- a closing full stop is dropped (OlympiadBench writes some golds as sentences), and Minerva's ``-1./3`` is
  ``-1/3`` (math-verify reads ``-1``);
- ``\varnothing`` is ``\emptyset``;
- a number written with thousands separators (``900,000,000``, ``10,\!080``) is one number, not a tuple;
- redundant nested braces (``{{x}}``, a whole answer in braces) are dropped, which also keeps deeply nested ones
  from exhausting the parser;
- an inequality in one variable is compared as an interval when the other side is an interval (``x < 3`` with
  ``(-\infty, 3)``);
- percent signs are dropped (``25\%`` = ``25``); when one side carried one, the other reading (``25\%`` =
  ``0.25``) is tried too;
- a bare ``4.5e33`` is ``4.5\times10^{33}`` (in LaTeX math-verify reads ``e`` as Euler's number).

After math-verify, two false positives are refused:

- exact numbers compared by rounding: ``1/2^{99}`` and ``1/2^{98}`` (or ``1/2004!`` and ``1/2006!``) round to
  the same float (math-verify issue #14). When neither side is written with a decimal point, two exact numbers
  must be equal exactly;
- a gold with several readings: math-verify falls back to a fragment of a gold it cannot read whole (``0`` of
  ``(-\infty, 0) \cup\{1\}.``, ``2`` of ``\hbar \omega(v+1/2)-\frac{E_0^2 e^2}{2 m \omega^2}``), so a bare
  ``0`` or ``2`` would match. A number read from a gold is not used when the gold (past a leading ``name =``,
  ``\text{}`` units aside) holds prose, ``=``, a comma, ``\cup`` or ``\cap``, or a ``+``/``-`` between terms
  that the number is no sum of; the gold's text still is. Units stay readable: ``\frac{37}{4} m`` is 37/4.
"""

from __future__ import annotations

import re
from itertools import product

import sympy
from math_verify import parse, verify

PERCENT_RE = re.compile(r"\\text\{\s*\\?%\s*\}|\\?%")
SCIENTIFIC_RE = re.compile(r"^([+-]?\d+(?:\.\d*)?)[eE]\+?(-?\d+)$")
DECIMAL_RE = re.compile(r"\d\.\d|(?<!\d)\.\d")
RELATION = r"(<|>|\\le(?:q|qslant)?|\\ge(?:q|qslant)?|\\lt|\\gt|≤|≥)"
ONE_SIDED_RE = re.compile(rf"^\s*([A-Za-z])\s*{RELATION}\s*(.+?)\s*$")
TWO_SIDED_RE = re.compile(rf"^\s*(.+?)\s*{RELATION}\s*([A-Za-z])\s*{RELATION}\s*(.+?)\s*$")
INTERVAL_RE = re.compile(r"^\s*(\\left)?[(\[].*,.*[)\]]\s*$|\\cup")
NAME_PREFIX_RE = re.compile(r"^\s*[A-Za-z](?:_\{?\w+\}?)?(?:\([A-Za-z]\))?\s*=\s*")
TEXT_RE = re.compile(r"\\(?:text|mathrm|textbf|mbox)\s*\{[^{}]*\}")
THOUSANDS_RE = re.compile(r"^(?:\\?\$)?-?\d{1,3}(?:(?:,|,\\!\s*|\{,\})\d{3})+(?:\.\d+)?$")
SEPARATOR_RE = re.compile(r",\\!\s*|\{,\}|,")
PROSE_RE = re.compile(r"(?<![\\A-Za-z])[A-Za-z]{3,}")  # a word that is no LaTeX command
STRUCTURE_RE = re.compile(r"=|,|\\cup|\\cap|\\setminus")


def as_math(latex: str) -> str:
    """``latex`` as math-verify should parse it: percent signs dropped, ``4.5e33`` as ``4.5\\times10^{33}``, in
    ``$...$`` (bare ``1-\\sqrt{2}`` would go to the plain-expression extractor, which reads it as ``1``)."""
    latex = PERCENT_RE.sub("", latex).strip()
    latex = SCIENTIFIC_RE.sub(r"\1\\times10^{\2}", latex)
    return latex if latex.startswith("$") else f"${latex}$"


def drop_redundant_braces(latex: str) -> str:
    """Remove every brace pair that only wraps another pair (``{{x}}`` -> ``{x}``), then braces around the whole
    text; one pass, so thousands of nested braces cost no more than a few."""
    pairs, stack = {}, []
    for m in re.finditer(r"(?<!\\)[{}]", latex):
        if m.group() == "{":
            stack.append(m.start())
        elif stack:
            pairs[stack.pop()] = m.start()
    if stack:  # unbalanced: left to the parser
        return latex
    drop = {k for start, end in pairs.items() if pairs.get(start + 1) == end - 1 for k in (start, end)}
    kept = "".join(c for k, c in enumerate(latex) if k not in drop)
    if kept.startswith("{") and _wraps_whole(kept):
        return kept[1:-1].strip()
    return kept


def _wraps_whole(latex: str) -> bool:
    """Whether the first brace of ``latex`` closes at its last character."""
    depth = 0
    for m in re.finditer(r"(?<!\\)[{}]", latex):
        depth += 1 if m.group() == "{" else -1
        if depth == 0:
            return m.end() == len(latex)
    return False


def inequality_as_interval(latex: str) -> str | None:
    """``x < 3`` -> ``(-\\infty, 3)``, ``1 \\le x < 2`` -> ``[1, 2)``; None if ``latex`` is no such inequality."""
    closed = {"<": False, ">": False, r"\lt": False, r"\gt": False}

    def is_closed(op: str) -> bool:
        return closed.get(op, True)

    def is_less(op: str) -> bool:
        return op in ("<", r"\lt", "≤") or op.startswith(r"\le")

    two = TWO_SIDED_RE.match(latex)
    if two and is_less(two.group(2)) and is_less(two.group(4)):
        low, op1, _, op2, high = two.groups()
        return f"{'[' if is_closed(op1) else '('}{low}, {high}{']' if is_closed(op2) else ')'}"
    one = ONE_SIDED_RE.match(latex)
    if not one:
        return None
    _, op, bound = one.groups()
    if is_less(op):
        return f"(-\\infty, {bound}{']' if is_closed(op) else ')'}"
    return f"{'[' if is_closed(op) else '('}{bound}, \\infty)"


def prepare(latex: str) -> str:
    """The rewrites above that need only one side: a closing full stop, empty set, braces, thousands separators."""
    latex = re.sub(r"(?<!\.)\.\s*$", "", latex.strip())
    latex = re.sub(r"(\d)\.(?=\s*/)", r"\1", latex)  # Minerva's "-1./3" is -1/3 (math-verify reads -1)
    latex = drop_redundant_braces(latex.replace(r"\varnothing", r"\emptyset").strip())
    return SEPARATOR_RE.sub("", latex) if THOUSANDS_RE.match(latex) else latex


def align_intervals(answer: str, gold: str) -> tuple[str, str]:
    """An inequality on one side becomes an interval when the other side is one."""
    if INTERVAL_RE.search(gold) and (interval := inequality_as_interval(answer)):
        return interval, gold
    if INTERVAL_RE.search(answer) and (interval := inequality_as_interval(gold)):
        return answer, interval
    return answer, gold


def _parse(latex: str) -> list:
    return parse(as_math(latex), parsing_timeout=None, raise_on_error=True)


def _binary_plus_minus(text: str) -> bool:
    """Whether ``text`` has a ``+`` or ``-`` between two terms outside any braces or parentheses."""
    if SCIENTIFIC_RE.match(text.strip()):  # 1e-5
        return False
    depth, previous = 0, ""
    for char in text:
        if char in "{(":
            depth += 1
        elif char in "})":
            depth -= 1
        if depth == 0 and char in "+-" and previous and (previous.isalnum() or previous in "})"):
            return True
        previous = char if not char.isspace() else previous
    return False


def trusted_readings(gold: str, parsed: list) -> list:
    """The gold's parses without a number that stands for only part of the gold (see the module doc)."""
    text = TEXT_RE.sub(" ", NAME_PREFIX_RE.sub("", gold))
    several = bool(PROSE_RE.search(text) or STRUCTURE_RE.search(text))
    terms = _binary_plus_minus(text)

    def partial(reading) -> bool:
        number = isinstance(reading, sympy.Expr) and reading.is_number
        return number and (several or (terms and not isinstance(reading, sympy.Add)))

    return [p for p in parsed if not partial(p)]


def exact_numbers_differ(gold, answer, gold_text: str, answer_text: str) -> bool:
    """Both sides are exact numbers (no decimal point written) and their exact values differ."""
    if DECIMAL_RE.search(gold_text) or DECIMAL_RE.search(answer_text):
        return False
    if not all(isinstance(x, sympy.Expr) and x.is_number and not x.atoms(sympy.Float) for x in (gold, answer)):
        return False
    g, a = gold.doit(), answer.doit()
    return bool(g.is_Rational and a.is_Rational and g != a)


def _verify_texts(answer: str, gold: str) -> tuple[bool, str | None]:
    """math-verify on two prepared texts, any pair of readings, with the exact-number check; (equal, error)."""
    gold_parsed = trusted_readings(gold, _parse(gold))
    answer_parsed = _parse(answer)
    if not gold_parsed:
        return False, f"gold answer does not parse: {gold[:100]!r}"
    error = None
    for g, a in product(gold_parsed, answer_parsed):
        try:
            if verify(g, a, timeout_seconds=None, raise_on_error=True) and not exact_numbers_differ(g, a, gold, answer):
                return True, None
        except Exception as exc:
            error = error or describe(exc)
    return False, error


def percent_readings(answer: str, gold: str) -> list[tuple[str, str]]:
    """The other reading of a side written with ``%``: ``25\\%`` as ``0.25`` (``\\frac{25}{100}``)."""
    out = []
    if PERCENT_RE.search(gold) and not PERCENT_RE.search(answer):
        out.append((answer, f"\\frac{{{PERCENT_RE.sub('', gold).strip()}}}{{100}}"))
    if PERCENT_RE.search(answer) and not PERCENT_RE.search(gold):
        out.append((f"\\frac{{{PERCENT_RE.sub('', answer).strip()}}}{{100}}", gold))
    return out


def describe(exc: BaseException) -> str:
    """``Type: message``, short; printing sympy objects can itself fail, so the message is optional."""
    try:
        return f"{type(exc).__name__}: {str(exc)[:300]}"
    except Exception:
        return type(exc).__name__


def judge(answer: str, gold: str) -> tuple[bool, str | None]:
    """(equal, error) for two LaTeX answers; an exception on one reading does not hide a match on another, and
    is reported only when nothing matched."""
    answer, gold = align_intervals(prepare(answer), prepare(gold))
    try:
        equal, error = _verify_texts(answer, gold)
        for other_answer, other_gold in [] if equal else percent_readings(answer, gold):
            equal, other_error = _verify_texts(other_answer, other_gold)
            if equal:
                return True, None
        return equal, error
    except Exception as exc:
        return False, describe(exc)
