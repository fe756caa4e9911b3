"""Score training data with a frozen model through verl's engine, forward only: reference log-probs for
``iw_sft`` and ``dpo``, and the token probabilities of the paper's Figure 2.

    torchrun --nproc_per_node=8 -m dft ref_logprobs preset=qwen2.5-math-1.5b \\
        data.train_files=data/numina/train.parquet ref.output=data/numina/train.ref.parquet

The output is the input parquet with the log-probability of every target token (the tokens the loss mask
trains on), in order, added as a list column: ``ref_log_probs`` for conversations (``messages``), and
``chosen_ref_log_probs`` / ``rejected_ref_log_probs`` for DPO pairs (``prompt``, ``chosen``, ``rejected``).

``ref.topk=K`` stores instead, per target token, the reference's K most likely tokens, their log-probs and the
log of the remaining mass (``ref_topk_ids``, ``ref_topk_log_probs``, ``ref_topk_rest``; ``dft/train/ref_topk.py``), what
``loss.name=asft`` reads; they are taken from the logits through verl's logits hook (``distillation_use_topk``).

The tokens scored are the ones training trains on: the dataset follows ``data.format`` (``setting=paper``
scores the official format), so pass the training run's setting.

``model.path`` may be a verl checkpoint folder (a run's ``trainer.default_local_dir``): its latest step's
Hugging Face weights are scored. The model is built by verl's engine exactly as ``dft train`` builds it (same
config, dtype and attention), so at step 0 of a training run the policy's log-probs equal the stored ones and
every importance weight is 1. ``engine.forward_only=true`` loads bf16 weights without optimizer state, for memory.

The job resumes: each rank appends its scored rows to ``<output>.parts/rank<r>.jsonl`` after every step (the
evaluation's kill-safe JSONL store, keyed by row), and a rerun skips the steps every rank has finished. The
parts are merged into the output at the end.
"""

import os
import shutil
import sys
from functools import partial
from pathlib import Path

import hydra
import pyarrow.parquet as pq
import torch

import dft.train.cpu_platform  # noqa: F401  (registers the CPU platform before verl's trainer is imported)
from dft.core.paths import CONFIGS

# isort: split
from omegaconf import open_dict
from verl.trainer.sft_trainer import SFTTrainer

from dft.core.io import atomic_write
from dft.eval.store import append_rows, load_rows
from dft.models.checkpoints import resolve_model
from dft.train.columns import PAIR_SIDES, TOPK_COLUMNS, ref_column
from dft.train.config import prepare_config
from dft.train.progress import hydra_logs_beside
from dft.train.ref_topk import arrow_columns, scored_topk, storage_row, topk_hook, with_topk_metadata
from dft.train.run_record import METADATA, claim_run
from dft.train.sft_datasets import PairCollator, PreferencePairDataset, target_positions


def is_pair_file(paths: list[str]) -> bool:
    """DPO pairs (prompt, chosen, rejected) or conversations (messages), from the first file's columns."""
    names = set(pq.read_schema(paths[0]).names)
    return {"prompt", *PAIR_SIDES} <= names


def data_files(config) -> list[str]:
    """``data.train_files`` as a list of paths (Hydra gives a string or a list)."""
    files = config.data.train_files
    return [files] if isinstance(files, str) else list(files)


def step_rows(n_rows: int, rows_per_step: int, dp_size: int, dp_rank: int) -> list[list[int]]:
    """Each step's row indices for one rank; the last step is padded by repeating the final row so every rank
    runs the same number of forward passes (FSDP's collectives need it)."""
    steps = []
    per_rank = rows_per_step // dp_size
    for start in range(0, n_rows, per_rank * dp_size):
        rows = list(range(start + dp_rank * per_rank, start + (dp_rank + 1) * per_rank))
        steps.append([min(r, n_rows - 1) for r in rows])
    return steps


def target_log_probs(log_probs: torch.Tensor, loss_mask: torch.Tensor) -> list[float]:
    """One sequence's log-probs at its target positions, in order (the stored layout)."""
    return log_probs[target_positions(loss_mask)].float().tolist()


