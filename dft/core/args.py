"""argparse pieces every file tool shares: the help formatter and the type of a count."""

import argparse
import sys

# the exit status of a refused input, every command alike (0: done, 1: the work itself failed)
REFUSED = 2


def positive_int(text: str) -> int:
    """argparse type of a count (``--limit``, ``--n``): 0 would select nothing, so it is refused, never "all"."""
    try:
        value = int(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"{text!r} is not an integer") from None
    if value < 1:
        raise argparse.ArgumentTypeError(f"{value} selects nothing: give a positive count, or leave it out for all")
    return value


def at_least(minimum: int, why: str = ""):
    """argparse type of a count of at least ``minimum`` (``why``: what needs that many)."""

    def count(text: str) -> int:
        try:
            value = int(text)
        except ValueError:
            raise argparse.ArgumentTypeError(f"{text!r} is not an integer") from None
        if value < minimum:
            raise argparse.ArgumentTypeError(f"{value} is below {minimum}{': ' + why if why else ''}")
        return value

    return count


def positive_float(text: str) -> float:
    """argparse type of a rate (a learning rate): a finite number above 0."""
    try:
        value = float(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"{text!r} is not a number") from None
    if not 0 < value < float("inf"):
        raise argparse.ArgumentTypeError(f"{value} must be a finite number above 0")
    return value


def refuse(message: str):
    """Stop the command on bad input: one ``error:`` line on stderr naming what is wrong, exit status 2."""
    print(f"error: {message}", file=sys.stderr)
    raise SystemExit(REFUSED)


class DefaultsHelpFormatter(argparse.ArgumentDefaultsHelpFormatter):
    """argparse help that shows each option's default, unless its help already says it, it has none, or it is a
    flag; the formatter of every file tool (``formatter_class=DefaultsHelpFormatter``)."""

    def _get_help_string(self, action):
        text = action.help or ""
        if "default" in text or action.default in (None, argparse.SUPPRESS) or action.nargs == 0:
            return text
        return super()._get_help_string(action)
