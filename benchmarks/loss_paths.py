"""The loss paths the benchmarks compare, on one batch in verl's packed no-padding layout.

From a logits leaf (``LOGIT_PATHS``), as in issue 2's table:

- ``sft`` / ``dft``: verl's ``logprobs_from_logits(logits, labels)`` as its FSDP engine calls it, then our
  ``sft_loss`` / ``dft_loss`` on verl's jagged batch.
- ``original``: the original DFT code (``fsdp_dft_trainer._compute_loss_and_backward``): ``F.cross_entropy``
  per token times the detached target probability of a full ``torch.softmax``; ``ce``: the same without the
  weight (plain CE as verl's legacy SFT trainer computed it).

From the last hidden states and the LM head's weight (``HEAD_PATHS``), as a training step runs it:

- ``head-sft`` / ``head-dft``: the unfused engine path: the LM head (``F.linear``, as ``nn.Linear``) gives the full
  logits, then ``sft`` / ``dft`` above.
- ``head-original``: the LM head, then ``original``.
- ``fused-sft`` / ``fused-dft``: ``model.use_fused_kernels=True`` with ``impl_backend=torch``: verl's
  ``FusedLinearForPPO`` called as ``verl.models.transformers.dense_common.forward_with_torch_backend`` calls it
  (512-token chunks, labels rolled by one), then our loss on the log-probs it returns.
- ``triton-sft`` / ``triton-dft``: ``impl_backend=triton``: verl's ``linear_cross_entropy`` (CUDA only).

Every path returns ``(loss, kept)``; ``kept`` is what the caller must hold until the backward is done (the
original's ``probs``, a local of the function that calls ``loss.backward()`` there).
"""

VOCAB = 151_936  # Qwen2.5
HIDDEN = 1536  # Qwen2.5-Math-1.5B
SEQ_LEN, PROMPT_LEN = 1024, 256  # each sequence: 256 prompt tokens (not trained on), 768 response tokens
LOGIT_PATHS = ("sft", "dft", "original", "ce")
HEAD_PATHS = ("head-sft", "head-dft", "head-original", "fused-sft", "fused-dft")
TRITON_PATHS = ("triton-sft", "triton-dft")


