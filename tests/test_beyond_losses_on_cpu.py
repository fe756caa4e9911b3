"""prob_power, asft and loss.full_weight_tokens against independent float64 formulas, in verl's no-padding layout.

The KL of ``asft`` is checked against ``KL(q || p)`` computed from full softmaxes (``torch.softmax``, a plain
sum), with the reference's top-K taken by ``torch.sort``; the stored columns round-trip through float16 as
they do on disk.
"""

import math

import pytest
import torch
import torch.nn.functional as F
from test_losses_on_cpu import engine_log_probs, make_sequences, nested, nested_batch, reference_token_terms

from dft.train.columns import TOPK_IDS, TOPK_LOG_PROBS, TOPK_REST
from dft.train.losses.beyond import ASFT_KL, KL_METRIC, asft_loss, kl_at_targets, prob_power_loss
from dft.train.losses.likelihood import dft_loss, sft_loss
from dft.train.losses.registry import LossConfig
from dft.train.ref_topk import place_topk, stored_k, topk_of_logits
from dft.train.sft_datasets import target_positions
from dft.train.trainer import reduce_metric_values

torch.set_default_dtype(torch.float64)

SEQS = dict(lengths=[7, 12, 5, 9], prompt_lengths=[3, 4, 2, 5], vocab=11)


def grad_of(loss_fn, config, seqs, **extra):
    """d loss / d logits of every sequence, through the engine's flat log-probs."""
    for s in seqs:
        s["logits"] = s["logits"].detach().requires_grad_(True)
    model_output, data = nested_batch(seqs, engine_log_probs(seqs))
    data.update(extra)
    loss, _ = loss_fn(config, model_output, data)
    return torch.autograd.grad(loss, [s["logits"] for s in seqs])


@pytest.mark.parametrize("alpha", [0.1, 0.5, 1.0, 2.0])
def test_prob_power_matches_its_float64_formula(alpha):
    seqs = make_sequences(**SEQS)
    model_output, data = nested_batch(seqs, engine_log_probs(seqs))
    loss, metrics = prob_power_loss(LossConfig("prob_power", power_alpha=alpha), model_output, data)
    p, ce = reference_token_terms(seqs)
    assert loss.item() == pytest.approx(((1 - p**alpha) / alpha).mean().item(), rel=1e-12)
    assert reduce_metric_values(metrics)["train/nll"] == pytest.approx(ce.mean().item(), rel=1e-12)


def test_prob_power_gradient_is_sfts_as_alpha_vanishes_and_dfts_at_one():
    seqs = make_sequences(**SEQS)
    sft = grad_of(sft_loss, LossConfig("sft"), seqs)
    dft = grad_of(dft_loss, LossConfig("dft"), seqs)
    at_one = grad_of(prob_power_loss, LossConfig("prob_power", power_alpha=1.0), seqs)
    tiny = grad_of(prob_power_loss, LossConfig("prob_power", power_alpha=1e-7), seqs)
    for a, b in zip(at_one, dft):
        torch.testing.assert_close(a, b, rtol=1e-12, atol=1e-15)
    for a, b in zip(tiny, sft):  # the weight p^a = 1 + a log p + ...: within ~1e-6 of 1
        torch.testing.assert_close(a, b, rtol=1e-5, atol=1e-9)
    assert max((a - b).abs().max() for a, b in zip(at_one, sft)) > 1e-2  # the two limits differ


def full_weight_targets(seqs, tokens):
    """Per response token of each sequence, whether its target id is one of ``tokens`` (float64 reference)."""
    flags = [bool(s["ids"][j] in tokens) for s in seqs for j in torch.nonzero(s["mask"]).flatten().tolist()]
    return torch.tensor(flags)


@pytest.mark.parametrize("name", ["dft", "prob_power", "asft"])
def test_full_weight_tokens_keep_the_sft_term_and_leave_the_others(name):
    seqs = make_sequences(**SEQS)
    tokens = (3, 7)
    full = full_weight_targets(seqs, tokens)
    assert 0 < full.sum() < len(full)
    p, ce = reference_token_terms(seqs)
    alpha = 0.5 if name == "prob_power" else 1.0
    config = LossConfig(name, full_weight_tokens=tokens, power_alpha=alpha, kl_beta=0.0)
    model_output, data = nested_batch(seqs, engine_log_probs(seqs))
    if name == "asft":
        model_output[ASFT_KL] = torch.nested.nested_tensor_from_jagged(
            torch.zeros(sum(len(s["ids"]) for s in seqs)), model_output["log_probs"].offsets()
        )
    loss, _ = {"dft": dft_loss, "prob_power": prob_power_loss, "asft": asft_loss}[name](config, model_output, data)
    others = p * ce if name != "prob_power" else (1 - p**alpha) / alpha
    assert loss.item() == pytest.approx(torch.where(full, ce, others).mean().item(), rel=1e-12)


