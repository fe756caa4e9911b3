"""Token-level fine-tuning losses in verl's engine loss signature.

Every loss here is ``fn(config, model_output, data, dp_group=None) -> (loss, metrics)``, the signature that
``TrainingWorker.set_loss_fn`` takes, and is registered with :func:`register_loss`, which declares in one place
what it needs from the data (reference log-probs, pairs, columns). A new loss is one function and one
decorator here (plus its option fields in :class:`LossConfig`, which ``configs/dft_trainer.yaml`` lists).

Normalisation (``loss.normalization``), for every loss; ``u`` runs over the loss's units (loss tokens, or
pairs for ``dpo``), ``l_u`` is a unit's loss, ``m`` a micro-batch of ``M`` per rank, ``r`` one of ``R`` ranks:

- ``token`` (default): the global mean ``1/N sum_u l_u`` over the ``N`` units of the step, whatever the
  micro-batch split and data-parallel size (verl's ``sft_loss``: each micro-batch returns its sum over the
  global count, times the data-parallel size, since FSDP averages gradients over ranks).
- ``official``: the official DFT trainer's (yongliang-wu/DFT ``fsdp_dft_trainer.py``, ``balance_dp_token``
  off): gradient of ``1/R sum_r sum_m mean_{u in m} l_u``, a *sum* of per-micro-batch means, and units of short
  micro-batches weigh more. That sum depends on the cluster: it is ``M`` times the mean of all ``K = R M``
  micro-batch means. The official run had ``M_o = loss.official_micro_batches`` (8: batch 256 on 8 GPUs of
  micro-batch 4), so every layout here back-propagates ``M_o`` times the mean of all micro-batch means: each
  micro-batch's mean scaled by ``M_o / M`` (ranks average, micro-batches sum); dft/official_layout.py keeps the
  official micro-batches, so any number of processes takes the same step; the logged loss is the mean of the
  micro-batch means (the official sum over ``M``). It needs fixed micro-batches (``data.use_dynamic_bsz=False``).

Losses (``t`` runs over target tokens, ``p_t = pi(y_t | y_<t, x)``, ``sg`` stops the gradient):

- ``sft``: ``L = -1/N sum_t log p_t``. Plain cross-entropy, verl's own ``sft_loss`` to the bit.
- ``dft``: ``L = -1/N sum_t sg(w_t) log p_t`` with ``w_t = alpha * max(p_t, floor) + (1 - alpha)``.
  With the defaults (``alpha=1``, ``floor=0``) this is Dynamic Fine-Tuning, Wu et al. 2025, "On the
  Generalization of SFT: A Reinforcement Learning Perspective with Reward Rectification" (arXiv 2508.05629),
  eq. 9: ``-sg(p_t) log p_t``, which cancels the ``1/p_t`` implicit-reward weight of the SFT gradient.
  ``floor`` keeps the weight of very unlikely tokens from vanishing; ``alpha`` interpolates between DFT (1)
  and SFT (0).
- ``iw_sft``: importance-weighted SFT (Qin and Springenberg 2025, arXiv 2507.12856), ``-1/N sum_t sg(w) log
  p_t`` with the reference model's log-probabilities ``q_t`` stored with the data (``python -m
  dft.ref_logprobs``). ``iw_level=sequence``: one weight per sequence, ``w = clip(exp(mean_t(log p_t -
  log q_t)), 0, iw_seq_max)``; ``iw_level=token``: ``w_t = clip(p_t / q_t, iw_token_min, iw_token_max)``.
- ``dpo``: Direct Preference Optimization (Rafailov et al. 2023) on (chosen, rejected) rows that sit next to
  each other in the micro-batch: ``-log sigmoid(beta * ((S_c - R_c) - (S_r - R_r)))`` per pair, with ``S``
  and ``R`` the policy's and the reference's summed log-probabilities of the response, averaged over the
  global batch of pairs.

- ``prob_power`` (``(1 - p_t^a) / a``, arXiv 2510.00526) and ``asft`` (DFT + ``kl_beta`` KL to the starting
  model, arXiv 2509.23753): ``dft/losses_beyond.py``. ``full_weight_tokens`` gives chosen targets (eos,
  end-of-turn) weight 1 under ``dft``, ``prob_power`` and ``asft``.

DFT's weight is ``exp`` of the log-probability verl already returns for the target token, so the loss adds
O(tokens) work and never materialises a full-vocabulary softmax. Because it only reads ``log_probs``, it is
the same with or without remove-padding, with fused kernels (which return log-probs, not logits) and with
Ulysses sequence parallelism (the engine gathers log-probs over the sequence-parallel group before the loss).

Every loss also reports plain cross-entropy as ``train/nll``, always the global token mean whatever the
normalisation (DFT's loss is several times smaller than CE, so ``train/loss`` alone cannot compare a DFT and
an SFT run, nor two normalisations).
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
REF_LOG_PROBS = "ref_log_probs"
NORMALIZATIONS = ("token", "official")
# the losses that down-weight tokens, where loss.full_weight_tokens gives some tokens back weight 1
FULL_WEIGHT_LOSSES = ("dft", "prob_power", "asft")


@dataclass(frozen=True)
class LossSpec:
    """Everything the trainer needs to know about a loss, declared once by :func:`register_loss`."""

    fn: Callable
    # the rows it reads: "conversation" (verl's messages), "reference" (conversation + REF_LOG_PROBS),
    # "reference_topk" (conversation + the reference's top-K per target token, dft.ref_topk) or
    # "pairs" (prompt, chosen, rejected + their reference log-probs, two rows per item in one micro-batch);
    # dft.datasets.DATASETS maps (data.format, this) to the dataset class
    data: str = "conversation"
    # parquet columns the training files must hold for it besides verl's conversation
    columns: tuple[str, ...] = ()
    # what the loss averages over: "token" (loss tokens) or "pair" (preference pairs)
    unit: str = "token"
    # whether it reads the logits through verl's logits hook (``distillation_use_topk``; no fused kernels)
    logits: bool = False

    def __call__(self, *args, **kwargs):
        """Call the loss itself (``LOSSES[name](config, model_output, data)``)."""
        return self.fn(*args, **kwargs)


LOSSES: dict[str, LossSpec] = {}


def register_loss(name: str, **needs) -> Callable:
    """Decorator: register ``fn`` as ``loss.name=name`` with what it needs (the fields of :class:`LossSpec`)."""

    def register(fn: Callable) -> Callable:
        if name in LOSSES:
            raise ValueError(f"loss {name!r} is registered twice")
        LOSSES[name] = LossSpec(fn, **needs)
        return fn

    return register


@dataclass(frozen=True)
class LossConfig:
    """The ``loss`` section of the Hydra config."""

    name: str = "dft"
    # token: the global mean over loss tokens; official: the official DFT trainer's per-micro-batch means
    normalization: str = "token"
    # official only: the official run's micro-batches per rank (256 / (8 GPUs x 4)), which scales its gradient
    official_micro_batches: int = 8
    # DFT only: the token weight is max(p, weight_floor); 0 is the paper's DFT.
    weight_floor: float = 0.0
    # DFT only: weight = alpha * p + (1 - alpha); 1 is the paper's DFT, 0 is SFT.
    alpha: float = 1.0
    # iw_sft only: one importance weight per sequence, or one per token.
    iw_level: str = "sequence"
    # iw_sft, sequence level: clip(exp(mean_t log p/q), 0, iw_seq_max).
    iw_seq_max: float = 16.0
    # iw_sft, token level: clip(p/q, iw_token_min, iw_token_max).
    iw_token_min: float = 0.2
    iw_token_max: float = 1.8
    # dpo only: the inverse temperature of the implicit reward.
    dpo_beta: float = 0.1
    # prob_power only: the per-token loss is (1 - p^power_alpha) / power_alpha; -> 0 is SFT, 1 is DFT's gradient.
    power_alpha: float = 1.0
    # asft only: the weight of KL(reference || policy) per target token (the ASFT authors' README uses 0.05).
    kl_beta: float = 0.05
    # dft, prob_power, asft: target tokens whose loss keeps weight 1 (plain -log p): token ids, or token strings,
    # eos or end_of_turn, resolved with the tokenizer before training (dft.full_weight.resolve_full_weight_tokens).
    full_weight_tokens: tuple = ()

    def __post_init__(self):
        if self.name not in LOSSES:
            raise ValueError(f"loss.name={self.name!r} is not a known loss; valid names: {sorted(LOSSES)}")
        if self.normalization not in NORMALIZATIONS:
            raise ValueError(f"loss.normalization={self.normalization!r} must be one of {list(NORMALIZATIONS)}")
        for field, value in (("weight_floor", self.weight_floor), ("alpha", self.alpha)):
            if not 0.0 <= value <= 1.0:
                raise ValueError(f"loss.{field}={value} must lie in [0, 1]")
        if self.iw_level not in ("sequence", "token"):
            raise ValueError(f"loss.iw_level={self.iw_level!r} must be 'sequence' or 'token'")
        if not 0.0 <= self.iw_token_min <= self.iw_token_max or self.iw_seq_max <= 0:
            raise ValueError(
                f"loss.iw_token_min={self.iw_token_min}, loss.iw_token_max={self.iw_token_max} and "
                f"loss.iw_seq_max={self.iw_seq_max} need 0 <= iw_token_min <= iw_token_max and iw_seq_max > 0"
            )
        if self.official_micro_batches < 1:
            raise ValueError(f"loss.official_micro_batches={self.official_micro_batches} must be a positive integer")
        if self.dpo_beta <= 0:
            raise ValueError(f"loss.dpo_beta={self.dpo_beta} must be positive")
        if self.power_alpha <= 0 or self.kl_beta < 0:
            raise ValueError(f"loss.power_alpha={self.power_alpha} must be > 0 and loss.kl_beta={self.kl_beta} >= 0")
        tokens = self.full_weight_tokens
        object.__setattr__(self, "full_weight_tokens", tuple([tokens] if isinstance(tokens, (int, str)) else tokens))
        if self.full_weight_tokens and self.name not in FULL_WEIGHT_LOSSES:
            raise ValueError(
                f"loss.full_weight_tokens applies to {list(FULL_WEIGHT_LOSSES)}, not loss.name={self.name}"
            )

    @property
    def spec(self) -> LossSpec:
        """What this loss needs (its registry entry)."""
        return LOSSES[self.name]


# ---------------------------------------------------------------------------------------------------------------
# Normalisation
# ---------------------------------------------------------------------------------------------------------------


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


def _global_token_mean(values: torch.Tensor, mask: torch.Tensor, data: TensorDict) -> torch.Tensor:
    """This micro-batch's share of the mean over all loss tokens of the global batch (verl's normalisation)."""
    return masked_sum(values, mask) / data["batch_num_tokens"] * data["dp_size"]


def _nll_metric(log_probs: torch.Tensor, mask: torch.Tensor, data: TensorDict) -> dict:
    # SUM over micro-batches of per-micro-batch shares, averaged over ranks (Metric.aggregate_dp) = global mean.
    nll = -_global_token_mean(log_probs.detach(), mask, data)
    return {NLL_METRIC: Metric(aggregation=AggregationType.SUM, value=nll)}


def token_loss(weighted_log_probs: torch.Tensor, mask: torch.Tensor, data: TensorDict, config: LossConfig):
    """``-sum_t w_t log p_t`` over this micro-batch's loss tokens, normalised by ``loss.normalization``."""
    return -normalize(masked_sum(weighted_log_probs, mask), mask.sum(), data, config)


