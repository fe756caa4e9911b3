r"""Answer extraction and normalisation as the DFT paper's evaluation harness does them (``grader=paper``).

The paper's numbers come from the Qwen2.5-Math evaluation harness that the DFT repository ships in
``math_evaluation/`` (``parser.py``: ``extract_answer``, ``strip_string``, ``parse_ground_truth``). This module is
our own implementation of the same rules, written from reading that code, so that ``dft.eval.paper_grader`` gives
its verdicts. Where the harness differs from ``dft.eval.answers`` (see docs/grading.md):

- a response cut off inside its last ``\boxed{`` gives the text after it (the open box), not no answer;
- the last ``boxed`` wins even without a brace (``\boxed 5``: up to the next ``$``);
- ``strip_string`` drops trailing ``\text{}`` units, a list of unit words (not for Minerva), ``\left``/``\right``,
  dollar and percent signs, the word "and", ``x=``-style prefixes, ``.0`` decimals, spaces; it reads number words
  ("five" is 5) and writes ``a/b`` as ``\frac{a}{b}``;
- the prediction goes through ``strip_string`` twice (once in extraction, once after), as do MATH golds.

Rules that depend on the benchmark (the harness's ``data_name``): Minerva keeps unit words (``skip_unit``) and its
gold is stripped once; OlympiadBench, AIME and AMC golds are stripped once; MATH-500 (``math_oai``) and unknown
benchmarks are treated as MATH.
"""

from __future__ import annotations

import re

MINERVA = "minerva_math"
ONCE_STRIPPED_GOLDS = ("olympiadbench", "aime24", "aime25", "amc23", "gsm8k")

# the harness's unit words (mainly from MathQA), each also with an "s"; matched as regular expressions between
# non-word characters, twice over, in this order
_UNIT_WORDS = [
    "east", "degree", "mph", "kmph", "ft", "m sqaure", " m east", "sq m", "deg", "mile", "q .", "monkey", "prime",
    "ratio", "profit of rs", "rd", "o", "gm", "p . m", "lb", "tile", "per", "dm", "lt", "gain", "ab", "way", "west",
    "a .", "b .", "c .", "d .", "e .", "f .", "g .", "h .", "t", "a", "h", "no change", "men", "soldier", "pie", "bc",
    "excess", "st", "inches", "noon", "percent", "by", "gal", "kmh", "c", "acre", "rise", "a . m", "th", "π r 2", "sq",
    "mark", "l", "toy", "coin", "sq . m", "gallon", "° f", "profit", "minw", "yr", "women", "feet", "am", "pm", "hr",
    "cu cm", "square", "v â € ™", "are", "rupee", "rounds", "cubic", "cc", "mtr", "s", "ohm", "number", "kmph", "day",
    "hour", "minute", "min", "second", "man", "woman", "sec", "cube", "mt", "sq inch", "mp", "∏ cm ³", "hectare",
    "more", "sec", "unit", "cu . m", "cm 2", "rs .", "rs", "kg", "g", "month", "km", "m", "cm", "mm", "apple", "liter",
    "loss", "yard", "pure", "year", "increase", "decrease", "d", "less", "Surface", "litre", "pi sq m", "s .", "metre",
    "meter", "inch",
]  # fmt: skip
UNIT_RES = [re.compile(r"(^|\W)" + unit + r"($|\W)") for unit in _UNIT_WORDS + [u + "s" for u in _UNIT_WORDS]]

_SMALL = "zero one two three four five six seven eight nine ten eleven twelve thirteen fourteen fifteen sixteen"
NUMBER_WORDS = {w: i for i, w in enumerate((_SMALL + " seventeen eighteen nineteen").split())}
NUMBER_WORDS.update(
    {w: 10 * (i + 2) for i, w in enumerate("twenty thirty forty fifty sixty seventy eighty ninety".split())}
)
NUMBER_WORDS.update(hundred=100, thousand=1000, million=10**6, billion=10**9)
SCALES = ("thousand", "million", "billion")
LAST_NUMBER_RE = re.compile(r"-?\d*\.?\d+")


def _combine(values: list[int]) -> int:
    """word2number's ``number_formation``: how two to four number words make one number."""
    if len(values) == 4:
        return values[0] * values[1] + values[2] + values[3]
    if len(values) == 3:
        return values[0] * values[1] + values[2]
    if len(values) == 2:
        return values[0] * values[1] if 100 in values else values[0] + values[1]
    return values[0]