def test_full_weight_tokens_only_apply_to_the_down_weighting_losses():
    with pytest.raises(ValueError, match="full_weight_tokens applies to"):
        LossConfig("sft", full_weight_tokens=(3,))
    with pytest.raises(ValueError, match="power_alpha=0"):
        LossConfig("prob_power", power_alpha=0.0)


# ---------------------------------------------------------------------------------------------------------------
# asft: the top-K bucket KL
# ---------------------------------------------------------------------------------------------------------------


def stored_reference(seqs, ref_logits, k):
    """The reference's top-K per target position as dft.train.ref_scoring stores it (float16), placed as the dataset
    places it; plus float64 (top ids, log q) per target position for the reference formula."""
    columns = {TOPK_IDS: [], TOPK_LOG_PROBS: [], TOPK_REST: []}
    exact = []
    for s, logits in zip(seqs, ref_logits):
        positions = target_positions(s["mask"])
        ids, log_probs, rest = topk_of_logits(logits[positions], k)
        placed = place_topk(s["mask"], ids.flatten(), log_probs.half().flatten(), rest.half(), k, "row")
        for key, value in placed.items():
            columns[key].append(value)
        exact.extend(zip(ids.long(), torch.log_softmax(logits[positions], -1)))
    return {key: nested(values) for key, values in columns.items()}, exact


def bucket_kl_reference(policy_logits, top_ids, ref_log_q):
    """KL between q and p coarsened to q's top-K and one rest bucket, from full float64 softmaxes."""
    p, q = torch.softmax(policy_logits, -1), ref_log_q.exp()
    rest = torch.ones(len(p), dtype=torch.bool)
    rest[top_ids] = False
    buckets_q = torch.cat([q[top_ids], q[rest].sum()[None]])
    buckets_p = torch.cat([p[top_ids], p[rest].sum()[None]])
    return (buckets_q * (buckets_q.log() - buckets_p.log())).sum()


def asft_batch(seqs, k, beta, shift=0.7, seed=3):
    gen = torch.Generator().manual_seed(seed)
    ref_logits = [s["logits"] + shift * torch.randn(s["logits"].shape, generator=gen) for s in seqs]
    columns, exact = stored_reference(seqs, ref_logits, k)
    model_output, data = nested_batch(seqs, engine_log_probs(seqs))
    data.update(columns)
    policy = torch.cat([s["logits"] for s in seqs])
    hook = asft_loss(LossConfig("asft", kl_beta=beta), data=data, student_logits=policy[None])
    model_output[ASFT_KL] = torch.nested.nested_tensor_from_jagged(
        hook[ASFT_KL][0], model_output["log_probs"].offsets()
    )
    return model_output, data, exact, policy


@pytest.mark.parametrize("k", [1, 4, 10])
def test_asft_is_dft_plus_beta_times_the_bucket_kl(k):
    seqs = make_sequences(**SEQS)
    model_output, data, exact, _ = asft_batch(seqs, k, beta=0.3)
    loss, metrics = asft_loss(LossConfig("asft", kl_beta=0.3), model_output, data)
    policy_rows = [s["logits"][j - 1] for s in seqs for j in torch.nonzero(s["mask"]).flatten().tolist()]
    kl = torch.stack([bucket_kl_reference(z, ids, lq) for z, (ids, lq) in zip(policy_rows, exact)])
    p, ce = reference_token_terms(seqs)
    # float16 storage: the stored log q are off by <= 2^-11 relative, which moves the KL by ~1e-4 of itself
    assert loss.item() == pytest.approx((p * ce + 0.3 * kl).mean().item(), rel=1e-3)
    assert reduce_metric_values(metrics)[KL_METRIC] == pytest.approx(kl.mean().item(), rel=1e-3)
    if k == SEQS["vocab"] - 1:  # K = V - 1 leaves one token in the rest bucket: the project's KL is the exact KL
        full = torch.stack(
            [(lq.exp() * (lq - torch.log_softmax(z, -1))).sum() for z, (_, lq) in zip(policy_rows, exact)]
        )
        mask = torch.roll(data["loss_mask"].values(), -1).bool()
        torch.testing.assert_close(model_output[ASFT_KL].values()[mask].double(), full, rtol=2e-3, atol=5e-5)


def test_bucket_kl_is_the_exact_kl_at_k_v_minus_1_and_grows_with_k():
    seqs = make_sequences(**SEQS)
    means = []
    for k in (1, 3, 6, 10):
        model_output, *_ = asft_batch(seqs, k, beta=1.0)
        means.append(model_output[ASFT_KL].values().sum().item())
    assert means == sorted(means)
    _, data, exact, policy = asft_batch(seqs, 10, beta=1.0)
    mask = torch.roll(data["loss_mask"].values(), -1).bool()
    policy_rows = policy[mask]
    full = sum((lq.exp() * (lq - torch.log_softmax(z, -1))).sum() for z, (_, lq) in zip(policy_rows, exact))
    assert means[-1] == pytest.approx(full.item(), rel=1e-3)