class ReferenceScorer(SFTTrainer):
    """verl's SFT trainer set-up reduced to what scoring needs: config, engine, dataset; no loader, no fit.

    Missing seam: verl 0.9.1's ``SFTTrainer.__init__`` has no forward-only path. It always builds the training
    dataloader, sizes the optimizer's schedule from it and loads the latest checkpoint of
    ``trainer.default_local_dir``, so this class runs verl's own ``_build_config`` and ``_build_engine`` (the
    hooks the trainer's ``__init__`` calls) and builds the dataset itself.
    """

    def __init__(self, config, pairs: bool):
        self.config = config
        self.rank = torch.distributed.get_rank()
        self.pairs = pairs
        self._build_config()
        self.optimizer_config.total_training_steps = 1
        self._build_engine()
        self.training_client.reset()
        tokenizer = self.model_config.tokenizer
        files = data_files(config)
        if pairs:
            self.dataset = PreferencePairDataset(files, tokenizer, config.data, require_reference=False)
        else:
            from verl.trainer.sft_trainer import create_sft_dataset

            self.dataset = create_sft_dataset(files, config.data, tokenizer, None)
        from verl.utils.dataset.dataset_utils import SFTTensorCollator

        collate = SFTTensorCollator(config.data.pad_mode)
        self.collate = PairCollator(collate) if pairs else collate
        self.topk = int(config.ref.get("topk", 0) or 0)
        if self.topk:  # the reference's top-K comes through verl's logits hook, from a loss function
            self.training_client.set_loss_fn(partial(topk_hook, self.topk))

    def _meta_info(self) -> dict:
        data = self.config.data
        return {
            "use_remove_padding": self.config.model.use_remove_padding,
            "use_dynamic_bsz": data.use_dynamic_bsz,
            "max_token_len_per_gpu": data.max_token_len_per_gpu,
            "micro_batch_size_per_gpu": data.micro_batch_size_per_gpu,
            "temperature": 1.0,
            "global_batch_size": data.train_batch_size,
            "pad_mode": data.pad_mode,
            "pad_token_id": self.model_config.tokenizer.pad_token_id,
            "compute_loss": bool(self.topk),
            "distillation_use_topk": bool(self.topk),
            "force_group_size": len(PAIR_SIDES) if self.pairs else 1,
        }

    def score_rows(self, rows: list[int]) -> list:
        """Target log-probs of each row (a [chosen, rejected] pair of lists for DPO rows)."""
        from tensordict.tensorclass import NonTensorData
        from verl.utils import tensordict_utils as tu

        batch = tu.get_tensordict(tensor_dict=self.collate([self.dataset[r] for r in rows]),
                                  non_tensor_dict=self._meta_info())  # fmt: skip
        lengths = batch["input_ids"].offsets().diff().tolist()
        tu.assign_non_tensor(batch, global_token_num=NonTensorData(lengths))
        output = self.training_client.infer_batch(batch)
        if self.topk:
            masks = batch["loss_mask"].unbind()
            return [scored_topk(output, i, target_positions(mask), self.topk) for i, mask in enumerate(masks)]
        pieces = zip(output["log_probs"].unbind(), batch["loss_mask"].unbind())
        per_sequence = [target_log_probs(log_probs, mask) for log_probs, mask in pieces]
        if self.pairs:
            return [per_sequence[i : i + len(PAIR_SIDES)] for i in range(0, len(per_sequence), len(PAIR_SIDES))]
        return per_sequence


def scored_rows(part: Path) -> dict[int, list | dict]:
    """The rows a rank's part file holds, ``{row: log_probs}`` (or ``{row: {top-K column: list}}``; the eval
    store's kill-safe JSONL, torn tail cut)."""
    return {row: record["log_probs"] for (row, _), record in load_rows(part).items()}


def _steps_done(done_rows: set[int], steps: list[list[int]]) -> int:
    """How many leading steps are finished on every rank (each rank's count, minimum over ranks)."""
    done = 0
    while done < len(steps) and set(steps[done]) <= done_rows:
        done += 1
    agreed = torch.tensor([done])
    torch.distributed.all_reduce(agreed, op=torch.distributed.ReduceOp.MIN)
    return int(agreed.item())


def write_output(files: list[str], scored: dict, pairs: bool, output: Path, topk: int = 0,
                 fingerprint: dict | None = None) -> None:  # fmt: skip
    """The input rows with the reference log-prob column(s) (or the top-K columns) added, written atomically, with
    the scoring's ``fingerprint`` in the file's metadata (``dft.train.run_record``)."""
    import json

    import pyarrow as pa

    table = pa.concat_tables([pq.read_table(f) for f in files])
    missing = [row for row in range(table.num_rows) if row not in scored]
    if missing:
        raise RuntimeError(f"rows {missing[:10]} of {files} were not scored ({len(missing)} in all)")
    float_lists = pa.list_(pa.float32())
    if topk:
        rows = [storage_row(*(torch.tensor(scored[row][c]) for c in TOPK_COLUMNS)) for row in range(table.num_rows)]
        for name, values in arrow_columns(rows).items():
            table = _with_column(table, name, values)
        table = with_topk_metadata(table, topk)
    elif pairs:
        for i, side in enumerate(PAIR_SIDES):
            column = [scored[row][i] for row in range(table.num_rows)]
            table = _with_column(table, ref_column(side), pa.array(column, type=float_lists))
    else:
        column = [scored[row] for row in range(table.num_rows)]
        table = _with_column(table, ref_column(), pa.array(column, type=float_lists))
    if fingerprint is not None:
        table = table.replace_schema_metadata({**(table.schema.metadata or {}), METADATA: json.dumps(fingerprint)})
    atomic_write(output, lambda tmp: pq.write_table(table, tmp))