# ---------------------------------------------------------------------------------------------------------------
# Losses
# ---------------------------------------------------------------------------------------------------------------


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


@register_loss("sft")
def sft_loss(config: LossConfig, model_output: dict, data: TensorDict, dp_group=None):
    """Cross-entropy over target tokens: ``-1/N sum_t log p_t``."""
    log_probs, mask = target_log_probs_and_mask(model_output, data)
    return token_loss(log_probs, mask, data, config), _nll_metric(log_probs, mask, data)


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
                         f"resolved by dft.train) and data.pad_mode=no_padding (got {pad_mode!r})")  # fmt: skip
    targets = torch.roll(data["input_ids"].values(), shifts=-1, dims=0)
    return torch.isin(targets, torch.tensor(config.full_weight_tokens, device=targets.device))


def with_full_weight(weights: torch.Tensor, data: TensorDict, config: LossConfig) -> torch.Tensor:
    """``weights`` with 1 at the targets in ``loss.full_weight_tokens``."""
    full = full_weight_mask(data, config)
    return weights if full is None else torch.where(full, torch.ones_like(weights), weights)


@register_loss("dft")
def dft_loss(config: LossConfig, model_output: dict, data: TensorDict, dp_group=None):
    """Dynamic Fine-Tuning: ``-1/N sum_t sg(p_t) log p_t`` (arXiv 2508.05629, eq. 9), options in LossConfig."""
    log_probs, mask = target_log_probs_and_mask(model_output, data)
    weights = with_full_weight(dft_weights(log_probs, config), data, config)
    loss = token_loss(weights * log_probs, mask, data, config)
    return loss, _nll_metric(log_probs, mask, data)