def word_number(text: str) -> str | None:
    """The number that the harness's word2number reads in ``text`` ("two hundred" is 200, "007" is 7), as its
    string; None where it reads none. Phrases with thousand/million/billion are left alone (our simplification:
    they do not occur in the benchmarks' answers)."""
    sentence = text.replace("-", " ").lower()
    if sentence.isdigit():
        try:
            return str(int(sentence))
        except ValueError:  # "²" is a digit that int() refuses
            return None
    words = [w for w in sentence.split() if w in NUMBER_WORDS or w == "point"]
    if not words or words.count("point") > 1 or any(w in SCALES for w in words):
        return None
    whole, decimals = (
        (words[: words.index("point")], words[words.index("point") + 1 :]) if "point" in words else (words, [])
    )
    total: int | float = _combine([NUMBER_WORDS[w] for w in whole]) if whole else 0
    if decimals:
        digits = [NUMBER_WORDS[w] for w in decimals]
        total += float("0." + "".join(map(str, digits))) if all(d < 10 for d in digits) else 0
    return str(total)


def _fix_fracs(text: str) -> str:
    r"""``\frac12`` -> ``\frac{1}{2}``, ``\frac1{72}`` -> ``\frac{1}{72}``; the text unchanged if a ``\frac`` has
    fewer than two characters after it."""
    head, *rest = text.split("\\frac")
    out = head
    for part in rest:
        out += "\\frac"
        if part.startswith("{"):
            out += part
        elif len(part) < 2:
            return text
        elif part[1] != "{":
            out += "{" + part[0] + "}{" + part[1] + "}" + part[2:]
        else:
            out += "{" + part[0] + "}" + part[1:]
    return out


def _fix_a_slash_b(text: str) -> str:
    r"""``3/4`` -> ``\frac{3}{4}`` when both sides are integers written plainly (or hold ``sqrt``)."""
    parts = text.split("/")
    if len(parts) != 2:
        return text
    try:
        a, b = (p if "sqrt" in p else int(p) for p in parts)
    except ValueError:
        return text
    return f"\\frac{{{a}}}{{{b}}}" if text == f"{a}/{b}" else text


def _drop_units(text: str) -> str:
    """Remove every unit word, twice over; a removal that would leave nothing is not made."""
    for _ in range(2):
        for unit in UNIT_RES:
            stripped = unit.sub(r"\1\2", text)
            if stripped != "":
                text = stripped
    return text


def _latex_forms(text: str) -> str:
    """Line breaks, trailing dots, ``\\!``, arrays as pmatrix, frac spellings, relations, ``\\left``/``\\right``."""
    text = str(text).strip().replace("\n", "").rstrip(".").replace("\\!", "")
    text = re.sub(r"\\begin\{array\}\{.*?\}", r"\\begin{pmatrix}", text)
    text = re.sub(r"\\end\{array\}", r"\\end{pmatrix}", text).replace("bmatrix", "pmatrix")
    text = text.replace("tfrac", "frac").replace("dfrac", "frac")
    text = text.replace("\\neq", "\\ne").replace("\\leq", "\\le").replace("\\geq", "\\ge")
    return text.replace("\\left", "").replace("\\right", "").replace("\\{", "{").replace("\\}", "}")


def _words_and_signs(text: str, skip_unit: bool) -> str:
    """Trailing ``\\text{}`` unit, unit words, degrees, dollars, number words, ``\\text{}``, variable prefixes,
    empty set, the real line, percent signs."""
    without_text_unit = re.sub(r"\\text{.*?}$", "", text).strip()
    if without_text_unit != "":
        text = without_text_unit
    if not skip_unit:
        text = _drop_units(text)
    text = text.replace("^{\\circ}", "").replace("^\\circ", "")
    text = text.replace("\\$", "").replace("$", "").replace("\\(", "").replace("\\)", "")
    text = word_number(text) or text
    text = re.sub(r"\\text\{(.*?)\}", r"\1", text)
    for prefix in ["x=", "y=", "z=", "x\\in", "y\\in", "z\\in", "x\\to", "y\\to", "z\\to"]:
        text = text.replace(prefix, "")
    text = text.replace("\\emptyset", r"{}").replace("(-\\infty,\\infty)", "\\mathbb{R}")
    return text.replace("\\%", "").replace("%", "")


