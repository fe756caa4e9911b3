"""What every token-level loss shares: target log-probs and masks, the two normalisations, the DFT weight.

Everything here works on verl's engine tensors (torch, tensordict); the loss modules import it when a loss runs,
so that listing the losses (:mod:`dft.train.losses.registry`) imports neither torch nor verl.
"""

from __future__ import annotations

import torch
from tensordict import TensorDict
from verl.utils import tensordict_utils as tu
from verl.utils.dataset.dataset_utils import DatasetPadMode
from verl.utils.metric import AggregationType, Metric
from verl.utils.torch_functional import masked_sum

from dft.train.columns import REF_LOG_PROBS
from dft.train.losses.registry import NLL_METRIC, LossConfig


def micro_batches_per_rank(data: TensorDict) -> int:
    """``M``: the micro-batches each rank runs per step, with fixed micro-batches (``data.use_dynamic_bsz=False``).

    ``global_batch_size`` counts dataset items (rows, or pairs for DPO), and a micro-batch holds
    ``micro_batch_size_per_gpu`` items, so ``M = global_batch_size / dp_size / micro_batch_size_per_gpu``."""
    if tu.get_non_tensor_data(data=data, key="use_dynamic_bsz", default=False):
        raise ValueError(
            "loss.normalization=official takes a mean per micro-batch of data.micro_batch_size_per_gpu rows, as "
            "the official trainer did: set data.use_dynamic_bsz=False (dynamic micro-batches vary in number)"
        )
    per_rank = data["global_batch_size"] // data["dp_size"]
    return max(1, per_rank // data["micro_batch_size_per_gpu"])


def require_units(data: TensorDict, unit: str = "token") -> None:
    """A step whose global batch has no loss token cannot train: say so instead of dividing by zero."""
    if unit == "token" and data["batch_num_tokens"] == 0:
        raise ValueError(
            "this global batch has no loss token: every row in it lost its response to truncation at "
            "data.max_length, or has no assistant turn (the count of such rows is printed at training start; "
            "re-prepare the data with --max-length so they are skipped)"
        )


def normalize(total: torch.Tensor, count, data: TensorDict, config: LossConfig, unit: str = "token"):
    """This micro-batch's share of the step's loss, from the sum ``total`` of its units' losses over ``count`` units.

    ``token``: ``total / N * dp_size`` (``N`` the global unit count), so micro-batches sum and ranks average to
    ``1/N sum_u l_u``. ``official``: the micro-batch mean ``total / count`` back-propagated times ``M_o / M``
    (the official run's micro-batches per rank over this run's), so that micro-batches sum and ranks average to
    ``M_o`` times the mean of all micro-batch means, the official 8-GPU gradient on any layout; *valued* at
    ``1/M`` of the mean, so that verl's logged loss (the same sum and average) is the official ``train/loss``.
    """
    require_units(data, unit)
    if config.normalization == "official":
        mean = total / max(int(count), 1)  # an empty micro-batch has total 0 and adds nothing
        per_rank = micro_batches_per_rank(data)
        return (mean - mean.detach()) * (config.official_micro_batches / per_rank) + mean.detach() / per_rank
    global_count = data["batch_num_tokens"] if unit == "token" else data["global_batch_size"]
    return total / global_count * data["dp_size"]


def global_token_mean(values: torch.Tensor, mask: torch.Tensor, data: TensorDict) -> torch.Tensor:
    """This micro-batch's share of the mean over all loss tokens of the global batch (verl's normalisation)."""
    return masked_sum(values, mask) / data["batch_num_tokens"] * data["dp_size"]


def nll_metric(log_probs: torch.Tensor, mask: torch.Tensor, data: TensorDict) -> dict:
    # SUM over micro-batches of per-micro-batch shares, averaged over ranks (Metric.aggregate_dp) = global mean.
    nll = -global_token_mean(log_probs.detach(), mask, data)
    return {NLL_METRIC: Metric(aggregation=AggregationType.SUM, value=nll)}


def token_loss(weighted_log_probs: torch.Tensor, mask: torch.Tensor, data: TensorDict, config: LossConfig):
    """``-sum_t w_t log p_t`` over this micro-batch's loss tokens, normalised by ``loss.normalization``."""
    return -normalize(masked_sum(weighted_log_probs, mask), mask.sum(), data, config)


def target_log_probs_and_mask(model_output: dict, data: TensorDict) -> tuple[torch.Tensor, torch.Tensor]:
    """The log-probability of each token's successor and the mask of tokens that are trained on.

    No-padding mode: ``log_probs`` and ``loss_mask`` are jagged tensors aligned with the input; ``log_probs[i]``
    scores token ``i + 1``, so the mask is rolled left by one (as verl's ``sft_loss`` does; each sequence starts
    with an untrained prompt token, so nothing leaks across sequences). Right-padding mode: both are already
    aligned with the response.
    """
    pad_mode = tu.get_non_tensor_data(data=data, key="pad_mode", default=DatasetPadMode.NO_PADDING)
    log_prob = model_output["log_probs"]
    if pad_mode == DatasetPadMode.NO_PADDING:
        loss_mask = torch.roll(data["loss_mask"].values(), shifts=-1, dims=0)
        return log_prob.values(), loss_mask
    return log_prob, data["response_mask"].to(bool)


def dft_weights(log_probs: torch.Tensor, config: LossConfig) -> torch.Tensor:
    """``sg(alpha * max(p, floor) + 1 - alpha)`` per token, from log-probabilities (no gradient)."""
    p = log_probs.detach().exp()
    if config.weight_floor > 0:
        p = p.clamp(min=config.weight_floor)
    if config.alpha < 1:
        p = config.alpha * p + (1.0 - config.alpha)
    return p


def full_weight_mask(data: TensorDict, config: LossConfig) -> torch.Tensor | None:
    """Where the *target* token (the successor, in the no-padding layout) is one of ``loss.full_weight_tokens``."""
    if not config.full_weight_tokens:
        return None
    unresolved = [t for t in config.full_weight_tokens if not isinstance(t, int)]
    pad_mode = tu.get_non_tensor_data(data=data, key="pad_mode", default=DatasetPadMode.NO_PADDING)
    if unresolved or pad_mode != DatasetPadMode.NO_PADDING:
        raise ValueError(f"loss.full_weight_tokens={list(config.full_weight_tokens)} needs token ids (strings are "
                         f"resolved by dft train) and data.pad_mode=no_padding (got {pad_mode!r})")  # fmt: skip
    targets = torch.roll(data["input_ids"].values(), shifts=-1, dims=0)
    return torch.isin(targets, torch.tensor(config.full_weight_tokens, device=targets.device))


def with_full_weight(weights: torch.Tensor, data: TensorDict, config: LossConfig) -> torch.Tensor:
    """``weights`` with 1 at the targets in ``loss.full_weight_tokens``."""
    full = full_weight_mask(data, config)
    return weights if full is None else torch.where(full, torch.ones_like(weights), weights)


def reference_log_probs(data: TensorDict) -> torch.Tensor:
    """The reference model's log-probabilities, in the layout of ``target_log_probs_and_mask``."""
    pad_mode = tu.get_non_tensor_data(data=data, key="pad_mode", default=DatasetPadMode.NO_PADDING)
    if pad_mode != DatasetPadMode.NO_PADDING or REF_LOG_PROBS not in data.keys():
        raise ValueError(
            f"this loss needs the data's {REF_LOG_PROBS!r} (made by `python -m dft ref_logprobs`) in "
            f"data.pad_mode=no_padding; got pad_mode={pad_mode!r} and keys {sorted(data.keys())}"
        )
    return data[REF_LOG_PROBS].values()


def sequence_index(model_output: dict) -> tuple[torch.Tensor, int]:
    """For each flat token of the no-padding layout, the index of its sequence; and the number of sequences."""
    lengths = model_output["log_probs"].offsets().diff()
    return torch.repeat_interleave(torch.arange(len(lengths), device=lengths.device), lengths), len(lengths)


def per_sequence_sum(values: torch.Tensor, mask: torch.Tensor, model_output: dict) -> torch.Tensor:
    """Sum of ``values`` over each sequence's masked tokens (no-padding layout), shape (sequences,)."""
    index, count = sequence_index(model_output)
    masked = torch.where(mask.bool(), values, torch.zeros_like(values))
    return torch.zeros(count, dtype=values.dtype, device=values.device).index_add(0, index, masked)


def global_pair_mean(values: torch.Tensor, data: TensorDict) -> torch.Tensor:
    """This micro-batch's share of the mean over all pairs of the global batch (``global_batch_size`` pairs)."""
    return values.sum() / data["global_batch_size"] * data["dp_size"]