def make_batch(n_tokens: int, dtype, vocab: int = VOCAB, seed: int = 0, with_logits: bool = True, **head) -> dict:
    """Flat token ids, the loss mask, verl's jagged data TensorDict, and the inputs of the paths.

    The tokens are ``n_tokens / SEQ_LEN`` packed sequences (verl's no-padding layout); each sequence's first
    ``PROMPT_LEN`` tokens are prompt (mask 0). ``data`` is built as ``tests/test_losses_on_cpu.py`` does.
    ``with_logits``: a ``(tokens, vocab)`` logits leaf that requires grad. ``hidden=H`` (with optional
    ``device``): hidden states ``(tokens, H)`` and an LM head weight ``(vocab, H)``, leaves that require grad,
    scaled so the logits have the same spread (std 3). ``device="meta"`` makes every tensor shape-only;
    ``seq_len`` sets the packed sequences' length.
    """
    import torch
    from verl.utils import tensordict_utils as tu

    device = head.get("device", "cpu")
    gen = torch.Generator().manual_seed(seed)
    seq_len = min(head.get("seq_len", SEQ_LEN), n_tokens)
    lengths = [seq_len] * (n_tokens // seq_len)
    offsets = torch.tensor([0] + lengths).cumsum(0).to(device)
    ids = torch.randint(0, vocab, (n_tokens,), generator=gen).to(device)
    mask = torch.ones(n_tokens, dtype=torch.long).view(-1, seq_len)
    mask[:, : min(PROMPT_LEN, seq_len // 4)] = 0
    n_targets, mask = int(mask.sum()), mask.flatten().to(device)
    leaf = lambda *shape, std: _leaf(shape, dtype, std, gen, device)  # noqa: E731
    jagged = lambda t: torch.nested.nested_tensor_from_jagged(t, offsets)  # noqa: E731
    data = tu.get_tensordict(
        tensor_dict={"input_ids": jagged(ids), "loss_mask": jagged(mask)},
        non_tensor_dict={"pad_mode": "no_padding", "batch_num_tokens": n_targets, "dp_size": 1},
    )
    batch = {"logits": leaf(n_tokens, vocab, std=3.0) if with_logits else None}
    if head.get("hidden"):
        batch["hidden"] = leaf(n_tokens, head["hidden"], std=1.0)
        batch["weight"] = leaf(vocab, head["hidden"], std=3.0 / head["hidden"] ** 0.5)
    return dict(batch, ids=ids, mask=mask, offsets=offsets, data=data)


def batch_for(names: list[str], n_tokens: int, dtype, device: str = "cpu") -> dict:
    """The batch ``names`` start from: a logits leaf (``LOGIT_PATHS``), or hidden states and the LM head weight."""
    if any(name not in LOGIT_PATHS for name in names):
        return make_batch(n_tokens, dtype, with_logits=False, hidden=HIDDEN, device=device)
    return make_batch(n_tokens, dtype, with_logits=bool(names), device=device)


def logits_bytes(n_tokens: int, dtype_name: str) -> int:
    """Bytes of the full (tokens x vocabulary) logits: the input of the logit rows, what the fused path avoids."""
    return n_tokens * VOCAB * (4 if dtype_name == "float32" else 2)


def _leaf(shape, dtype, std, gen, device):
    import torch

    if device == "meta":
        return torch.empty(shape, dtype=dtype, device="meta").requires_grad_(True)
    return torch.randn(shape, generator=gen, dtype=dtype).mul_(std).to(device).requires_grad_(True)


def loss_from_log_probs(name: str, log_probs, batch: dict):
    """Our ``sft_loss`` / ``dft_loss`` on per-token log-probs laid out as verl's engine returns them."""
    import torch

    from dft.train.losses.registry import LossConfig, losses

    model_output = {"log_probs": torch.nested.nested_tensor_from_jagged(log_probs, batch["offsets"])}
    loss, _ = losses()[name](LossConfig(name), model_output, batch["data"])
    return loss


def verl_forward(name: str, batch: dict):
    """SFT or our DFT as verl's engine runs it unfused: log-probs of the next token from the logits, then the loss."""
    import torch
    from verl.utils.torch_functional import logprobs_from_logits

    labels = torch.roll(batch["ids"], shifts=-1)  # the engine's input_ids_rmpad_rolled
    return loss_from_log_probs(name, logprobs_from_logits(logits=batch["logits"], labels=labels), batch), None


def original_forward(batch: dict, weighted: bool = True):
    """The original DFT code's loss: CE per token times the detached target probability from a full softmax.

    ``weighted=False`` is the same code without the weight (the ``ce`` reference). Returns ``(loss, probs)``.
    """
    import torch
    import torch.nn.functional as F

    logits, mask = batch["logits"], batch["mask"]
    labels = torch.roll(batch["ids"], shifts=-1)
    loss_mask = torch.roll(mask, shifts=-1)  # the label of position i is token i + 1
    loss = F.cross_entropy(logits, labels, reduction="none")
    probs = None
    if weighted:
        probs = torch.softmax(logits, dim=-1)
        prob_coefficients = probs.gather(1, labels.unsqueeze(-1)).squeeze(-1).detach()
        loss = loss * prob_coefficients
    loss = loss * loss_mask.to(loss.dtype)
    return loss.sum() / loss_mask.sum(), probs


def fused_log_probs(batch: dict, backend: str):
    """Per-token log-probs straight from hidden states and the LM head weight, as verl's fused forwards get them."""
    import torch

    labels = torch.roll(batch["ids"], shifts=-1)
    if backend == "triton":
        from verl.utils.kernel.linear_cross_entropy import linear_cross_entropy

        log_probs, _entropy = linear_cross_entropy(batch["hidden"], batch["weight"], labels, 1.0, "none")
        return log_probs
    from verl.utils.experimental.torch_functional import FusedLinearForPPO

    fused = FusedLinearForPPO(impl_backend=backend)
    log_probs, _entropy = fused.forward(
        hidden_states=batch["hidden"], vocab_weights=batch["weight"], input_ids=labels, temperature=1.0
    )
    return log_probs


def forward(name: str, batch: dict):
    """``(loss, kept)`` for a path name in ``LOGIT_PATHS``, ``HEAD_PATHS`` or ``TRITON_PATHS``."""
    import torch.nn.functional as F

    if name in ("original", "ce"):
        return original_forward(batch, weighted=name == "original")
    if name in ("sft", "dft"):
        return verl_forward(name, batch)
    kind, loss = name.split("-")
    if kind == "head":  # the model's lm_head, then the unfused path
        return forward(loss, dict(batch, logits=F.linear(batch["hidden"], batch["weight"])))
    backend = "triton" if kind == "triton" else "torch"
    return loss_from_log_probs(loss, fused_log_probs(batch, backend), batch), None


def leaves(batch: dict) -> list:
    """The batch's tensors that receive gradients (to clear between passes)."""
    return [batch[key] for key in ("logits", "hidden", "weight") if batch.get(key) is not None]
