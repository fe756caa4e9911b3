"""The registry of fine-tuning losses: what each needs, its options, and the one check of a run's ``loss`` section.

A loss is a function ``fn(config, model_output, data, dp_group=None) -> (loss, metrics)``, the signature verl's
``TrainingWorker.set_loss_fn`` takes, registered with :func:`register_loss` in a module of this package, which
declares there what it needs (the rows it reads, its columns, whether it reads logits, whether it takes
``loss.full_weight_tokens``). A new loss is one module here (found by :func:`losses`, nothing to list), plus its
option fields in :class:`LossConfig` if it has any (``configs/dft_trainer.yaml`` lists the same defaults). The
modules import torch and verl only when a loss runs, so the command line lists and checks losses in a second.

- :mod:`.likelihood`: ``sft``, ``dft`` (the paper's), ``iw_sft``; :mod:`.preference`: ``dpo``;
  :mod:`.beyond`: ``prob_power`` and ``asft``; :mod:`.tokens`: what they share.

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
  micro-batch's mean scaled by ``M_o / M`` (ranks average, micro-batches sum); dft/train/official_layout.py keeps
  the official micro-batches, so any number of processes takes the same step; the logged loss is the mean of the
  micro-batch means (the official sum over ``M``). It needs fixed micro-batches (``data.use_dynamic_bsz=False``).

DFT's weight is ``exp`` of the log-probability verl already returns for the target token, so the loss adds
O(tokens) work and never materialises a full-vocabulary softmax. Because it only reads ``log_probs``, it is
the same with or without remove-padding, with fused kernels (which return log-probs, not logits) and with
Ulysses sequence parallelism (the engine gathers log-probs over the sequence-parallel group before the loss).

Every loss also reports plain cross-entropy as ``train/nll``, always the global token mean whatever the
normalisation (DFT's loss is several times smaller than CE, so ``train/loss`` alone cannot compare a DFT and
an SFT run, nor two normalisations).
"""

from __future__ import annotations

import difflib
import importlib
import pkgutil
from dataclasses import dataclass, fields
from functools import partial
from typing import Callable

NLL_METRIC = "train/nll"
NORMALIZATIONS = ("token", "official")
# the kinds of rows a loss reads; dft.train.sft_datasets.DATASETS maps (data.format, kind) to a dataset class
DATA_KINDS = ("conversation", "reference", "reference_topk", "pairs")


@dataclass(frozen=True)
class LossSpec:
    """Everything the trainer and the checks need to know about a loss, declared once by :func:`register_loss`."""

    name: str
    fn: Callable
    # the rows it reads: "conversation" (verl's messages), "reference" (conversation + reference log-probs),
    # "reference_topk" (conversation + the reference's top-K per target token, dft.train.ref_topk) or
    # "pairs" (prompt, chosen, rejected + their reference log-probs, two rows per item in one micro-batch)
    data: str = "conversation"
    # parquet columns the training files must hold for it besides verl's conversation (dft.train.columns)
    columns: tuple[str, ...] = ()
    # what the loss averages over: "token" (loss tokens) or "pair" (preference pairs)
    unit: str = "token"
    # whether it reads the logits through verl's logits hook (``distillation_use_topk``; no fused kernels)
    logits: bool = False
    # whether loss.full_weight_tokens applies (losses that down-weight tokens give some back weight 1)
    full_weight: bool = False

    @property
    def doc(self) -> str:
        """The first line of the loss function's docstring (its one-line description in --help)."""
        return (self.fn.__doc__ or "").strip().splitlines()[0] if self.fn.__doc__ else ""

    def __call__(self, *args, **kwargs):
        """Call the loss itself (``LOSSES[name](config, model_output, data)``)."""
        return self.fn(*args, **kwargs)


LOSSES: dict[str, LossSpec] = {}


def register_loss(name: str, **needs) -> Callable:
    """Decorator: register ``fn`` as ``loss.name=name`` with what it needs (the fields of :class:`LossSpec`)."""

    def register(fn: Callable) -> Callable:
        if name in LOSSES and LOSSES[name].fn is not fn:
            raise ValueError(f"loss {name!r} is registered twice")
        LOSSES[name] = LossSpec(name, fn, **needs)
        return fn

    return register


def losses() -> dict[str, LossSpec]:
    """Every registered loss: each module of this package is imported once (none imports torch at import)."""
    package = __name__.rsplit(".", 1)[0]
    for module in pkgutil.iter_modules(importlib.import_module(package).__path__):
        if module.name not in ("registry", "tokens"):
            importlib.import_module(f"{package}.{module.name}")
    return LOSSES


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
    # eos or end_of_turn, resolved with the tokenizer before training
    # (dft.train.full_weight.resolve_full_weight_tokens).
    full_weight_tokens: tuple = ()

    def __post_init__(self):
        tokens = self.full_weight_tokens
        object.__setattr__(self, "full_weight_tokens", tuple([tokens] if isinstance(tokens, (int, str)) else tokens))
        errors = _loss_section_errors({f.name: getattr(self, f.name) for f in fields(self)})
        if errors:
            raise ValueError("; ".join(errors))

    @property
    def spec(self) -> LossSpec:
        """What this loss needs (its registry entry)."""
        return losses()[self.name]


def _get(section, key: str, default=None):
    value = section.get(key, default) if hasattr(section, "get") else default
    return default if value is None else value


def nearest(word: str, known) -> str | None:
    """The known name a typo most likely meant: the closest spelling, else one that contains it."""
    close = difflib.get_close_matches(str(word), list(known), n=1)
    return close[0] if close else next((k for k in known if str(word) in k), None)


