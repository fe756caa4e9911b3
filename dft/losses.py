"""Token-level fine-tuning losses in verl's engine loss signature.

Every loss here is ``fn(config, model_output, data, dp_group=None) -> (loss, metrics)``, the signature that
``TrainingWorker.set_loss_fn`` takes, and is normalised as verl's ``sft_loss`` is: the sum over this
micro-batch's loss tokens divided by the global loss-token count, times the data-parallel size, so summing
micro-batches and averaging ranks gives the global token mean, whatever the split.

Losses (``t`` runs over target tokens, ``p_t = pi(y_t | y_<t, x)``, ``sg`` stops the gradient):

- ``sft``: ``L = -1/N sum_t log p_t``. Plain cross-entropy, verl's own ``sft_loss`` to the bit.
- ``dft``: ``L = -1/N sum_t sg(w_t) log p_t`` with ``w_t = alpha * max(p_t, floor) + (1 - alpha)``.
  With the defaults (``alpha=1``, ``floor=0``) this is Dynamic Fine-Tuning, Wu et al. 2025, "On the
  Generalization of SFT: A Reinforcement Learning Perspective with Reward Rectification" (arXiv 2508.05629),
  eq. 9: ``-sg(p_t) log p_t``, which cancels the ``1/p_t`` implicit-reward weight of the SFT gradient.
  ``floor`` keeps the weight of very unlikely tokens from vanishing; ``alpha`` interpolates between DFT (1)
  and SFT (0).

DFT's weight is ``exp`` of the log-probability verl already returns for the target token, so the loss adds
O(tokens) work and never materialises a full-vocabulary softmax. Because it only reads ``log_probs``, it is
the same with or without remove-padding, with fused kernels (which return log-probs, not logits) and with
Ulysses sequence parallelism (the engine gathers log-probs over the sequence-parallel group before the loss).

Every loss also reports plain cross-entropy as ``train/nll`` (DFT's loss is several times smaller than CE,
so ``train/loss`` alone cannot compare a DFT and an SFT run).
"""

from dataclasses import dataclass
from functools import partial
from typing import Callable

import torch
from tensordict import TensorDict
from verl.utils import tensordict_utils as tu
from verl.utils.dataset.dataset_utils import DatasetPadMode
from verl.utils.metric import AggregationType, Metric
from verl.utils.torch_functional import masked_sum

NLL_METRIC = "train/nll"


@dataclass(frozen=True)
class LossConfig:
    """The ``loss`` section of the Hydra config."""

    name: str = "dft"
    # DFT only: the token weight is max(p, weight_floor); 0 is the paper's DFT.
    weight_floor: float = 0.0
    # DFT only: weight = alpha * p + (1 - alpha); 1 is the paper's DFT, 0 is SFT.
    alpha: float = 1.0

    def __post_init__(self):
        if self.name not in LOSSES:
            raise ValueError(f"loss.name={self.name!r} is not a known loss; valid names: {sorted(LOSSES)}")
        for field, value in (("weight_floor", self.weight_floor), ("alpha", self.alpha)):
            if not 0.0 <= value <= 1.0:
                raise ValueError(f"loss.{field}={value} must lie in [0, 1]")


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


def _global_token_mean(values: torch.Tensor, mask: torch.Tensor, data: TensorDict) -> torch.Tensor:
    """This micro-batch's share of the mean over all loss tokens of the global batch (verl's normalisation)."""
    return masked_sum(values, mask) / data["batch_num_tokens"] * data["dp_size"]


def _nll_metric(log_probs: torch.Tensor, mask: torch.Tensor, data: TensorDict) -> dict:
    # SUM over micro-batches of per-micro-batch shares, averaged over ranks (Metric.aggregate_dp) = global mean.
    nll = -_global_token_mean(log_probs.detach(), mask, data)
    return {NLL_METRIC: Metric(aggregation=AggregationType.SUM, value=nll)}


def sft_loss(config: LossConfig, model_output: dict, data: TensorDict, dp_group=None):
    """Cross-entropy over target tokens: ``-1/N sum_t log p_t``."""
    log_probs, mask = target_log_probs_and_mask(model_output, data)
    loss = -_global_token_mean(log_probs, mask, data)
    return loss, _nll_metric(log_probs, mask, data)


def dft_weights(log_probs: torch.Tensor, config: LossConfig) -> torch.Tensor:
    """``sg(alpha * max(p, floor) + 1 - alpha)`` per token, from log-probabilities (no gradient)."""
    p = log_probs.detach().exp()
    if config.weight_floor > 0:
        p = p.clamp(min=config.weight_floor)
    if config.alpha < 1:
        p = config.alpha * p + (1.0 - config.alpha)
    return p


def dft_loss(config: LossConfig, model_output: dict, data: TensorDict, dp_group=None):
    """Dynamic Fine-Tuning: ``-1/N sum_t sg(p_t) log p_t`` (arXiv 2508.05629, eq. 9), options in LossConfig."""
    log_probs, mask = target_log_probs_and_mask(model_output, data)
    weights = dft_weights(log_probs, config)
    loss = -_global_token_mean(weights * log_probs, mask, data)
    return loss, _nll_metric(log_probs, mask, data)


LOSSES: dict[str, Callable] = {"sft": sft_loss, "dft": dft_loss}


def loss_config_from(section) -> LossConfig:
    """Validate the ``loss`` config section (a mapping) into a LossConfig; unknown keys are an error."""
    section = dict(section or {})
    known = set(LossConfig.__dataclass_fields__)
    unknown = sorted(set(section) - known)
    if unknown:
        raise ValueError(f"unknown key(s) in the loss section: {unknown}; valid keys: {sorted(known)}")
    return LossConfig(**section)


def get_loss_fn(config: LossConfig) -> Callable:
    """The loss named by ``config.name`` with its config bound, as ``set_loss_fn`` expects."""
    return partial(LOSSES[config.name], config)