def _with_column(table, name: str, values):
    if name in table.column_names:
        table = table.remove_column(table.column_names.index(name))
    return table.append_column(name, values)


def score(config, fingerprint: dict | None = None) -> Path:
    """Score every row of ``data.train_files`` on all ranks and write ``ref.output``; return its path."""
    from verl.utils.distributed import destroy_global_process_group, initialize_global_process_group

    files = data_files(config)
    output = Path(config.ref.output)
    pairs = is_pair_file(files)
    parts = Path(f"{output}.parts")
    initialize_global_process_group()
    rank, world = torch.distributed.get_rank(), torch.distributed.get_world_size()
    scorer = ReferenceScorer(config, pairs)
    dp_size, dp_rank = scorer.engine.get_data_parallel_size(), scorer.engine.get_data_parallel_rank()
    steps = step_rows(len(scorer.dataset), config.ref.rows_per_step, dp_size, dp_rank)
    parts.mkdir(parents=True, exist_ok=True)
    part = parts / f"rank{rank}.jsonl"
    done_rows = set(scored_rows(part))
    start = _steps_done(done_rows, steps)
    if rank == 0:
        print(f"[dft ref_logprobs] {len(scorer.dataset)} rows, {len(steps)} steps on {world} ranks; from step {start}")
    for number, rows in enumerate(steps[start:], start=start):
        # one record per row (the padded last step repeats a row; a redone step may hold rows already saved)
        new = {row: log_probs for row, log_probs in zip(rows, scorer.score_rows(rows)) if row not in done_rows}
        append_rows(part, [{"id": row, "sample": 0, "log_probs": log_probs} for row, log_probs in new.items()])
        done_rows.update(new)
        if rank == 0 and (number + 1) % 10 == 0:
            print(f"[dft ref_logprobs] step {number + 1}/{len(steps)}")
    torch.distributed.barrier()
    if rank == 0:
        scored = {}
        for rank_part in sorted(parts.glob("rank*.jsonl")):
            scored.update(scored_rows(rank_part))
        write_output(files, scored, pairs, output, scorer.topk, fingerprint)
        shutil.rmtree(parts)
        print(f"[dft ref_logprobs] wrote {output}")
    torch.distributed.barrier()
    destroy_global_process_group()
    return output


def check_config(config) -> None:
    """The scoring run needs an output path and a step size that every data-parallel rank can share."""
    with open_dict(config):
        config.model.path = resolve_model(config.model.path)
        config.loss.name = "sft"  # scoring reads plain conversations or pairs, never stored log-probs
        config.loss.full_weight_tokens = []
        if config.ref.get("topk") and config.model.get("use_fused_kernels"):
            config.model.use_fused_kernels = False  # the top-K is read from the logits, which fused kernels never hold
        config.trainer.resume_mode = "disable"
    files = data_files(config)  # a recipe's dry run checks commands before their data exist
    if config.ref.get("topk") and os.path.exists(files[0]) and is_pair_file(files):
        raise ValueError("ref.topk: the top-K reference is for conversations (loss.name=asft), not DPO pairs")
    if not config.ref.output:
        raise ValueError("ref.output: give the parquet to write, e.g. ref.output=data/train.ref.parquet")
    world = int(os.environ.get("WORLD_SIZE", 1))
    if config.ref.rows_per_step % world:
        raise ValueError(f"ref.rows_per_step={config.ref.rows_per_step} must be a multiple of the {world} ranks")


def main() -> None:
    """``dft ref_logprobs``: its Hydra folder (composed config, job log) goes beside ``ref.output``."""
    sys.argv = hydra_logs_beside(sys.argv, "ref.output", ".logs")
    score_from_config()


@hydra.main(config_path=str(CONFIGS), config_name="dft_trainer", version_base=None)
def score_from_config(config) -> None:
    fingerprint = claim_run(config, scoring=True)  # before check_config resolves model.path
    check_config(config)
    score(prepare_config(config, training=False), fingerprint)
