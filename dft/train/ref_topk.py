"""The reference model's top-K next-token distribution: extracted from logits, stored compactly, and the KL to it.

ASFT (``loss.name=asft``) anchors the policy to the starting model with a KL at every target position. The
full-vocabulary KL needs the reference's whole distribution there; we keep one model in memory and store
instead, per target position, the reference's ``K`` most likely tokens, their log-probabilities and the
log-probability of everything else as one bucket (``python -m dft ref_logprobs ref.topk=K``):

    KL_K(q || p) = sum_{v in S} q_v log(q_v / p_v) + q_rest log(q_rest / p_rest),

``S`` the reference's top-K at that position, ``q_rest = 1 - sum_S q``, ``p_rest = 1 - sum_S p``. It is the
exact KL between the two distributions coarsened to K + 1 buckets, so ``0 <= KL_K <= KL`` and it grows with
K (every larger K refines the partition); ``K = V - 1`` is the exact KL. What is lost is the KL *inside* the
rest bucket, ``q_rest * KL(q | rest || p | rest)``: small when the reference puts little mass outside its
top-K (``benchmarks/topk_kl.py`` measures it).

Storage (one row per training row, flat lists in position order, ``K`` entries per target position):
``ref_topk_ids`` (int32), ``ref_topk_log_probs`` (float16), ``ref_topk_rest`` (float16, one per target
position: ``log q_rest``); K is recorded in the parquet's schema metadata. That is ``6K + 2`` bytes per target
token before compression. float16 keeps a log-probability to 2^-11 of itself; the loss renormalises the K + 1
stored buckets, so the rounding leaves no first-order error (at step 0 the KL is ~1e-7, not ~1e-4).

``p_rest`` is computed as ``logsumexp`` of the logits outside ``S`` (never ``1 - sum_S p``, which cancels
catastrophically in float32 when the policy is sure). The float32 work runs in chunks of positions and is
recomputed in the backward pass: the extra memory is one copy of the target positions' logits (in their dtype)
and one chunk's float32 (positions x vocabulary) work, not several float32 copies of the whole batch's logits.
"""

import numpy as np
import torch
from torch.utils.checkpoint import checkpoint

from dft.train.columns import TOPK_IDS, TOPK_LOG_PROBS, TOPK_REST

# parquet schema metadata: the K of the stored top-K
METADATA_KEY = b"dft.ref_topk"
# elements of one chunk's (positions x vocabulary) float32 copy (256 MiB)
CHUNK_ELEMENTS = 1 << 26