def reference_log_probs(data: TensorDict) -> torch.Tensor:
    """The reference model's log-probabilities, in the layout of ``target_log_probs_and_mask``."""
    pad_mode = tu.get_non_tensor_data(data=data, key="pad_mode", default=DatasetPadMode.NO_PADDING)
    if pad_mode != DatasetPadMode.NO_PADDING or REF_LOG_PROBS not in data.keys():
        raise ValueError(
            f"this loss needs the data's {REF_LOG_PROBS!r} (made by `python -m dft.ref_logprobs`) in "
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


def iw_weights(log_probs, ref_log_probs, mask, model_output, config: LossConfig) -> torch.Tensor:
    """Importance weights per token, held constant: one per sequence broadcast to its tokens, or per token."""
    log_ratio = log_probs.detach() - ref_log_probs.to(log_probs.dtype)
    if config.iw_level == "token":
        return log_ratio.exp().clamp(config.iw_token_min, config.iw_token_max)
    index, _ = sequence_index(model_output)
    tokens = per_sequence_sum(torch.ones_like(log_ratio), mask, model_output).clamp(min=1)
    mean_log_ratio = per_sequence_sum(log_ratio, mask, model_output) / tokens
    return mean_log_ratio.exp().clamp(0.0, config.iw_seq_max)[index]


@register_loss("iw_sft", data="reference", columns=(REF_LOG_PROBS,))
def iw_sft_loss(config: LossConfig, model_output: dict, data: TensorDict, dp_group=None):
    """Importance-weighted SFT: ``-1/N sum_t sg(w) log p_t`` (arXiv 2507.12856), options in LossConfig."""
    log_probs, mask = target_log_probs_and_mask(model_output, data)
    weights = iw_weights(log_probs, reference_log_probs(data), mask, model_output, config)
    loss = token_loss(weights * log_probs, mask, data, config)
    metrics = _nll_metric(log_probs, mask, data)
    # the token-weighted mean weight (1 while the policy is the reference)
    metrics["train/iw_weight"] = Metric(AggregationType.SUM, _global_token_mean(weights, mask, data).detach())
    return loss, metrics


def _global_pair_mean(values: torch.Tensor, data: TensorDict) -> torch.Tensor:
    """This micro-batch's share of the mean over all pairs of the global batch (``global_batch_size`` pairs)."""
    return values.sum() / data["global_batch_size"] * data["dp_size"]


PAIR_COLUMNS = ("prompt", "chosen", "rejected", f"chosen_{REF_LOG_PROBS}", f"rejected_{REF_LOG_PROBS}")


@register_loss("dpo", data="pairs", columns=PAIR_COLUMNS, unit="pair")
def dpo_loss(config: LossConfig, model_output: dict, data: TensorDict, dp_group=None):
    """DPO over adjacent (chosen, rejected) rows; metrics: implicit rewards, their margin, preference accuracy."""
    log_probs, mask = target_log_probs_and_mask(model_output, data)
    policy = per_sequence_sum(log_probs, mask, model_output)
    reference = per_sequence_sum(reference_log_probs(data).to(log_probs.dtype), mask, model_output)
    if len(policy) % 2:
        raise ValueError(f"dpo needs (chosen, rejected) rows in pairs; this micro-batch has {len(policy)} rows")
    rewards = config.dpo_beta * (policy - reference)
    chosen, rejected = rewards[0::2], rewards[1::2]
    margin = chosen - rejected
    losses = -torch.nn.functional.logsigmoid(margin)
    loss = normalize(losses.sum(), len(losses), data, config, unit="pair")
    shares = {
        "dpo/reward_margin": margin,
        "dpo/accuracy": (margin > 0).to(margin.dtype),
        "dpo/chosen_reward": chosen,
        "dpo/rejected_reward": rejected,
    }
    metrics = {key: Metric(AggregationType.SUM, _global_pair_mean(v.detach(), data)) for key, v in shares.items()}
    metrics.update(_nll_metric(log_probs, mask, data))
    return loss, metrics


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
    return partial(config.spec.fn, config)


# prob_power and asft (dft/losses_beyond.py) register themselves here; imported last, as they build on the above
from dft import losses_beyond  # noqa: E402, F401
