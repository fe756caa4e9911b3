"""Which log-prob path a run uses, and the fused-kernel combinations verl 0.9.1 cannot train.

With ``model.use_fused_kernels=True`` verl replaces the model's forward
(``verl.models.transformers.monkey_patch.patch_forward_with_backends``) by one that returns per-token log-probs,
not logits: ``FusedLinearForPPO`` (``fused_kernel_options.impl_backend=torch``, plain PyTorch, 512-token chunks of
the LM head, the full logits never held) or verl's Triton ``linear_cross_entropy`` (``triton``, CUDA only). Our
losses read only those log-probs, so they are unchanged; ``tests/test_fused_on_cpu.py`` checks that step 1's loss,
gradient norm and update equal the unfused path's.

Where it breaks (verl 0.9.1, GPU and CPU alike). ``verl.utils.fsdp_utils._select_fsdp2_wrap_targets`` gives an
*untied* LM head (``tie_word_embeddings=false``) its own FSDP2 unit (verl PR #5516). FSDP2 all-gathers a unit's
weight only in that unit's forward pre-hook, but the fused forward (``verl/models/transformers/dense_common.py``,
``forward_with_torch_backend`` / ``forward_with_triton_backend``) never calls ``lm_head``: it reads
``self.lm_head.weight``, still the sharded DTensor, and step 1 dies in ``_fused_linear_for_ppo_fwd`` with
``aten.mm.default got mixed torch.Tensor and DTensor``. Nothing here depends on the device: FSDP2 shards the same
way on GPUs (verl issue #7520 reports the gradient-accumulation variant of this on GPUs, still open). A tied head
lives in the root unit, which is gathered for the whole forward, and works. No seam lets a recipe keep an untied
head in the root unit (PR #7427 proposed that inside verl), so ``dft train`` refuses the combination before any
model loads.
"""

import os

from omegaconf import DictConfig

FUSED_BACKENDS = ("torch", "triton", "liger")
# FusedLinearForPPO's default chunk, which verl's patched forwards use
FUSED_CHUNK_TOKENS = 512


def fused_backend(config: DictConfig) -> str | None:
    """``model.fused_kernel_options.impl_backend`` when fused kernels are on, else None."""
    if not config.model.get("use_fused_kernels", False):
        return None
    return (config.model.get("fused_kernel_options") or {}).get("impl_backend")


def lm_head_is_tied(config: DictConfig) -> bool:
    """Whether the model's LM head shares the input embedding, read as verl's FSDP2 wrapping reads it.

    Reads only the model's config (``model.hf_config_path`` or ``model.path``, a local folder or a hub id), with
    ``model.override_config.tie_word_embeddings`` applied as verl applies overrides.
    """
    from transformers import AutoConfig

    override = (config.model.get("override_config") or {}).get("tie_word_embeddings")
    if override is not None:
        return bool(override)
    source = config.model.get("hf_config_path") or config.model.path
    hf_config = AutoConfig.from_pretrained(
        os.path.expanduser(str(source)), trust_remote_code=config.model.get("trust_remote_code", False)
    )
    return bool(getattr(hf_config, "tie_word_embeddings", False))


def check_fused_kernels(config: DictConfig) -> None:
    """Refuse fused-kernel settings that verl 0.9.1 would fail on at step 1, with what to change instead."""
    from dft.train.cpu_platform import on_cpu

    if not config.model.get("use_fused_kernels", False):
        return
    backend = fused_backend(config)
    if backend not in FUSED_BACKENDS:
        # verl then skips its forward patch but its engine still reads output.log_probs, which is not there
        raise ValueError(
            f"model.use_fused_kernels=True needs model.fused_kernel_options.impl_backend in {list(FUSED_BACKENDS)}, "
            f"got {backend!r}"
        )
    if backend == "triton" and on_cpu():
        raise ValueError(
            "model.fused_kernel_options.impl_backend=triton needs a CUDA GPU (verl's Triton linear_cross_entropy); "
            "on a CPU use impl_backend=torch"
        )
    if config.engine.strategy == "fsdp2" and not lm_head_is_tied(config):
        raise ValueError(
            f"model.use_fused_kernels=True with engine.strategy=fsdp2 cannot train {config.model.path}: its LM head "
            "is untied (tie_word_embeddings=false), so verl 0.9.1 shards lm_head as its own FSDP2 unit "
            "(verl.utils.fsdp_utils._select_fsdp2_wrap_targets) and gathers it only when lm_head is called, but "
            "the fused forward reads lm_head.weight directly (verl/models/transformers/dense_common.py), and step 1 "
            "fails in FusedLinearForPPO with 'aten.mm.default got mixed torch.Tensor and DTensor', on GPUs as on "
            "CPUs. Set model.use_fused_kernels=False (or, on GPUs, engine.strategy=fsdp: FSDP1 keeps lm_head in "
            "the root unit; not tested here)."
        )


def log_prob_path(config: DictConfig) -> str:
    """Validate the fused-kernel settings (``check_fused_kernels``) and say in words how log-probs are computed."""
    check_fused_kernels(config)
    layout = "packed (remove-padding)" if config.model.get("use_remove_padding", False) else "padded micro-batches"
    backend = fused_backend(config)
    if backend == "triton":
        path = "fused: verl's Triton linear_cross_entropy (LM head + log-probs in one kernel, no full logits)"
    elif backend is not None:
        path = (
            f"fused: verl's FusedLinearForPPO ({backend} backend), LM head + log-probs in {FUSED_CHUNK_TOKENS}-token "
            "chunks, the full logits never held"
        )
    else:
        path = f"unfused: full (tokens x vocabulary) logits, then verl's logprobs_from_logits ({_unfused_kernel()})"
    return f"{path}; {layout}"


def _unfused_kernel() -> str:
    """The kernel ``verl.utils.torch_functional.logprobs_from_logits`` picks on this machine."""
    from verl.utils import torch_functional as verl_F

    if verl_F.FLAH_ATTN_CROSS_ENTROPY_LOSS_AVAILABLE and os.environ.get("VERL_DISABLE_FLASH_ATTN_CE", "0") != "1":
        return "flash-attn's Triton cross-entropy"
    if verl_F.NPU_CROSS_ENTROPY_LOSS_AVAILABLE:
        return "torch_npu cross-entropy"
    return "PyTorch log_softmax, one row at a time"
