"""Losses beyond DFT, in the registry of :mod:`dft.train.losses.registry`: the probability-power family and ASFT.

``t`` runs over target tokens, ``p_t = pi(y_t | y_<t, x)``, ``N`` the step's loss tokens; both take
``loss.full_weight_tokens`` (targets that keep the plain ``-log p_t`` of SFT, e.g. eos and end-of-turn tokens,
which DFT-style weights barely train: yongliang-wu/DFT issue 10) and ``loss.normalization`` as ``dft`` does.

- ``prob_power`` (Li et al., "Beyond Log Likelihood", arXiv 2510.00526): ``L = 1/N sum_t (1 - p_t^a) / a`` with
  ``a = loss.power_alpha > 0``. Its gradient is ``-p_t^a grad log p_t``: ``a -> 0`` is SFT's (``-grad log p``),
  ``a = 1`` is DFT's (``-sg(p) grad log p``), larger ``a`` down-weights unlikely tokens more. Valued as
  ``-expm1(a log p) / a`` (exact for small ``a``, where ``1 - p^a`` cancels), differentiated through ``exp``: the
  backward of ``expm1`` forms ``p^a`` as ``expm1(x) + 1``, absolute error ~6e-8 in float32, which zeroes every
  weight ``p^a`` below it (``a = 10``: every ``p < 0.19``); ``exp`` keeps ``p^a`` to its relative precision.
- ``asft`` (Zhu et al., "Anchored Supervised Fine-Tuning", arXiv 2509.23753): DFT plus ``loss.kl_beta`` times
  a KL to the frozen starting model at every target position, ``L = 1/N sum_t [-sg(p_t) log p_t + beta KL_t]``.

  Direction: ``KL_t = KL(q_t || pi_t)``, ``q`` the reference, ``pi`` the policy, over the vocabulary. This is
  what the authors' code computes (zhuchichi56/ASFT ``train_v2.py``, mode ``asft``: ``F.kl_div(log_softmax(
  policy logits), softmax(reference logits))`` summed over the vocabulary, added to the DFT token loss and
  averaged over target tokens), the objective behind the paper's numbers. It is also the direction that a
  stored reference can carry: the KL weighs each token by the *reference's* probability, so the reference's
  top-K plus one bucket for the rest (``dft.train.ref_topk``) hold nearly all of it, and the stored support never
  depends on the policy being trained. (A reverse KL, weighted by the policy, would need the policy's mass
  wherever it drifts, unknown when the data is scored.) ``KL_t`` here is ``KL_K``, the exact KL between the two
  distributions coarsened to the reference's top-K and one rest bucket; ``benchmarks/topk_kl.py`` measures
  its gap to the full KL (docs/beyond_dft.md).

  The policy's logits reach the loss through verl's logits hook: with ``distillation_use_topk`` set on a
  batch, verl's engine calls the loss function with ``student_logits`` before the loss proper and stores what
  it returns in ``model_output`` (verl's top-K distillation path). Fused kernels never hold logits, so
  ``asft`` needs ``model.use_fused_kernels=False``.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from dft.train.columns import TOPK_COLUMNS
from dft.train.losses.registry import LossConfig, register_loss

if TYPE_CHECKING:
    import torch
    from tensordict import TensorDict

# model_output key of the per-position KL_K that the logits hook returns
ASFT_KL = "asft_kl"
KL_METRIC = "train/kl"


def prob_power_values(log_probs: torch.Tensor, alpha: float) -> torch.Tensor:
    """``(1 - p^alpha) / alpha`` per token from ``log p``, with gradient ``-p^alpha`` w.r.t. ``log p``.

    The value is ``-expm1(alpha log p) / alpha`` (no cancellation for small ``alpha``); the gradient goes through
    ``sg(p^alpha) log p`` with ``p^alpha = exp(alpha log p)`` (through ``expm1`` itself it would lose every weight
    below ~6e-8). Both are formed in float64 (O(tokens)), as ``alpha log p`` rounded in float32 would move
    ``p^alpha`` by up to ``|alpha log p|`` x 6e-8 relative: the weight is ``p^alpha`` correctly rounded down to
    the smallest normal float32."""
    import torch

    exponent = alpha * log_probs.detach().double()
    value = (-torch.expm1(exponent) / alpha).to(log_probs.dtype)
    weight = torch.exp(exponent).to(log_probs.dtype)
    return value - weight * (log_probs - log_probs.detach())


@register_loss("prob_power", full_weight=True)
def prob_power_loss(config: LossConfig, model_output: dict, data: TensorDict, dp_group=None):
    """The probability-power family: ``1/N sum_t (1 - p_t^a) / a``, ``a = loss.power_alpha``."""
    import torch
    from verl.utils.torch_functional import masked_sum

    from dft.train.losses.tokens import full_weight_mask, nll_metric, normalize, target_log_probs_and_mask

    log_probs, mask = target_log_probs_and_mask(model_output, data)
    values = prob_power_values(log_probs, config.power_alpha)
    full = full_weight_mask(data, config)
    if full is not None:
        values = torch.where(full, -log_probs, values)
    loss = normalize(masked_sum(values, mask), mask.sum(), data, config)
    return loss, nll_metric(log_probs, mask, data)


def stored_topk(data: TensorDict, positions: int) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """The micro-batch's stored reference top-K as (positions, K) ids and log-probs and (positions,) log rest."""
    missing = [c for c in TOPK_COLUMNS if c not in data.keys()]
    if missing:
        raise ValueError(f"loss.name=asft needs the reference's top-K {missing} in the data (python -m "
                         f"dft ref_logprobs ref.topk=K); the batch has {sorted(data.keys())}")  # fmt: skip
    ids, log_probs, rest = (data[c].values() for c in TOPK_COLUMNS)
    k = ids.numel() // max(positions, 1)
    if ids.numel() != k * positions or len(rest) != positions:
        raise ValueError(f"the stored top-K holds {ids.numel()} ids and {len(rest)} rest buckets for {positions} "
                         "positions: sequence parallelism and padded layouts are not supported by asft")  # fmt: skip
    return ids.view(positions, k), log_probs.view(positions, k), rest


