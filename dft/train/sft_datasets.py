"""verl SFT datasets for the losses that need more than a conversation: reference log-probs and preference pairs.

Both subclass verl's ``MultiTurnSFTDataset`` and are chosen through verl's own seam, ``data.custom_cls``
(``dft.train.trainer.prepare_config`` sets it from ``loss.name``), so tokenisation, chat template, loss mask and
truncation are verl's.

Reference log-probabilities are stored per row as the list of the reference model's log-probabilities of the
*target* tokens (the tokens the loss mask trains on), in order; ``python -m dft ref_logprobs`` writes them.
Here they are placed at the positions of verl's no-padding layout, where position ``i`` scores token ``i + 1``,
so a loss reads them exactly as it reads the policy's ``log_probs``.

- ``ReferenceScoredDataset``: SFT rows (``messages``) with ``ref_log_probs`` (for ``iw_sft``).
- ``ReferenceTopKDataset``: SFT rows with the reference's top-K distribution per target token (for ``asft``,
  ``dft.train.ref_topk``), and ``OfficialReferenceTopKDataset`` in the official format.
- ``PreferencePairDataset``: DPO rows (``prompt``, ``chosen``, ``rejected``, each a message list, as
  ``dft.rl.pairs`` writes them) with ``chosen_ref_log_probs`` and ``rejected_ref_log_probs``. One item is one
  pair; ``PairCollator`` lays a batch out as ``chosen_0, rejected_0, chosen_1, ...`` for verl's collator.
- ``OfficialFormatDataset``: the same ``messages`` parquet rendered in the official DFT code's format
  (``dft.data.training_format``: bare problem through the chat template with the generation prompt, target = solution +
  eos), and ``OfficialReferenceScoredDataset`` with reference log-probs on top.

``DATASETS`` maps (``data.format``, the rows a loss reads: ``LossSpec.data``) to the class.
"""

from typing import Any

import pandas as pd
import torch
import torch.nn.functional as F
from verl.utils.dataset.dataset_utils import DatasetPadMode, SFTTensorCollator
from verl.utils.dataset.multiturn_sft_dataset import MultiTurnSFTDataset
from verl.utils.py_functional import convert_nested_value_to_list_recursive

from dft.data.training_format import encode_official, official_template, problem_and_solution
from dft.train.columns import PAIR_SIDES, TOPK_COLUMNS, ref_column
from dft.train.ref_topk import place_topk, stored_k


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
            "computed with this tokenizer, chat template and data.max_length? Rerun `python -m dft ref_logprobs`."
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


class OfficialFormatDataset(MultiTurnSFTDataset):
    """One-turn conversations in the official DFT format (``dft.data.training_format``); verl's output layout and
    truncation.

    ``data.prompt_template`` names a plain evaluation template for tokenizers without a chat template (default:
    the model preset's). Over-long rows are cut on the right (``data.truncation=right``, as the official
    trainer did) or refused (``error``).
    """

    def __init__(self, parquet_files, tokenizer, config, processor=None, max_samples: int = -1):
        self.prompt_template = (config or {}).get("prompt_template")
        super().__init__(parquet_files, tokenizer, config, processor, max_samples)

    def _read_files_and_process(self):
        frames = [pd.read_parquet(path, dtype_backend="pyarrow") for path in self.parquet_files]
        self.dataframe = pd.concat(frames)
        if 0 < self.max_samples < len(self.dataframe):
            self.dataframe = self.dataframe.iloc[: self.max_samples]
        self.messages = self.dataframe[self.messages_key].apply(convert_nested_value_to_list_recursive).tolist()
        self.template = official_template(self.tokenizer, self.prompt_template)

    def __getitem__(self, item):
        problem, solution = problem_and_solution(self.messages[item], _row_label(self, item))
        [(prompt_ids, target_ids)] = encode_official(self.tokenizer, [(problem, solution)], self.template)
        input_ids = torch.tensor(prompt_ids + target_ids, dtype=torch.long)
        loss_mask = torch.tensor([0] * len(prompt_ids) + [1] * len(target_ids), dtype=torch.long)
        if len(input_ids) > self.max_length:
            if self.truncation == "error":
                raise ValueError(f"{_row_label(self, item)}: {len(input_ids)} tokens, more than data.max_length")
            input_ids, loss_mask = input_ids[: self.max_length], loss_mask[: self.max_length]
        row = {"input_ids": input_ids, "position_ids": torch.arange(len(input_ids)), "loss_mask": loss_mask}
        return row if self.pad_mode == DatasetPadMode.NO_PADDING else self._right_padded(row)

    def _right_padded(self, row: dict) -> dict:
        pad = self.max_length - len(row["input_ids"])
        pad_id = self.tokenizer.pad_token_id if self.tokenizer.pad_token_id is not None else 0
        attention_mask = torch.ones_like(row["input_ids"])
        return {
            "input_ids": F.pad(row["input_ids"], (0, pad), value=pad_id),
            "attention_mask": F.pad(attention_mask, (0, pad)),
            "position_ids": F.pad(row["position_ids"], (0, pad)),
            "loss_mask": F.pad(row["loss_mask"], (0, pad)),
        }


