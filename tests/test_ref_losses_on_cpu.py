"""iw-SFT and DPO against independent float64 formulas, in verl's no-padding layout.

The reference log-probabilities sit where the engine puts the policy's (position i scores token i + 1), as
``dft.train.sft_datasets`` places them; positions outside the loss mask hold noise that must not matter.
"""

import math

import pytest
import torch
import torch.nn.functional as F
from test_losses_on_cpu import engine_log_probs, make_sequences, nested, nested_batch
from verl.utils import tensordict_utils as tu

from dft.train.columns import REF_LOG_PROBS
from dft.train.losses.likelihood import iw_sft_loss
from dft.train.losses.preference import dpo_loss
from dft.train.losses.registry import LossConfig, get_loss_fn, loss_config_from
from dft.train.sft_datasets import place_on_targets
from dft.train.trainer import reduce_metric_values

torch.set_default_dtype(torch.float64)

SEQS = dict(lengths=[7, 12, 5, 9], prompt_lengths=[3, 4, 2, 5], vocab=11)


def with_reference(seqs, ref_flat, batch_num_tokens=None, dp_size=1, global_pairs=None):
    model_output, data = nested_batch(seqs, engine_log_probs(seqs), batch_num_tokens, dp_size)
    pieces = torch.split(ref_flat, [len(s["ids"]) for s in seqs])
    data[REF_LOG_PROBS] = nested(list(pieces))
    tu.assign_non_tensor(data, global_batch_size=global_pairs or len(seqs) // 2)
    return model_output, data


def token_terms(seqs):
    """Per sequence, the float64 log-probs of its response tokens from raw logits (F.log_softmax)."""
    out = []
    for s in seqs:
        targets = torch.nonzero(s["mask"]).flatten().tolist()
        out.append(torch.stack([F.log_softmax(s["logits"][j - 1], -1)[s["ids"][j]] for j in targets]))
    return out


def reference_values(seqs, shift_per_seq, seed=1):
    """Reference log-probs = policy's + a per-sequence shift + per-token noise; noise at non-target positions."""
    gen = torch.Generator().manual_seed(seed)
    flat = engine_log_probs(seqs).detach() + 0.3 * torch.randn(sum(len(s["ids"]) for s in seqs), generator=gen)
    pieces = list(torch.split(flat, [len(s["ids"]) for s in seqs]))
    for piece, shift in zip(pieces, shift_per_seq):
        piece += shift
    return torch.cat(pieces)


def reference_targets(seqs, ref_flat):
    """The reference values at each sequence's target positions, as the loss must read them."""
    pieces = torch.split(ref_flat, [len(s["ids"]) for s in seqs])
    return [piece[torch.roll(s["mask"], -1).bool()] for s, piece in zip(seqs, pieces)]


def test_iw_sft_sequence_level_matches_float64_formula_and_clips_at_16():
    seqs = make_sequences(**SEQS)
    ref = reference_values(seqs, shift_per_seq=[0.0, 0.4, -5.0, 0.0])  # sequence 2: ratio e^5 > 16
    loss, metrics = iw_sft_loss(LossConfig("iw_sft"), *with_reference(seqs, ref))
    total, count = 0.0, 0
    for lp, q in zip(token_terms(seqs), reference_targets(seqs, ref)):
        weight = min(max(math.exp(float((lp - q).mean())), 0.0), 16.0)
        total += weight * float(-lp.sum())
        count += len(lp)
    assert math.isclose(loss.item(), total / count, rel_tol=1e-12)
    assert min(math.exp(float((a - b).mean())) for a, b in zip(token_terms(seqs), reference_targets(seqs, ref))) < 16
    assert reduce_metric_values(metrics)["train/iw_weight"] > 1


def test_iw_sft_token_level_matches_float64_formula_and_clips_both_ways():
    seqs = make_sequences(**SEQS)
    ref = reference_values(seqs, shift_per_seq=[0.0, 2.0, -2.0, 0.1])
    loss, _ = iw_sft_loss(LossConfig("iw_sft", iw_level="token"), *with_reference(seqs, ref))
    total, count, clipped = 0.0, 0, set()
    for lp, q in zip(token_terms(seqs), reference_targets(seqs, ref)):
        for a, b in zip(lp.tolist(), q.tolist()):
            ratio = math.exp(a - b)
            clipped.add("low" if ratio < 0.2 else "high" if ratio > 1.8 else "inside")
            total += min(max(ratio, 0.2), 1.8) * -a
            count += 1
    assert clipped == {"low", "high", "inside"}
    assert math.isclose(loss.item(), total / count, rel_tol=1e-12)


def test_iw_sft_gradient_is_weight_times_nll_gradient():
    seqs = make_sequences(**SEQS)
    ref = reference_values(seqs, shift_per_seq=[0.5, -0.5, 0.0, 1.0])
    for s in seqs:
        s["logits"].requires_grad_(True)
    iw_sft_loss(LossConfig("iw_sft"), *with_reference(seqs, ref))[0].backward()
    count = sum(int(s["mask"].sum()) for s in seqs)
    for s, lp, q in zip(seqs, token_terms(seqs), reference_targets(seqs, ref)):
        weight = math.exp(float((lp - q).detach().mean()))
        expected = torch.zeros_like(s["logits"])
        for j in torch.nonzero(s["mask"]).flatten().tolist():
            logits = s["logits"][j - 1].detach().clone().requires_grad_(True)
            (grad,) = torch.autograd.grad(F.cross_entropy(logits[None], s["ids"][j][None]), logits)
            expected[j - 1] = weight * grad / count
        torch.testing.assert_close(s["logits"].grad, expected, rtol=1e-10, atol=1e-14)


def dpo_reference(seqs, ref, beta):
    """Mean over adjacent (chosen, rejected) pairs of -log sigmoid(beta * margin), margins, in float64."""
    sums = [float(lp.sum()) for lp in token_terms(seqs)]
    ref_sums = [float(q.sum()) for q in reference_targets(seqs, ref)]
    margins = [beta * ((sums[i] - ref_sums[i]) - (sums[i + 1] - ref_sums[i + 1])) for i in range(0, len(seqs), 2)]
    losses = [math.log1p(math.exp(-m)) for m in margins]
    return sum(losses) / len(losses), margins


@pytest.mark.parametrize("beta", [0.1, 0.5])
def test_dpo_matches_float64_formula_with_its_metrics(beta):
    seqs = make_sequences(lengths=[7, 12, 5, 9, 6, 8], prompt_lengths=[3, 4, 2, 5, 1, 2], vocab=11)
    ref = reference_values(seqs, shift_per_seq=[0.2, -0.1, 0.0, 0.3, -0.4, 0.1])
    loss, metrics = dpo_loss(LossConfig("dpo", dpo_beta=beta), *with_reference(seqs, ref))
    expected, margins = dpo_reference(seqs, ref, beta)
    assert math.isclose(loss.item(), expected, rel_tol=1e-12)
    metrics = reduce_metric_values(metrics)
    assert math.isclose(metrics["dpo/reward_margin"], sum(margins) / 3, rel_tol=1e-10)
    assert metrics["dpo/accuracy"] == sum(m > 0 for m in margins) / 3
    assert 0 < metrics["dpo/accuracy"] < 1  # the data must exercise both signs
    assert math.isclose(metrics["dpo/chosen_reward"] - metrics["dpo/rejected_reward"], sum(margins) / 3, rel_tol=1e-9)


def test_dpo_is_log_2_when_the_policy_is_the_reference():
    seqs = make_sequences(**SEQS)
    ref = engine_log_probs(seqs).detach()
    loss, metrics = dpo_loss(LossConfig("dpo"), *with_reference(seqs, ref))
    assert math.isclose(loss.item(), math.log(2), rel_tol=1e-12)
    assert reduce_metric_values(metrics)["dpo/reward_margin"] == 0


def pair_grads(seqs, ref, parts, dp_size):
    """DPO loss and logits-gradients summed over (rank, micro-batch) parts of whole pairs."""
    logits = [s["logits"].detach().clone().requires_grad_(True) for s in seqs]
    pieces = torch.split(ref, [len(s["ids"]) for s in seqs])
    total = 0.0
    for rank_parts in parts:
        for idx in rank_parts:
            part = [dict(seqs[i], logits=logits[i]) for i in idx]
            batch = with_reference(part, torch.cat([pieces[i] for i in idx]), dp_size=dp_size,
                                   global_pairs=len(seqs) // 2)  # fmt: skip
            loss, _ = dpo_loss(LossConfig("dpo"), *batch)
            loss.backward()
            total = total + loss.detach() / dp_size
    return total, [g.grad / dp_size for g in logits]


def test_dpo_loss_and_gradient_invariant_to_micro_batch_split_and_dp_size():
    seqs = make_sequences(lengths=[7, 12, 5, 9, 6, 8], prompt_lengths=[3, 4, 2, 5, 1, 2], vocab=11)
    ref = reference_values(seqs, shift_per_seq=[0.2, -0.1, 0.0, 0.3, -0.4, 0.1])
    whole, whole_grads = pair_grads(seqs, ref, [[[0, 1, 2, 3, 4, 5]]], dp_size=1)
    micro, micro_grads = pair_grads(seqs, ref, [[[0, 1], [2, 3, 4, 5]]], dp_size=1)
    dp2, dp2_grads = pair_grads(seqs, ref, [[[0, 1]], [[2, 3], [4, 5]]], dp_size=2)
    for loss, grads in ((micro, micro_grads), (dp2, dp2_grads)):
        torch.testing.assert_close(loss, whole, rtol=1e-12, atol=0)
        for g, w in zip(grads, whole_grads):
            torch.testing.assert_close(g, w, rtol=1e-10, atol=1e-15)


def test_dpo_refuses_a_micro_batch_that_splits_a_pair():
    seqs = make_sequences(lengths=[7, 12, 5], prompt_lengths=[3, 4, 2], vocab=11)
    with pytest.raises(ValueError, match="this micro-batch has 3 rows"):
        dpo_loss(LossConfig("dpo"), *with_reference(seqs, engine_log_probs(seqs).detach(), global_pairs=2))


def test_reference_losses_name_the_missing_column():
    seqs = make_sequences(**SEQS)
    for name in ("iw_sft", "dpo"):
        with pytest.raises(ValueError, match=r"needs the data.s .ref_log_probs. \(made by `python -m dft ref_logprobs"):
            get_loss_fn(LossConfig(name))(*nested_batch(seqs, engine_log_probs(seqs)))


def test_bad_reference_loss_options_are_named():
    with pytest.raises(ValueError, match=r"loss.iw_level='seq' must be 'sequence' or 'token'"):
        loss_config_from({"name": "iw_sft", "iw_level": "seq"})
    with pytest.raises(ValueError, match=r"loss.dpo_beta=0 must be positive"):
        loss_config_from({"name": "dpo", "dpo_beta": 0})
    with pytest.raises(ValueError, match=r"iw_token_min=2.0, loss.iw_token_max=1.8"):
        loss_config_from({"name": "iw_sft", "iw_token_min": 2.0})


def test_stored_reference_values_land_on_target_positions_and_a_wrong_count_names_the_row():
    loss_mask = torch.tensor([0, 0, 0, 1, 1, 1])  # targets are tokens 3, 4, 5: scored at positions 2, 3, 4
    placed = place_on_targets(loss_mask, [-1.0, -2.0, -3.0], "f.parquet row 7")
    assert placed.tolist() == [0.0, 0.0, -1.0, -2.0, -3.0, 0.0]
    with pytest.raises(ValueError, match=r"f.parquet row 7: 2 reference log-probs for 3 target tokens"):
        place_on_targets(loss_mask, [-1.0, -2.0], "f.parquet row 7")


def test_official_normalization_of_dpo_and_iw_sft_is_a_mean_per_micro_batch():
    # 2 ranks x 2 micro-batches of 1 pair (2 rows): the official gradient is M = 2 times the pair-mean one, and
    # the logged value the mean of micro-batch means (equal pair counts: the pair mean)
    seqs = make_sequences(lengths=[7, 12, 5, 9, 6, 8, 10, 4], prompt_lengths=[3, 4, 2, 5, 1, 2, 3, 1], vocab=11)
    ref = reference_values(seqs, shift_per_seq=[0.2, -0.1, 0.0, 0.3, -0.4, 0.1, 0.5, -0.2])
    parts = [[[0, 1], [2, 3]], [[4, 5], [6, 7]]]
    results = {}
    for norm in ("token", "official"):
        logits = [s["logits"].detach().clone().requires_grad_(True) for s in seqs]
        pieces, logged = torch.split(ref, [len(s["ids"]) for s in seqs]), 0.0
        for rank_parts in parts:
            for idx in rank_parts:
                part = [dict(seqs[i], logits=logits[i]) for i in idx]
                batch = with_reference(part, torch.cat([pieces[i] for i in idx]), dp_size=2, global_pairs=4)
                tu.assign_non_tensor(batch[1], micro_batch_size_per_gpu=1, use_dynamic_bsz=False)
                loss, _ = dpo_loss(LossConfig("dpo", normalization=norm, official_micro_batches=2), *batch)
                loss.backward()
                logged += loss.item() / 2
        results[norm] = logged, [g.grad / 2 for g in logits]
    assert math.isclose(results["official"][0], results["token"][0], rel_tol=1e-12)
    for official, token in zip(results["official"][1], results["token"][1]):
        torch.testing.assert_close(official, 2 * token, rtol=1e-10, atol=1e-15)
    # iw-SFT: one micro-batch of the whole batch (M = 1) is the token mean itself
    ref4 = reference_values(seqs[:4], shift_per_seq=[0.0, 0.4, -0.2, 0.0])
    batch = with_reference(seqs[:4], ref4)
    tu.assign_non_tensor(batch[1], global_batch_size=4, micro_batch_size_per_gpu=4, use_dynamic_bsz=False)
    official, _ = iw_sft_loss(LossConfig("iw_sft", normalization="official", official_micro_batches=1), *batch)
    token, _ = iw_sft_loss(LossConfig("iw_sft"), *batch)
    torch.testing.assert_close(official, token, rtol=1e-12, atol=0)