def _chunks(rows: int, vocab: int):
    step = max(1, CHUNK_ELEMENTS // max(vocab, 1))
    return [slice(start, min(start + step, rows)) for start in range(0, rows, step)]


def _rest_log_prob(z: torch.Tensor, ids: torch.Tensor, lse: torch.Tensor) -> torch.Tensor:
    """``log(1 - sum_{v in ids} p_v)`` per row, as logsumexp over the other logits (no cancellation)."""
    return z.scatter(-1, ids, float("-inf")).logsumexp(-1) - lse


@torch.no_grad()
def topk_of_logits(logits: torch.Tensor, k: int) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """(ids int32 (n, k), log-probs float32 (n, k), log rest mass float32 (n,)) of each row of ``logits`` (n, V)."""
    vocab = logits.shape[-1]
    if not 0 < k < vocab:
        raise ValueError(f"ref.topk={k} must lie in [1, {vocab - 1}] for a vocabulary of {vocab} tokens")
    ids, log_probs, rest = [], [], []
    for rows in _chunks(len(logits), vocab):
        z = logits[rows].float()
        lse = z.logsumexp(-1)
        values, top = z.topk(k, dim=-1)
        ids.append(top.int())
        log_probs.append(values - lse[:, None])
        rest.append(_rest_log_prob(z, top, lse))
    if not ids:
        return logits.new_zeros((0, k), dtype=torch.int32), logits.new_zeros((0, k)).float(), logits.new_zeros(0)
    return torch.cat(ids), torch.cat(log_probs), torch.cat(rest)


def _bucket_kl_rows(logits_rows, ids, ref_log_probs, ref_log_rest):
    z = logits_rows.float()
    lse = z.logsumexp(-1)
    policy = torch.cat([z.gather(-1, ids) - lse[:, None], _rest_log_prob(z, ids, lse)[:, None]], dim=-1)
    # the reference's K + 1 stored buckets, renormalised (their float16 rounding leaves them off 1 by ~1e-4)
    ref = torch.cat([ref_log_probs, ref_log_rest[:, None]], dim=-1).float()
    ref = ref - ref.logsumexp(-1, keepdim=True)
    q = ref.exp()
    return torch.where(q > 0, q * (ref - policy), torch.zeros_like(q)).sum(-1)


def bucket_kl(logits, rows, ids, ref_log_probs, ref_log_rest) -> torch.Tensor:
    """``KL_K(ref || policy)`` at positions ``rows`` of ``logits`` (L, V), given the reference's top-K ``ids``
    (n, K), their log-probs (n, K) and its log rest mass (n,); shape (n,), differentiable in ``logits``.

    Each chunk's rows are copied out of ``logits`` before the recomputed part: verl's flash-attn cross-entropy
    (``logprobs_from_logits(inplace_backward=True)``) writes its gradient into the logits tensor during the
    backward pass, so a recomputation must not read ``logits`` itself.
    """
    vocab = logits.shape[-1]
    if ids.shape[-1] >= vocab:
        raise ValueError(f"the stored top-{ids.shape[-1]} leaves no rest bucket in a vocabulary of {vocab}")
    recompute = torch.is_grad_enabled() and logits.requires_grad
    parts = []
    for part in _chunks(len(rows), vocab):
        args = (logits.index_select(0, rows[part]), ids[part].long(), ref_log_probs[part], ref_log_rest[part])
        parts.append(checkpoint(_bucket_kl_rows, *args, use_reentrant=False) if recompute else _bucket_kl_rows(*args))
    return torch.cat(parts) if parts else logits.new_zeros(0).float()


# ---------------------------------------------------------------------------------------------------------------
# Storage
# ---------------------------------------------------------------------------------------------------------------


def storage_row(ids: torch.Tensor, log_probs: torch.Tensor, log_rest: torch.Tensor) -> dict[str, np.ndarray]:
    """One row's stored columns from its (n, K) ids and log-probs and (n,) log rest mass, flat and compact."""
    return {
        TOPK_IDS: ids.to(torch.int32).flatten().cpu().numpy(),
        TOPK_LOG_PROBS: log_probs.to(torch.float16).flatten().cpu().numpy(),
        TOPK_REST: log_rest.to(torch.float16).cpu().numpy(),
    }


def arrow_columns(rows: list[dict]) -> dict:
    """The three top-K columns of ``rows`` (``storage_row`` dicts) as pyarrow list arrays."""
    import pyarrow as pa

    types = {TOPK_IDS: pa.int32(), TOPK_LOG_PROBS: pa.float16(), TOPK_REST: pa.float16()}
    return {name: pa.array([row[name] for row in rows], type=pa.list_(kind)) for name, kind in types.items()}


def with_topk_metadata(table, k: int):
    """A pyarrow table whose schema metadata records K."""
    return table.replace_schema_metadata({**(table.schema.metadata or {}), METADATA_KEY: str(k).encode()})


def stored_k(paths) -> int:
    """The K recorded in the parquet files' metadata (all must agree); an error names a file without one."""
    import pyarrow.parquet as pq

    found = {}
    for path in paths:
        value = (pq.read_schema(path).metadata or {}).get(METADATA_KEY)
        if value is None:
            raise ValueError(f"{path}: no top-K reference distribution (add it with `python -m dft ref_logprobs "
                             "ref.topk=K`)")  # fmt: skip
        found[str(path)] = int(value)
    if len(set(found.values())) > 1:
        raise ValueError(f"the training files store different K: {found}")
    return next(iter(found.values()))


# ---------------------------------------------------------------------------------------------------------------
# Scoring through verl's logits hook, and placing stored rows on the no-padding layout
# ---------------------------------------------------------------------------------------------------------------


def hook_keys(k: int) -> list[str]:
    """The ``model_output`` keys that carry one scored column each: K ids, K log-probs, the log rest mass."""
    return [f"{TOPK_IDS}_{j}" for j in range(k)] + [f"{TOPK_LOG_PROBS}_{j}" for j in range(k)] + [TOPK_REST]


def topk_hook(k: int, model_output=None, data=None, dp_group=None, student_logits=None):
    """A loss function for verl's engine that only records the reference's top-K at the target positions.

    verl's logits hook (``distillation_use_topk``) calls it with ``student_logits`` (1, positions, V) and keeps
    each returned (1, positions) tensor in ``model_output``; the loss proper is 0."""
    if student_logits is None:
        return torch.zeros((), device=model_output["log_probs"].values().device), {}
    logits = student_logits.squeeze(0)
    rows = torch.nonzero(torch.roll(data["loss_mask"].values(), shifts=-1, dims=0).bool()).flatten()
    ids, log_probs, rest = topk_of_logits(logits.index_select(0, rows), k)
    columns = [*ids.float().T, *log_probs.T, rest]  # ids < 2^24 are exact in float32
    out = {}
    for key, values in zip(hook_keys(k), columns):
        placed = torch.zeros(len(logits), dtype=torch.float32, device=logits.device)
        out[key] = placed.index_copy(0, rows, values.float())[None]
    return out


def scored_topk(output, row: int, positions: torch.Tensor, k: int) -> dict[str, list]:
    """Row ``row``'s stored lists (ids, log-probs: K per target position, in order; log rest: one per position)."""
    columns = torch.stack([output[key][row] for key in hook_keys(k)], dim=-1)[positions]
    return {
        TOPK_IDS: columns[:, :k].round().int().flatten().tolist(),
        TOPK_LOG_PROBS: columns[:, k : 2 * k].flatten().tolist(),
        TOPK_REST: columns[:, 2 * k].tolist(),
    }


def place_topk(loss_mask: torch.Tensor, ids, log_probs, rest, k: int, where: str) -> dict[str, torch.Tensor]:
    """The stored top-K of one row on verl's no-padding layout, flat: (L*K,) ids and log-probs, (L,) log rest.

    Positions that are not trained hold a uniform K + 1 bucket distribution (never read by the loss)."""
    positions = torch.roll(loss_mask, shifts=-1, dims=0).bool()
    n, length = int(positions.sum()), len(loss_mask)
    ids, log_probs = torch.as_tensor(np.asarray(ids), dtype=torch.long), torch.as_tensor(np.asarray(log_probs))
    rest = torch.as_tensor(np.asarray(rest))
    if len(ids) != n * k or len(log_probs) != n * k or len(rest) != n:
        raise ValueError(
            f"{where}: a stored top-{k} of {len(ids)} ids, {len(log_probs)} log-probs, {len(rest)} rest buckets for "
            f"{n} target tokens; was it scored with this tokenizer, chat template and data.max_length? Rerun "
            "`python -m dft ref_logprobs ref.topk=K`."
        )
    uniform = -float(np.log(k + 1))
    placed_ids = torch.zeros(length, k, dtype=torch.long)
    placed_log_probs = torch.full((length, k), uniform, dtype=torch.float32)
    placed_rest = torch.full((length,), uniform, dtype=torch.float32)
    placed_ids[positions] = ids.view(n, k)
    placed_log_probs[positions] = log_probs.float().view(n, k)
    placed_rest[positions] = rest.float()
    return {TOPK_IDS: placed_ids.flatten(), TOPK_LOG_PROBS: placed_log_probs.flatten(), TOPK_REST: placed_rest}