def _numbers_and_spacing(text: str) -> str:
    """Leading zeros of decimals, infinity, "and", ``\\mathbf``, ``\\mbox{}``, j as i, ``.0`` decimals, a short
    ``k =`` prefix, ``\\sqrt2``, spaces, fractions."""
    text = text.replace(" .", " 0.").replace("{.", "{0.")
    text = text.replace("infinity", "\\infty")
    if "\\infty" not in text:
        text = text.replace("inf", "\\infty")
    text = text.replace("+\\inity", "\\infty").replace("and", "").replace("\\mathbf", "")
    text = re.sub(r"\\mbox{.*?}", "", text)
    if "j" in text and "i" not in text:
        text = text.replace("j", "i")
    text = re.sub(r"(\d+)\.0*([^\d])", r"\1\2", text)
    text = re.sub(r"(\d+)\.0*$", r"\1", text)
    if not text:
        return text
    if text[0] == ".":
        text = "0" + text
    if len(text.split("=")) == 2 and len(text.split("=")[0]) <= 2:
        text = text.split("=")[1]
    text = re.sub(r"\\sqrt(\w+)", r"\\sqrt{\1}", text).replace(" ", "")
    return _fix_a_slash_b(_fix_fracs(text))


def strip_string(text: str, skip_unit: bool = False) -> str:
    """The harness's ``strip_string``: an answer in the canonical form its ``math_equal`` compares."""
    return _numbers_and_spacing(_words_and_signs(_latex_forms(text), skip_unit))


def last_box(text: str) -> str:
    """What follows the last ``boxed``: its braced content (to the end of the text if the box never closes), or
    up to the next ``$`` when no brace follows."""
    tail = text.split("boxed")[-1]
    if not tail.startswith("{"):
        return tail.split("$")[0].strip()
    depth, out = 1, []
    for char in tail[1:]:
        depth += (char == "{") - (char == "}")
        if depth == 0:
            break
        out.append(char)
    return "".join(out)


def raw_answer(response: str) -> tuple[str, str]:
    """(the answer text before cleaning, the rule that found it): Minerva's "final answer is $...$. I hope", the
    last box (``open_box`` if it never closes), "the answer is", "final answer is", "答案是", else the last number."""
    if "final answer is $" in response and "$. I hope" in response:
        return response.split("final answer is $", 1)[1].split("$. I hope", 1)[0].strip(), "final_answer_hope"
    if "boxed" in response:
        return last_box(response), "boxed" if _box_closes(response) else "open_box"
    for trigger, rule in (("he answer is", "answer_is"), ("final answer is", "final_answer_is")):
        if trigger in response:
            return response.split(trigger)[-1].strip(), rule
    if "答案是" in response:
        return response.split("答案是")[1].strip().split("\n\n")[0].strip(), "answer_is_zh"
    numbers = LAST_NUMBER_RE.findall(response.replace(",", ""))
    return (numbers[-1], "last_number") if numbers else ("", "none")


def _box_closes(response: str) -> bool:
    """Whether the last ``boxed{`` has its closing brace (a ``boxed`` without a brace counts as closed)."""
    tail = response.split("boxed")[-1]
    return not tail.startswith("{") or len(last_box(response)) + 1 < len(tail)


def clean_extracted(answer: str, skip_unit: bool) -> str:
    """Line breaks, a leading colon, a trailing dot or slash, then ``strip_string``."""
    answer = re.sub(r"\n\s*", "", answer)
    if answer.startswith(":"):
        answer = answer[1:]
    if answer.endswith("."):
        answer = answer[:-1]
    if answer.endswith("/"):
        answer = answer[:-1]
    return strip_string(answer, skip_unit=skip_unit)


def extract_answer(response: str, benchmark: str | None = None) -> tuple[str, str]:
    """(the prediction the harness grades, the extraction rule): extracted, cleaned, then ``strip_string`` once
    more (its ``run_execute``); "" when ``boxed`` is the response's last word."""
    skip_unit = benchmark == MINERVA
    response = response.replace("\u043a\u0438", "")
    minerva_style = "final answer is $" in response and "$. I hope" in response
    if not minerva_style and "boxed" in response and not response.split("boxed")[-1]:
        return "", "none"
    raw, rule = raw_answer(response)
    return strip_string(clean_extracted(raw, skip_unit), skip_unit=skip_unit), rule


def gold_answer(gold: str, benchmark: str | None = None) -> str:
    """The gold as the harness's ``parse_ground_truth`` leaves it, from our benchmarks' gold strings (MATH and
    Minerva: the solution's last box, already extracted)."""
    if benchmark == MINERVA:
        return clean_extracted(gold, skip_unit=True)
    if benchmark in ONCE_STRIPPED_GOLDS:
        return strip_string(gold)
    return strip_string(clean_extracted(gold, skip_unit=False))
