r"""Validation and selection of a data preparation's rows (the policies of ``dft.data.prep``).

- **Validation** (:class:`Validator`): a row becomes an :class:`~dft.data.prep.Example` or a
  :class:`~dft.data.problems.BadRow`. Policy ``error`` raises :class:`DataPrepError` naming the file
  (or hub dataset), the line/row and the field; ``skip`` counts it by reason for the report. Only visited rows
  are validated.
- **Length** (with ``max_length`` and a tokenizer) is measured as training tokenizes the row in its format
  (``dft.data.training_format``): in ``chat``, the whole conversation in the chat template (no generation prompt); in
  ``official``, prompt + solution + eos. Over-length rows follow ``over_length``: ``skip`` (counted, and every
  one listed in the report), ``truncate`` (kept; training cuts them on the right; a row whose first trained
  token lies beyond ``max_length`` has no loss token left and is a bad row) or ``error``.
- **Selection** (:func:`select_and_split`): rows are visited in file order (``first``) or in a seeded
  permutation (``random``, ``numpy.random.RandomState(seed)``, whose stream numpy keeps fixed across versions).
  The train split is the first ``n`` rows of that order that pass validation, so it is exactly ``n`` rows and
  does not depend on ``val_size``; the validation split is then drawn from the rows not visited, in a second
  seeded permutation. Without ``n``, validation is drawn first and every other row is train.
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Sequence
from dataclasses import replace

from dft.data.problems import BadRow
from dft.data.training_format import encode_official, official_template, prompt_lengths

CHUNK = 512  # rows validated (and tokenized) per batch
EXAMPLES_PER_REASON = 5  # positions of skipped rows kept in the report, per reason
OVER_LENGTH = "longer than max_length"
DUPLICATE = "problem already selected (validation rows are unique, and in no other split)"


class DataPrepError(ValueError):
    """The input cannot become the requested training data (a bad row under policy ``error``, too few rows...)."""


class Validator:
    """Turns row indices into Examples or BadRows, applies the bad-row policy and counts what it skips."""

    def __init__(self, spec, inputs, opts, tokenizer=None):
        self.spec, self.inputs, self.opts, self.tokenizer = spec, inputs, opts, tokenizer
        self.skipped: Counter = Counter()
        self.skipped_examples: dict[str, list[str]] = {}
        self.over_length_rows: list[str] = []
        self.duplicates: list[str] = []  # rows whose problem text an earlier selected row has (kept in train)
        self.template = official_template(tokenizer) if tokenizer is not None and opts.format == "official" else None

    def __enter__(self):
        return self

    def __exit__(self, *exc) -> None:
        """Release what the checks hold (nothing here; a subclass's grader workers, say)."""

    def convert(self, row):
        """One readable row as an Example (the spec's converter for the data format); a BadRow raised."""
        return self.spec.official(row) if self.opts.format == "official" else self.spec.convert(row, self.opts.extra)

    def check(self, indices: Sequence[int]) -> list:
        """Convert a batch of rows, then measure the token lengths of the good ones (batched tokenizer calls)."""
        results = [self._convert(i) for i in indices]
        if self.tokenizer is None:
            return results
        good = [k for k, r in enumerate(results) if not isinstance(r, BadRow)]
        for k, (prompt, total) in zip(good, self.lengths([results[k] for k in good])):
            results[k] = self._within_length(replace(results[k], tokens=total), prompt)
        return results

    def lengths(self, examples: list) -> list[tuple[int | None, int]]:
        """(tokens before the first trained token, all tokens) of each example, as training tokenizes it."""
        if self.opts.format == "official":
            encoded = encode_official(self.tokenizer, [(e.user, e.assistant) for e in examples], self.template)
            return [(len(prompt), len(prompt) + len(target)) for prompt, target in encoded]
        conversations = [e.messages() for e in examples]
        totals = token_lengths(self.tokenizer, conversations)
        # where training starts only matters for rows kept over-long
        truncate = self.opts.over_length == "truncate"
        prompts = prompt_lengths(self.tokenizer, conversations, "chat") if truncate else [None] * len(totals)
        return list(zip(prompts, totals))

    def _within_length(self, example, prompt: int | None):
        limit, total = self.opts.max_length, example.tokens
        if limit is None or total <= limit:
            return example
        if self.opts.over_length != "truncate":
            return BadRow("messages", f"is {total} tokens in the {self.opts.format} format, more than --max-length "
                          f"{limit}", OVER_LENGTH)  # fmt: skip
        if prompt is None or prompt >= limit:
            return BadRow("messages", f"has no loss token within --max-length {limit} (the prompt alone is {prompt} "
                          "tokens)", "no loss token within max_length")  # fmt: skip
        return example

    def _convert(self, index: int):
        row = self.inputs.rows[index]
        if isinstance(row, BadRow):
            return row
        try:
            return replace(self.convert(row), id=f"{self.spec.name}-{index}")
        except BadRow as bad:
            return bad

    def reject(self, index: int, bad: BadRow) -> None:
        """Apply the policy to a bad row: raise (``error``) or count it (``skip``); over-length rows follow
        ``over_length`` and are all listed."""
        label = self.inputs.label(index)
        over_length = bad.key == OVER_LENGTH
        if (self.opts.over_length if over_length else self.opts.on_bad_row) == "error":
            flag = "--over-length skip" if over_length else "--on-bad-row skip"
            raise DataPrepError(f"{label}: {bad} (use {flag} to skip such rows and count them)")
        self.skipped[bad.key] += 1
        examples = self.skipped_examples.setdefault(bad.key, [])
        if len(examples) < EXAMPLES_PER_REASON:
            examples.append(f"{label}: {bad}")
        if over_length:
            self.over_length_rows.append(label)


def token_lengths(tokenizer, conversations: list[list[dict]]) -> list[int]:
    """Token count of each conversation rendered whole by the chat template (what verl's SFT dataset trains on)."""
    if not conversations:
        return []
    texts = [tokenizer.apply_chat_template(c, tokenize=False, add_generation_prompt=False) for c in conversations]
    return [len(ids) for ids in tokenizer(texts, add_special_tokens=False, verbose=False)["input_ids"]]


def _problem(example) -> str | None:
    """The problem text that makes two rows duplicates (None for rows that are not conversations)."""
    user = getattr(example, "user", None)
    return " ".join(user.split()) if isinstance(user, str) else None


def _duplicate(validator: Validator, index: int, result, seen: dict, exclude: frozenset, unique: bool) -> bool:
    """Record a row whose problem was selected before (``seen``: problem -> first row's label); True if its
    problem is in ``exclude`` (the other split) or, ``unique``, in ``seen``: it is left out, counted as skipped."""
    problem, label = _problem(result), validator.inputs.label(index)
    if problem is None:
        return False
    if problem in exclude or (unique and problem in seen):
        validator.skipped[DUPLICATE] += 1
        examples = validator.skipped_examples.setdefault(DUPLICATE, [])
        if len(examples) < EXAMPLES_PER_REASON:
            examples.append(f"{label}: its problem is already selected")
        return True
    if problem in seen:
        validator.duplicates.append(f"{label} repeats {seen[problem]}")
    seen.setdefault(problem, label)
    return False


def take(candidates: Sequence[int], need: int | None, validator: Validator, exclude: frozenset = frozenset(),
         seen: dict | None = None, unique: bool = False) -> tuple[list, int]:  # fmt: skip
    """Visit ``candidates`` in order until ``need`` good rows are found (all rows if None).

    Returns the good rows and how many candidates were visited; bad rows among them went through the policy, and
    rows whose problem is in ``exclude`` (the other split) or (``unique``) taken before were left out. ``seen``
    collects the problems taken.
    """
    accepted: list = []
    visited = 0
    seen = {} if seen is None else seen
    while visited < len(candidates) and (need is None or len(accepted) < need):
        size = CHUNK if need is None else min(CHUNK, max(need - len(accepted), 16))
        chunk = list(candidates[visited : visited + size])
        for index, result in zip(chunk, validator.check(chunk)):
            if need is not None and len(accepted) == need:
                break
            visited += 1
            if isinstance(result, BadRow):
                validator.reject(index, result)
            elif not _duplicate(validator, index, result, seen, exclude, unique):
                accepted.append(result)
    return accepted, visited


def _permutation(items: Sequence[int], seed) -> list[int]:
    """``items`` in a seeded random order (numpy's legacy RandomState: its stream is frozen across versions)."""
    import numpy as np

    return [items[k] for k in np.random.RandomState(seed).permutation(len(items)).tolist()]


def _require(found: int, need: int, what: str, validator: Validator) -> None:
    """Refuse to write fewer rows than asked for."""
    if found < need:
        skipped = sum(validator.skipped.values())
        raise DataPrepError(f"{what}: asked for {need} rows, found only {found} usable ({skipped} skipped)")


def select_and_split(total: int, opts, validator: Validator) -> tuple[list, list, int]:
    """(train, val, unselected row count), following the selection rules in the module docstring; a problem is
    never in both splits (its rows in the second split drawn are left out, counted as skipped)."""
    if total == 0:
        raise DataPrepError(f"{validator.inputs.where} has no rows: give a file (or hub split) with rows")
    order = list(range(total)) if opts.selection == "first" else _permutation(range(total), opts.seed)
    val_seed = [1, opts.seed]  # a second stream, so val rows are random even under --selection first
    if opts.n is not None:
        train_seen: dict = {}
        train, visited = take(order, opts.n, validator, seen=train_seen)
        _require(len(train), opts.n, "--n", validator)
        rest = _permutation(order[visited:], val_seed)
        val, visited_val = (
            take(rest, opts.val_size, validator, frozenset(train_seen), unique=True) if opts.val_size else ([], 0)
        )
        _require(len(val), opts.val_size, "--val-size", validator)
        return train, val, total - visited - visited_val
    candidates = _permutation(order, val_seed)
    val_seen: dict = {}
    val, visited_val = (
        take(candidates, opts.val_size, validator, seen=val_seen, unique=True) if opts.val_size else ([], 0)
    )
    _require(len(val), opts.val_size, "--val-size", validator)
    seen = set(candidates[:visited_val])
    train, _ = take([i for i in order if i not in seen], None, validator, frozenset(val_seen))
    return train, val, 0