class WithReferenceLogProbs:
    """Mixin for a conversation dataset: each row also carries the reference model's target-token log-probs."""

    def _read_files_and_process(self):
        super()._read_files_and_process()
        _require_columns(self, [ref_column()], "add them with `python -m dft ref_logprobs`")
        self.ref_log_probs = self.dataframe[ref_column()].tolist()

    def __getitem__(self, item):
        row = super().__getitem__(item)
        row[ref_column()] = place_on_targets(row["loss_mask"], self.ref_log_probs[item], _row_label(self, item))
        return row


class ReferenceScoredDataset(WithReferenceLogProbs, MultiTurnSFTDataset):
    """SFT conversations (chat format) with the reference model's target-token log-probs (``ref_log_probs``)."""


class OfficialReferenceScoredDataset(WithReferenceLogProbs, OfficialFormatDataset):
    """Official-format conversations with the reference model's target-token log-probs (``ref_log_probs``)."""


class WithReferenceTopK:
    """Mixin for a conversation dataset: each row also carries the reference's top-K per target position
    (``dft.train.ref_topk``: flat (L*K,) ids and log-probs and (L,) log rest mass on the no-padding layout)."""

    def _read_files_and_process(self):
        super()._read_files_and_process()
        _require_columns(self, TOPK_COLUMNS, "add them with `python -m dft ref_logprobs ref.topk=K`")
        self.topk = stored_k(self.parquet_files)
        self.ref_topk = {column: self.dataframe[column].tolist() for column in TOPK_COLUMNS}

    def __getitem__(self, item):
        row = super().__getitem__(item)
        stored = [self.ref_topk[column][item] for column in TOPK_COLUMNS]
        row.update(place_topk(row["loss_mask"], *stored, self.topk, _row_label(self, item)))
        return row


class ReferenceTopKDataset(WithReferenceTopK, MultiTurnSFTDataset):
    """SFT conversations (chat format) with the reference's top-K distribution per target token (``asft``)."""


class OfficialReferenceTopKDataset(WithReferenceTopK, OfficialFormatDataset):
    """Official-format conversations with the reference's top-K distribution per target token (``asft``)."""


class PreferencePairDataset(MultiTurnSFTDataset):
    """(chosen, rejected) conversations of one prompt; one item is a dict with both encoded rows."""

    def __init__(self, *args, require_reference: bool = True, **kwargs):
        self.require_reference = require_reference
        self._side = PAIR_SIDES[0]
        super().__init__(*args, **kwargs)

    def _read_files_and_process(self):
        self.messages_key = "prompt"  # verl's length and per-row bookkeeping run over prompts
        super()._read_files_and_process()
        _require_columns(self, PAIR_SIDES, "a DPO file has prompt, chosen and rejected (python -m dft data rft)")
        self.ref_log_probs = {}
        if self.require_reference:
            columns = [ref_column(side) for side in PAIR_SIDES]
            _require_columns(self, columns, "add them with `python -m dft ref_logprobs`")
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


# (data.format, LossSpec.data) -> the class verl's data.custom_cls loads from this module (None: verl's own)
DATASETS = {
    ("chat", "conversation"): None,
    ("chat", "reference"): "ReferenceScoredDataset",
    ("chat", "pairs"): "PreferencePairDataset",
    ("official", "conversation"): "OfficialFormatDataset",
    ("official", "reference"): "OfficialReferenceScoredDataset",
    ("chat", "reference_topk"): "ReferenceTopKDataset",
    ("official", "reference_topk"): "OfficialReferenceTopKDataset",
}


def dataset_for(fmt: str, rows: str) -> str | None:
    """The class name for data format ``fmt`` and a loss reading ``rows``; an unsupported pair is an error."""
    if (fmt, rows) not in DATASETS:
        supported = sorted(f"{f}/{r}" for f, r in DATASETS)
        raise ValueError(f"data.format={fmt} has no dataset for a loss that reads {rows}; supported: {supported}")
    return DATASETS[(fmt, rows)]