def test_asft_kl_gradient_reaches_the_logits_and_vanishes_at_the_reference():
    seqs = make_sequences(**SEQS)
    _, data, _, policy = asft_batch(seqs, 4, beta=1.0)
    logits = policy.detach().requires_grad_(True)
    kl = kl_at_targets(logits, data)
    (grad,) = torch.autograd.grad(kl.sum(), logits)
    assert grad.abs().sum() > 0 and kl.min() >= -1e-12
    mask = torch.roll(data["loss_mask"].values(), -1).bool()
    assert grad[~mask].abs().sum() == 0 and kl[~mask].abs().sum() == 0
    # the policy equal to the reference: KL 0 (up to the float16 storage)
    same, *_ = asft_batch(seqs, 4, beta=1.0, shift=0.0)
    assert same[ASFT_KL].values().abs().max() < 1e-5


def test_asft_without_the_stored_top_k_names_the_command():
    seqs = make_sequences(**SEQS)
    _, data = nested_batch(seqs, engine_log_probs(seqs))
    with pytest.raises(ValueError, match="ref.topk=K"):
        asft_loss(LossConfig("asft"), data=data, student_logits=torch.cat([s["logits"] for s in seqs])[None])


def test_a_stored_top_k_of_the_wrong_length_names_the_row_and_k_comes_from_the_file(tmp_path):
    import pyarrow as pa
    import pyarrow.parquet as pq

    from dft.train.ref_topk import with_topk_metadata

    mask = torch.tensor([0, 0, 1, 1, 1])
    with pytest.raises(ValueError, match="row 7: a stored top-2 of 4 ids"):
        place_topk(mask, [1, 2, 3, 4], [0.0] * 4, [0.0, 0.0], 2, "row 7")
    path = tmp_path / "x.parquet"
    pq.write_table(with_topk_metadata(pa.table({"a": [1]}), 5), path)
    assert stored_k([path]) == 5
    pq.write_table(pa.table({"a": [1]}), tmp_path / "y.parquet")
    with pytest.raises(ValueError, match="y.parquet: no top-K"):
        stored_k([tmp_path / "y.parquet"])


def test_topk_rest_bucket_is_logsumexp_of_the_other_logits():
    logits = torch.tensor([[30.0, 0.0, -1.0, 2.0]])
    ids, log_probs, rest = topk_of_logits(logits.float(), 1)
    assert ids.tolist() == [[0]]
    expected = math.log(sum(math.exp(v - 30.0) for v in (0.0, -1.0, 2.0))) - torch.logsumexp(logits - 30.0, -1).item()
    assert rest.item() == pytest.approx(expected, rel=1e-5)  # 1 - q_top would round to 0 in float32
    assert log_probs.item() == pytest.approx(F.log_softmax(logits, -1)[0, 0].item(), abs=1e-6)


def test_full_weight_tokens_resolve_with_the_real_qwen_tokenizer_before_training():
    from omegaconf import OmegaConf
    from transformers import AutoTokenizer

    from dft.models.cards import default_models_dir
    from dft.train.full_weight import resolve_full_weight_tokens, token_id

    qwen = str(default_models_dir() / "qwen2.5-math-1.5b")
    config = OmegaConf.create({"model": {"path": qwen}, "loss": {"full_weight_tokens": ["eos", "end_of_turn", 7]}})
    # Qwen2.5-Math-1.5B: eos <|endoftext|> 151643, the chat template's end of turn <|im_end|> 151645
    assert resolve_full_weight_tokens(config) == [7, 151643, 151645] == list(config.loss.full_weight_tokens)
    config.loss.full_weight_tokens = ["<|im_end|>", "<|nope|>"]
    with pytest.raises(ValueError, match=r"'<\|nope\|>' is not one token of the vocabulary"):
        resolve_full_weight_tokens(config)
    with pytest.raises(ValueError, match="token id 10000000 is outside the vocabulary"):
        token_id(AutoTokenizer.from_pretrained(qwen), 10**7)


def test_asft_refuses_fused_kernels_naming_the_key():
    from conftest import compose_config

    from dft.train.losses.registry import loss_errors

    config = compose_config(["preset=qwen2.5-math-1.5b", "loss.name=asft"])  # the preset turns fused kernels on
    [error] = loss_errors(config)
    assert "loss.name=asft reads the policy's logits" in error and "model.use_fused_kernels=False" in error
    config.model.use_fused_kernels = False
    assert loss_errors(config) == []
