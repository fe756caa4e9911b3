r"""The final answer of a model response.

``extract_answer``: a response's final answer by the rules of the paper's harness (Qwen2.5-Math
``parser.extract_answer``, in the same order), with the rule that found it recorded: the last ``\boxed{}``
(``dft.data.problems.last_boxed``, the reader of gold answers too); else the text after the last "the answer is";
else after the last "final answer is"; else the last number. One difference, on purpose: a response whose last
box was left open (cut off by the budget) has no answer, where the harness reads the open box. Nothing heavy is
imported here.
"""

import re

# one box reader for gold answers and responses
from dft.data.problems import BOX_RE, last_boxed

RULES = ("boxed", "the-answer-is", "final-answer-is", "last-number")
PHRASES = (("the-answer-is", re.compile(r"[Tt]he answer is")), ("final-answer-is", re.compile(r"final answer is")))
NUMBER_RE = re.compile(r"-?\d*\.?\d+")  # the harness's last-number pattern (on the text without commas)
DELIMITERS = (("$$", "$$"), ("$", "$"), ("\\(", "\\)"), ("\\[", "\\]"))
SENTENCE_END_RE = re.compile(r"\.(?:\s|$)|\n")


def _closing(text: str, end: str, start: int) -> int:
    """Where ``end`` closes a math span opened before ``start``; an escaped dollar (``$\\$18.90$``) closes none."""
    close = text.find(end, start)
    while end.startswith("$") and close > 0 and text[close - 1] == "\\":
        close = text.find(end, close + 1)
    return close


def _after_phrase(rest: str) -> str | None:
    """The answer written right after "the answer is": a ``$...$``-like math span, else the rest of the sentence."""
    rest = rest.lstrip(" :")
    for start, end in DELIMITERS:
        if rest.startswith(start):
            close = _closing(rest, end, len(start))
            if close > 0:
                return rest[len(start) : close].strip() or None
    end = SENTENCE_END_RE.search(rest)
    answer = (rest[: end.start()] if end else rest).strip().rstrip(".").strip()
    return answer or None


def extract_answer(text: str) -> tuple[str | None, str | None]:
    """(final answer, rule that found it) of a response, by the harness's rules in its order; (None, None) when
    there is none. A response with a box is read by the box alone."""
    if BOX_RE.search(text):
        answer = last_boxed(text)
        return (answer, "boxed") if answer else (None, None)
    for rule, phrase in PHRASES:
        found = list(phrase.finditer(text))
        if found:
            answer = _after_phrase(text[found[-1].end() :])
            if answer:
                return answer, rule
    numbers = NUMBER_RE.findall(text.replace(",", ""))
    return (numbers[-1], "last-number") if numbers else (None, None)
