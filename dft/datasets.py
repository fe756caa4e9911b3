"""verl SFT datasets for the losses that need more than a conversation: reference log-probs and preference pairs.

Both subclass verl's ``MultiTurnSFTDataset`` and are chosen through verl's own seam, ``data.custom_cls``
(``dft.trainer.prepare_config`` sets it from ``loss.name``), so tokenisation, chat template, loss mask and
truncation are verl's.

Reference log-probabilities are stored per row as the list of the reference model's log-probabilities of the
*target* tokens (the tokens the loss mask trains on), in order; ``python -m dft.ref_logprobs`` writes them.
Here they are placed at the positions of verl's no-padding layout, where position ``i`` scores token ``i + 1``,
so a loss reads them exactly as it reads the policy's ``log_probs``.

- ``ReferenceScoredDataset``: SFT rows (``messages``) with ``ref_log_probs`` (for ``iw_sft``).
- ``PreferencePairDataset``: DPO rows (``prompt``, ``chosen``, ``rejected``, each a message list, as
  ``dft.data.pairs`` writes them) with ``chosen_ref_log_probs`` and ``rejected_ref_log_probs``. One item is one
  pair; ``PairCollator`` lays a batch out as ``chosen_0, rejected_0, chosen_1, ...`` for verl's collator.
"""

from typing import Any

import torch
from verl.utils.dataset.dataset_utils import SFTTensorCollator
from verl.utils.dataset.multiturn_sft_dataset import MultiTurnSFTDataset
from verl.utils.py_functional import convert_nested_value_to_list_recursive

from dft.losses import REF_LOG_PROBS

PAIR_SIDES = ("chosen", "rejected")


def ref_column(side: str | None = None) -> str:
    """The column holding reference log-probs: ``ref_log_probs``, or ``<side>_ref_log_probs`` for a pair side."""
    return f"{side}_{REF_LOG_PROBS}" if side else REF_LOG_PROBS


def target_positions(loss_mask: torch.Tensor) -> torch.Tensor:
    """Positions of one sequence whose successor is trained on (verl's no-padding log-prob layout)."""
    return torch.roll(loss_mask, shifts=-1, dims=0).bool()


def place_on_targets(loss_mask: torch.Tensor, values, where: str) -> torch.Tensor:
    """A float tensor shaped like ``loss_mask`` with ``values`` at the target positions and 0 elsewhere."""
    positions = target_positions(loss_mask)
    values = torch.as_tensor(list(values), dtype=torch.float32)
    if len(values) != int(positions.sum()):
        raise ValueError(
            f"{where}: {len(values)} reference log-probs for {int(positions.sum())} target tokens; were they "
            "computed with this tokenizer, chat template and data.max_length? Rerun `python -m dft.ref_logprobs`."
        )
    placed = torch.zeros(loss_mask.shape, dtype=torch.float32)
    placed[positions] = values
    return placed


def _require_columns(dataset: MultiTurnSFTDataset, columns, what: str) -> None:
    missing = [c for c in columns if c not in dataset.dataframe.columns]
    if missing:
        raise ValueError(
            f"{', '.join(map(str, dataset.parquet_files))}: no column(s) {missing} (columns: "
            f"{list(dataset.dataframe.columns)}); {what}"
        )


def _row_label(dataset: MultiTurnSFTDataset, item: int) -> str:
    return f"{', '.join(map(str, dataset.parquet_files))} row {dataset.dataframe.index[item]}"


class ReferenceScoredDataset(MultiTurnSFTDataset):
    """SFT conversations with the reference model's target-token log-probs (``ref_log_probs``)."""

    def _read_files_and_process(self):
        super()._read_files_and_process()
        _require_columns(self, [ref_column()], "add them with `python -m dft.ref_logprobs`")
        self.ref_log_probs = self.dataframe[ref_column()].tolist()

    def __getitem__(self, item):
        row = super().__getitem__(item)
        row[ref_column()] = place_on_targets(row["loss_mask"], self.ref_log_probs[item], _row_label(self, item))
        return row


class PreferencePairDataset(MultiTurnSFTDataset):
    """(chosen, rejected) conversations of one prompt; one item is a dict with both encoded rows."""

    def __init__(self, *args, require_reference: bool = True, **kwargs):
        self.require_reference = require_reference
        self._side = PAIR_SIDES[0]
        super().__init__(*args, **kwargs)

    def _read_files_and_process(self):
        self.messages_key = "prompt"  # verl's length and per-row bookkeeping run over prompts
        super()._read_files_and_process()
        _require_columns(self, PAIR_SIDES, "a DPO file has prompt, chosen and rejected (python -m dft.data.rft)")
        self.ref_log_probs = {}
        if self.require_reference:
            columns = [ref_column(side) for side in PAIR_SIDES]
            _require_columns(self, columns, "add them with `python -m dft.ref_logprobs`")
            self.ref_log_probs = {side: self.dataframe[ref_column(side)].tolist() for side in PAIR_SIDES}

    def _build_messages(self, example: dict):
        # the conversation of one side: the prompt's messages, then that side's response messages
        example = dict(example, prompt=[*_as_list(example["prompt"]), *_as_list(example[self._side])])
        return super()._build_messages(example)

    def encode(self, item: int, side: str) -> dict[str, Any]:
        """One side of pair ``item`` as verl's dataset encodes a conversation."""
        self._side = side
        row = super().__getitem__(item)
        if self.require_reference:
            where = f"{_row_label(self, item)} ({ref_column(side)})"
            row[ref_column()] = place_on_targets(row["loss_mask"], self.ref_log_probs[side][item], where)
        return row

    def __getitem__(self, item):
        return {side: self.encode(item, side) for side in PAIR_SIDES}


def _as_list(messages) -> list:
    return list(convert_nested_value_to_list_recursive(messages))


class PairCollator:
    """verl's collator over pairs laid out as consecutive rows: chosen_0, rejected_0, chosen_1, rejected_1, ..."""

    def __init__(self, collate: SFTTensorCollator):
        self.collate = collate

    def __call__(self, pairs: list[dict]) -> dict:
        return self.collate([pair[side] for pair in pairs for side in PAIR_SIDES])
