"""The final answer of a worked solution or a model response: its last ``\\boxed{}``.

One function for gold answers (loaders, data prep) and responses (grading), so both sides read the same thing.
Nothing heavy is imported here.
"""

import re

BOX_RE = re.compile(r"\\(?:boxed|fbox)(?![A-Za-z])")


def last_boxed(text: str) -> str | None:
    """Content of the last ``\\boxed{...}`` or ``\\fbox{...}`` (braces balanced), or of ``\\boxed 5``; else None.

    A last box left open (a truncated response) gives None: the model gave no final answer, whatever it boxed
    before.
    """
    starts = [m.end() for m in BOX_RE.finditer(text)]
    if not starts:
        return None
    after = text[starts[-1] :]
    rest = after.lstrip(" \t")
    if rest.startswith("{"):
        depth = 0
        for brace in re.finditer(r"(?<!\\)[{}]", rest):
            depth += 1 if brace.group() == "{" else -1
            if depth == 0:
                return rest[1 : brace.start()].strip()
        return None
    bare = re.match(r"[^\s$]+", rest) if len(rest) < len(after) else None  # ``\boxed 5``: one TeX token
    return bare.group().rstrip(".") if bare else None
