"""argparse pieces every file tool shares: the help formatter and the type of a count."""

import argparse


def positive_int(text: str) -> int:
    """argparse type of a count (``--limit``, ``--n``): 0 would select nothing, so it is refused, never "all"."""
    try:
        value = int(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"{text!r} is not an integer") from None
    if value < 1:
        raise argparse.ArgumentTypeError(f"{value} selects nothing: give a positive count, or leave it out for all")
    return value


class DefaultsHelpFormatter(argparse.ArgumentDefaultsHelpFormatter):
    """argparse help that shows each option's default, unless its help already says it, it has none, or it is a
    flag; the formatter of every file tool (``formatter_class=DefaultsHelpFormatter``)."""

    def _get_help_string(self, action):
        text = action.help or ""
        if "default" in text or action.default in (None, argparse.SUPPRESS) or action.nargs == 0:
            return text
        return super()._get_help_string(action)
