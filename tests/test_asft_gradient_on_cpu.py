"""asft's gradient against an independent float64 reference, under both normalisations.

The project runs as verl's engine does (the logits hook, then the loss, per micro-batch; gradients averaged over
ranks); the reference differentiates, in float64 from raw logits and the stored top-K the loss reads, ``-sg(p_t)
log p_t + beta KL_t`` per target with ``KL_t`` summed by hand over the reference's K buckets and one rest bucket
(the policy's rest as the sum of its other probabilities), then normalised: the global token mean (``token``), or
``M_o = 8`` times the mean of the micro-batch token means (``official``, as the ASFT authors' trainer and
LLaMA-Factory sum micro-batch means, and the official DFT run had 8 micro-batches per rank).
"""

import pytest
import torch
import torch.nn.functional as F
from test_beyond_losses_on_cpu import stored_reference
from test_losses_on_cpu import EIGHT, engine_log_probs, make_sequences, nested_batch
from verl.utils import tensordict_utils as tu

from dft.train.columns import TOPK_IDS, TOPK_LOG_PROBS, TOPK_REST
from dft.train.losses.beyond import ASFT_KL, asft_loss
from dft.train.losses.registry import LossConfig

K, BETA = 4, 0.3


def reference_logits(seqs, shift=0.7, seed=3):
    gen = torch.Generator().manual_seed(seed)
    return [s["logits"] + shift * torch.randn(s["logits"].shape, generator=gen) for s in seqs]


def project_gradients(seqs, ref_logits, parts, config):
    """d loss / d logits per sequence through dft's asft, micro-batch by micro-batch as verl's engine runs it."""
    leaves = [s["logits"].detach().clone().requires_grad_(True) for s in seqs]
    total = sum(int(s["mask"].sum()) for s in seqs)
    for rank_parts in parts:
        for idx in rank_parts:
            part = [dict(seqs[i], logits=leaves[i]) for i in idx]
            model_output, data = nested_batch(part, engine_log_probs(part), total, len(parts))
            data.update(stored_reference(part, [ref_logits[i] for i in idx], K)[0])
            tu.assign_non_tensor(data, global_batch_size=len(seqs), micro_batch_size_per_gpu=len(idx),
                                 use_dynamic_bsz=False)  # fmt: skip
            hook = asft_loss(config, data=data, student_logits=torch.cat([s["logits"] for s in part])[None])
            offsets = model_output["log_probs"].offsets()
            model_output[ASFT_KL] = torch.nested.nested_tensor_from_jagged(hook[ASFT_KL][0], offsets)
            asft_loss(config, model_output, data)[0].backward()
    return [leaf.grad / len(parts) for leaf in leaves]


def reference_terms(seq, ref_logits, logits):
    """Per target token of one sequence, ``-sg(p) log p + beta KL(q || pi)`` over the stored K + 1 buckets."""
    stored = {key: value.values() for key, value in stored_reference([seq], [ref_logits], K)[0].items()}
    terms = []
    for j in torch.nonzero(seq["mask"]).flatten().tolist():
        z, top = logits[j - 1], stored[TOPK_IDS].view(-1, K)[j - 1]
        log_p = F.log_softmax(z, -1)
        ce = -log_p[seq["ids"][j]]
        pi = log_p.exp()
        others = torch.ones(len(pi), dtype=torch.bool)
        others[top] = False
        pi_buckets = torch.cat([pi[top], pi[others].sum()[None]])
        q = torch.cat([stored[TOPK_LOG_PROBS].view(-1, K)[j - 1], stored[TOPK_REST][j - 1][None]]).double().exp()
        q = q / q.sum()  # the float16-stored buckets, renormalised
        terms.append(torch.exp(-ce.detach()) * ce + BETA * (q * (q.log() - pi_buckets.log())).sum())
    return torch.stack(terms)


def reference_gradients(seqs, ref_logits, micro_batches, normalization):
    leaves = [s["logits"].detach().clone().requires_grad_(True) for s in seqs]
    terms = {i: reference_terms(seqs[i], ref_logits[i], leaves[i]) for i in range(len(seqs))}
    if normalization == "token":
        objective = torch.cat(list(terms.values())).mean()
    else:
        objective = 8 * torch.stack([torch.cat([terms[i] for i in rows]).mean() for rows in micro_batches]).mean()
    objective.backward()
    return [leaf.grad for leaf in leaves]


@pytest.mark.parametrize("normalization", ["token", "official"])
def test_asft_gradient_matches_the_float64_reference(normalization):
    seqs = make_sequences(**EIGHT)
    ref_logits = reference_logits(seqs)
    config = LossConfig("asft", kl_beta=BETA, normalization=normalization)
    micro_batches = [[0, 1], [2, 3], [4, 5], [6, 7]]
    expected = reference_gradients(seqs, ref_logits, micro_batches, normalization)
    for parts in ([micro_batches[:2], micro_batches[2:]], [micro_batches]):  # 2 ranks x 2, 1 rank x 4
        got = project_gradients(seqs, ref_logits, parts, config)
        for g, r in zip(got, expected):
            # the KL runs in float32 (dft.train.ref_topk.bucket_kl), the DFT term in float64
            torch.testing.assert_close(g, r, rtol=1e-5, atol=1e-7)
    assert max(g.abs().max() for g in expected) > 1e-3