def kl_at_targets(logits: torch.Tensor, data: TensorDict) -> torch.Tensor:
    """``KL_K(ref || policy)`` at every position of the flat no-padding layout (0 where nothing is trained)."""
    import torch

    from dft.train.ref_topk import bucket_kl

    mask = torch.roll(data["loss_mask"].values(), shifts=-1, dims=0).bool()
    ids, ref_log_probs, ref_rest = stored_topk(data, len(logits))
    rows = torch.nonzero(mask).flatten()
    kl = bucket_kl(logits, rows, ids[rows], ref_log_probs[rows].float(), ref_rest[rows].float())
    return torch.zeros(len(logits), dtype=kl.dtype, device=kl.device).index_copy(0, rows, kl)


@register_loss("asft", data="reference_topk", columns=TOPK_COLUMNS, logits=True, full_weight=True)
def asft_loss(config: LossConfig, model_output=None, data: TensorDict = None, dp_group=None, student_logits=None):
    """Anchored SFT: ``1/N sum_t [-sg(p_t) log p_t + kl_beta KL_K(ref_t || pi_t)]`` (arXiv 2509.23753).

    Called twice per micro-batch by verl's engine: with ``student_logits`` (1, positions, V) it returns the
    per-position KL for ``model_output``; then as the loss."""
    from verl.utils.metric import AggregationType, Metric
    from verl.utils.torch_functional import masked_sum

    from dft.train.losses.tokens import (
        dft_weights,
        global_token_mean,
        nll_metric,
        normalize,
        target_log_probs_and_mask,
        with_full_weight,
    )

    if student_logits is not None:
        return {ASFT_KL: kl_at_targets(student_logits.squeeze(0), data)[None]}
    log_probs, mask = target_log_probs_and_mask(model_output, data)
    if ASFT_KL not in model_output:
        raise ValueError("asft: the engine returned no logits-hook output; batches need distillation_use_topk=True "
                         "(dft.train.trainer sets it) and model.use_fused_kernels=False")  # fmt: skip
    kl = model_output[ASFT_KL].values().to(log_probs.dtype)
    weights = with_full_weight(dft_weights(log_probs, config), data, config)
    values = config.kl_beta * kl - weights * log_probs
    loss = normalize(masked_sum(values, mask), mask.sum(), data, config)
    metrics = nll_metric(log_probs, mask, data)
    metrics[KL_METRIC] = Metric(AggregationType.SUM, global_token_mean(kl.detach(), mask, data))
    return loss, metrics
