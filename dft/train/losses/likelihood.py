"""The likelihood losses: ``sft``, ``dft`` (the paper's) and ``iw_sft`` (its importance-weighted baseline).

``t`` runs over target tokens, ``p_t = pi(y_t | y_<t, x)``, ``N`` the step's loss tokens, ``sg`` stops the gradient.

- ``sft``: ``L = -1/N sum_t log p_t``. Plain cross-entropy, verl's own ``sft_loss`` to the bit.
- ``dft``: ``L = -1/N sum_t sg(w_t) log p_t`` with ``w_t = alpha * max(p_t, floor) + (1 - alpha)``. With the
  defaults (``alpha=1``, ``floor=0``) this is Dynamic Fine-Tuning, Wu et al. 2025, "On the Generalization of SFT:
  A Reinforcement Learning Perspective with Reward Rectification" (arXiv 2508.05629), eq. 9: ``-sg(p_t) log p_t``,
  which cancels the ``1/p_t`` implicit-reward weight of the SFT gradient. ``floor`` keeps the weight of very
  unlikely tokens from vanishing; ``alpha`` interpolates between DFT (1) and SFT (0).
- ``iw_sft``: importance-weighted SFT (Qin and Springenberg 2025, arXiv 2507.12856), ``-1/N sum_t sg(w) log p_t``
  with the reference model's log-probabilities ``q_t`` stored with the data (``python -m dft ref_logprobs``).
  ``iw_level=sequence``: one weight per sequence, ``w = clip(exp(mean_t(log p_t - log q_t)), 0, iw_seq_max)``;
  ``iw_level=token``: ``w_t = clip(p_t / q_t, iw_token_min, iw_token_max)``.

The tensor work lives in :mod:`dft.train.losses.tokens`, imported when a loss runs.
"""

from dft.train.columns import REF_LOG_PROBS
from dft.train.losses.registry import LossConfig, register_loss


@register_loss("sft")
def sft_loss(config: LossConfig, model_output: dict, data, dp_group=None):
    """Cross-entropy over target tokens: ``-1/N sum_t log p_t``."""
    from dft.train.losses.tokens import nll_metric, target_log_probs_and_mask, token_loss

    log_probs, mask = target_log_probs_and_mask(model_output, data)
    return token_loss(log_probs, mask, data, config), nll_metric(log_probs, mask, data)


@register_loss("dft", full_weight=True)
def dft_loss(config: LossConfig, model_output: dict, data, dp_group=None):
    """Dynamic Fine-Tuning: ``-1/N sum_t sg(p_t) log p_t`` (arXiv 2508.05629, eq. 9), options in LossConfig."""
    from dft.train.losses.tokens import dft_weights, nll_metric, target_log_probs_and_mask, token_loss, with_full_weight

    log_probs, mask = target_log_probs_and_mask(model_output, data)
    weights = with_full_weight(dft_weights(log_probs, config), data, config)
    loss = token_loss(weights * log_probs, mask, data, config)
    return loss, nll_metric(log_probs, mask, data)


def iw_weights(log_probs, ref_log_probs, mask, model_output, config: LossConfig):
    """Importance weights per token, held constant: one per sequence broadcast to its tokens, or per token."""
    import torch

    from dft.train.losses.tokens import per_sequence_sum, sequence_index

    log_ratio = log_probs.detach() - ref_log_probs.to(log_probs.dtype)
    if config.iw_level == "token":
        return log_ratio.exp().clamp(config.iw_token_min, config.iw_token_max)
    index, _ = sequence_index(model_output)
    tokens = per_sequence_sum(torch.ones_like(log_ratio), mask, model_output).clamp(min=1)
    mean_log_ratio = per_sequence_sum(log_ratio, mask, model_output) / tokens
    return mean_log_ratio.exp().clamp(0.0, config.iw_seq_max)[index]


@register_loss("iw_sft", data="reference", columns=(REF_LOG_PROBS,))
def iw_sft_loss(config: LossConfig, model_output: dict, data, dp_group=None):
    """Importance-weighted SFT: ``-1/N sum_t sg(w) log p_t`` (arXiv 2507.12856), options in LossConfig."""
    from verl.utils.metric import AggregationType, Metric

    from dft.train.losses.tokens import (
        global_token_mean,
        nll_metric,
        reference_log_probs,
        target_log_probs_and_mask,
        token_loss,
    )

    log_probs, mask = target_log_probs_and_mask(model_output, data)
    weights = iw_weights(log_probs, reference_log_probs(data), mask, model_output, config)
    loss = token_loss(weights * log_probs, mask, data, config)
    metrics = nll_metric(log_probs, mask, data)
    # the token-weighted mean weight (1 while the policy is the reference)
    metrics["train/iw_weight"] = Metric(AggregationType.SUM, global_token_mean(weights, mask, data).detach())
    return loss, metrics
