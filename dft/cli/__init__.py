"""The top layer: the ``python -m dft`` commands, their checks before any model loads, the recipe checker and the
quickstart. Nothing below imports from here."""