def _is_number(value) -> bool:
    try:
        return not isinstance(value, bool) and float(value) == float(value)
    except (TypeError, ValueError):
        return False


def _loss_section_errors(section) -> list[str]:
    """What is wrong with a ``loss`` section (a mapping), each a message naming the key; empty when it is valid."""
    known = [f.name for f in fields(LossConfig)]
    errors = []
    for key in sorted(set(section) - set(known)):
        near = nearest(key, known)
        errors.append(f"loss.{key} is not a key of the loss section" + (f"; did you mean loss.{near}?" if near
                      else f"; valid keys: {', '.join(known)}"))  # fmt: skip
    name, registry = section.get("name", LossConfig.name), losses()
    if name not in registry:
        near = nearest(name, registry)
        errors.append(f"loss.name={name!r} is not a known loss" + (f" (did you mean {near}?)" if near else "")
                      + f"; valid names: {', '.join(sorted(registry))}")  # fmt: skip
    value = dict(section)
    numeric = [f.name for f in fields(LossConfig) if f.type in ("float", "int") and f.name in value]
    not_numbers = [key for key in numeric if not _is_number(value[key])]
    if not_numbers:
        return errors + [f"loss.{key}={value[key]!r} is not a number" for key in not_numbers]
    if value.get("normalization", "token") not in NORMALIZATIONS:
        errors.append(f"loss.normalization={value['normalization']!r} must be one of {', '.join(NORMALIZATIONS)}")
    for key in ("weight_floor", "alpha"):
        if not 0.0 <= float(value.get(key, 0.0)) <= 1.0:
            errors.append(f"loss.{key}={value[key]} must lie in [0, 1]")
    if int(value.get("official_micro_batches", 1)) < 1:
        errors.append(f"loss.official_micro_batches={value['official_micro_batches']} must be a positive integer")
    if value.get("iw_level", "sequence") not in ("sequence", "token"):
        errors.append(f"loss.iw_level={value['iw_level']!r} must be 'sequence' or 'token'")
    lo, hi, seq_max = (float(value.get(k, getattr(LossConfig, k))) for k in ("iw_token_min", "iw_token_max",
                                                                             "iw_seq_max"))  # fmt: skip
    if not 0.0 <= lo <= hi or seq_max <= 0:
        errors.append(f"loss.iw_token_min={lo}, loss.iw_token_max={hi} and loss.iw_seq_max={seq_max} need "
                      "0 <= iw_token_min <= iw_token_max and iw_seq_max > 0")  # fmt: skip
    for key, ok, rule in (("dpo_beta", lambda v: v > 0, "positive"), ("power_alpha", lambda v: v > 0, "positive"),
                          ("kl_beta", lambda v: v >= 0, "at least 0")):  # fmt: skip
        if key in value and not ok(float(value[key])):
            errors.append(f"loss.{key}={value[key]} must be {rule}")
    if value.get("full_weight_tokens") and name in registry and not registry[name].full_weight:
        takes = [n for n, spec in registry.items() if spec.full_weight]
        errors.append(f"loss.full_weight_tokens applies to {', '.join(takes)}, not loss.name={name}")
    return errors


def _run_errors(spec: LossSpec, config) -> list[str]:
    """What the loss needs of the rest of the run's config (micro-batching, padding, kernels)."""
    data, model, engine = (_get(config, k, {}) for k in ("data", "model", "engine"))
    errors = []
    if _get(_get(config, "loss", {}), "normalization") == "official" and _get(data, "use_dynamic_bsz", False):
        errors.append("loss.normalization=official takes a mean per micro-batch of data.micro_batch_size_per_gpu "
                      "rows: set data.use_dynamic_bsz=False (setting=paper does)")  # fmt: skip
    if spec.data != "conversation" and _get(data, "pad_mode", "no_padding") != "no_padding":
        errors.append(f"loss.name={spec.name} needs data.pad_mode=no_padding (got {data.get('pad_mode')})")
    if spec.logits:
        needs = []
        if _get(model, "use_fused_kernels", False):
            needs.append("model.use_fused_kernels=False (fused kernels never hold the logits)")
        if _get(engine, "ulysses_sequence_parallel_size", 1) > 1:
            needs.append("engine.ulysses_sequence_parallel_size=1 (the stored top-K is not split over ranks)")
        if needs:
            errors.append(f"loss.name={spec.name} reads the policy's logits through verl's logits hook: set "
                          + "; ".join(needs))  # fmt: skip
    return errors


def loss_errors(config) -> list[str]:
    """Every problem of a run's loss: its ``loss`` section, then what it needs of the run's other sections.

    ``config`` is the whole training config (or a mapping with a ``loss`` key). The one check of a loss: the
    command line runs it before any model loads (``dft.cli.validate``), the trainer before it builds anything."""
    section = _get(config, "loss", {})
    errors = _loss_section_errors(dict(section))
    name = section.get("name", LossConfig.name)
    return errors if errors or name not in LOSSES else _run_errors(LOSSES[name], config)


def loss_config_from(section) -> LossConfig:
    """The ``loss`` config section (a mapping) as a LossConfig; a bad one is a ValueError naming every problem."""
    section = dict(section or {})
    errors = _loss_section_errors(section)
    if errors:
        raise ValueError("; ".join(errors))
    return LossConfig(**section)


def get_loss_fn(config: LossConfig) -> Callable:
    """The loss named by ``config.name`` with its config bound, as ``set_loss_fn`` expects."""
    return partial(config.spec.fn, config)
