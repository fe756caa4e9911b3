"""dft.train.losses.registry against independent float64 references computed from raw logits.

The batch is laid out as verl's engine lays it out: jagged input ids and loss mask, and per-token log-probs
of the *next* token computed on the flattened batch (so the loss mask must be rolled by one).
"""

import math
import os
import subprocess
import sys

import pytest
import torch
import torch.nn.functional as F
from verl.utils import tensordict_utils as tu
from verl.workers.utils.losses import sft_loss as verl_sft_loss

from dft.train.losses.likelihood import dft_loss, sft_loss
from dft.train.losses.registry import LossConfig, get_loss_fn, loss_config_from
from dft.train.trainer import reduce_metric_values

torch.set_default_dtype(torch.float64)


def make_sequences(lengths, prompt_lengths, vocab, seed=0, logit_scale=3.0):
    """Random token ids, per-position logits and loss masks (prompt 0, response 1) for each sequence."""
    gen = torch.Generator().manual_seed(seed)
    seqs = []
    for length, prompt in zip(lengths, prompt_lengths):
        ids = torch.randint(0, vocab, (length,), generator=gen)
        logits = torch.randn(length, vocab, generator=gen) * logit_scale
        mask = torch.zeros(length, dtype=torch.long)
        mask[prompt:] = 1
        seqs.append({"ids": ids, "logits": logits, "mask": mask})
    return seqs


def engine_log_probs(seqs):
    """Flat log-probs as verl's engine computes them: log_softmax(logits[t])[ids rolled left by one]."""
    logits = torch.cat([s["logits"] for s in seqs])
    targets = torch.roll(torch.cat([s["ids"] for s in seqs]), shifts=-1)
    return torch.log_softmax(logits, dim=-1).gather(-1, targets[:, None]).squeeze(-1)


def nested(tensors):
    return torch.nested.nested_tensor(tensors, layout=torch.jagged)


def nested_batch(seqs, log_probs_flat, batch_num_tokens=None, dp_size=1):
    """(model_output, data) in verl's no-padding layout."""
    offsets = [0]
    for s in seqs:
        offsets.append(offsets[-1] + len(s["ids"]))
    if batch_num_tokens is None:
        batch_num_tokens = int(sum(s["mask"].sum() for s in seqs))
    data = tu.get_tensordict(
        tensor_dict={"input_ids": nested([s["ids"] for s in seqs]), "loss_mask": nested([s["mask"] for s in seqs])},
        non_tensor_dict={"pad_mode": "no_padding", "batch_num_tokens": batch_num_tokens, "dp_size": dp_size},
    )
    # as the engine builds it: a jagged view over the flat log-probs, which keeps the autograd graph
    log_probs = torch.nested.nested_tensor_from_jagged(log_probs_flat, torch.tensor(offsets))
    return {"log_probs": log_probs}, data


def padded_batch(seqs, log_probs_flat):
    """(model_output, data) in verl's right-padding layout: response-aligned (B, R) log-probs and mask."""
    width = max(int(s["mask"].sum()) for s in seqs)
    log_probs = torch.zeros(len(seqs), width)
    response_mask = torch.zeros(len(seqs), width, dtype=torch.long)
    start = 0
    for i, s in enumerate(seqs):
        prompt = int((s["mask"] == 0).sum())
        n = len(s["ids"]) - prompt
        # the log-prob of response token j sits at the position before it
        log_probs[i, :n] = log_probs_flat[start + prompt - 1 : start + prompt - 1 + n]
        response_mask[i, :n] = 1
        start += len(s["ids"])
    num_tokens = int(response_mask.sum())
    data = tu.get_tensordict(
        tensor_dict={"response_mask": response_mask},
        non_tensor_dict={"pad_mode": "right", "batch_num_tokens": num_tokens, "dp_size": 1},
    )
    return {"log_probs": log_probs}, data


def reference_token_terms(seqs):
    """Per response token (p, CE) from raw logits with softmax and F.cross_entropy, in float64."""
    probs, ces = [], []
    for s in seqs:
        for j in torch.nonzero(s["mask"]).flatten().tolist():
            logits, target = s["logits"][j - 1], s["ids"][j]
            ces.append(F.cross_entropy(logits[None], target[None]))
            probs.append(torch.softmax(logits, dim=-1)[target])
    return torch.stack(probs), torch.stack(ces)


SEQS = dict(lengths=[7, 12, 5, 9], prompt_lengths=[3, 4, 2, 5], vocab=11)


def test_dft_matches_float64_reference_from_logits():
    seqs = make_sequences(**SEQS)
    model_output, data = nested_batch(seqs, engine_log_probs(seqs))
    loss, _ = dft_loss(LossConfig("dft"), model_output, data)
    p, ce = reference_token_terms(seqs)
    torch.testing.assert_close(loss, (p * ce).mean(), rtol=1e-12, atol=0)


def test_dft_is_half_ce_for_uniform_two_token_vocabulary():
    seqs = make_sequences([6, 4], [2, 1], vocab=2, logit_scale=0.0)
    model_output, data = nested_batch(seqs, engine_log_probs(seqs))
    dft, _ = dft_loss(LossConfig("dft"), model_output, data)
    ce, _ = sft_loss(LossConfig("sft"), model_output, data)
    assert math.isclose(ce.item(), math.log(2), rel_tol=1e-12)
    assert math.isclose(dft.item(), math.log(2) / 2, rel_tol=1e-12)


def test_dft_gradient_is_probability_times_nll_gradient():
    seqs = make_sequences(**SEQS)
    for s in seqs:
        s["logits"].requires_grad_(True)
    model_output, data = nested_batch(seqs, engine_log_probs(seqs))
    dft_loss(LossConfig("dft"), model_output, data)[0].backward()
    dft_grads = [s["logits"].grad.clone() for s in seqs]

    # independent: for each response token, p_t * d(CE_t)/d(logits) / N, from F.cross_entropy's gradient
    num_tokens = sum(int(s["mask"].sum()) for s in seqs)
    for s, dft_grad in zip(seqs, dft_grads):
        expected = torch.zeros_like(s["logits"])
        for j in torch.nonzero(s["mask"]).flatten().tolist():
            logits = s["logits"][j - 1].detach().clone().requires_grad_(True)
            ce = F.cross_entropy(logits[None], s["ids"][j][None])
            (grad,) = torch.autograd.grad(ce, logits)
            expected[j - 1] = torch.exp(-ce.detach()) * grad / num_tokens
        torch.testing.assert_close(dft_grad, expected, rtol=1e-10, atol=1e-14)


@pytest.mark.parametrize("name", ["sft", "dft"])
def test_padded_and_nested_layouts_agree(name):
    seqs = make_sequences(**SEQS)
    flat = engine_log_probs(seqs)
    loss_fn = get_loss_fn(LossConfig(name))
    nested_loss, _ = loss_fn(*nested_batch(seqs, flat))
    padded_loss, _ = loss_fn(*padded_batch(seqs, flat))
    torch.testing.assert_close(nested_loss, padded_loss, rtol=1e-12, atol=0)


def grads_of(loss_fn, seqs, parts, dp_size):
    """Sum of losses and logits-gradients over (rank, micro-batch) parts, normalised by the global count."""
    total_tokens = sum(int(s["mask"].sum()) for s in seqs)
    logits = [s["logits"].detach().clone().requires_grad_(True) for s in seqs]
    total = 0.0
    for rank_parts in parts:
        rank_loss = 0.0
        for idx in rank_parts:
            part = [dict(seqs[i], logits=logits[i]) for i in idx]
            loss, _ = loss_fn(*nested_batch(part, engine_log_probs(part), total_tokens, dp_size))
            loss.backward()
            rank_loss = rank_loss + loss.detach()
        total = total + rank_loss / dp_size  # verl all-reduces the logged loss with AVG over ranks
    # FSDP averages gradients over ranks
    return total, [g.grad / dp_size for g in logits]


@pytest.mark.parametrize("name", ["sft", "dft"])
def test_loss_and_gradient_invariant_to_micro_batch_split_and_dp_size(name):
    seqs = make_sequences(lengths=[7, 12, 5, 9, 6, 8], prompt_lengths=[3, 4, 2, 5, 1, 2], vocab=11)
    loss_fn = get_loss_fn(LossConfig(name))
    whole, whole_grads = grads_of(loss_fn, seqs, [[[0, 1, 2, 3, 4, 5]]], dp_size=1)
    micro, micro_grads = grads_of(loss_fn, seqs, [[[0, 1], [2, 3, 4], [5]]], dp_size=1)
    dp2, dp2_grads = grads_of(loss_fn, seqs, [[[0, 1], [2]], [[3], [4, 5]]], dp_size=2)
    for loss, grads in ((micro, micro_grads), (dp2, dp2_grads)):
        torch.testing.assert_close(loss, whole, rtol=1e-12, atol=0)
        for g, w in zip(grads, whole_grads):
            torch.testing.assert_close(g, w, rtol=1e-10, atol=1e-15)


def test_sft_is_verl_sft_loss_to_the_bit():
    torch.set_default_dtype(torch.float32)
    try:
        seqs = make_sequences(**SEQS)
        for s in seqs:
            s["logits"] = s["logits"].float()
        for batch in (nested_batch(seqs, engine_log_probs(seqs)), padded_batch(seqs, engine_log_probs(seqs))):
            ours, _ = sft_loss(LossConfig("sft"), *batch)
            theirs, _ = verl_sft_loss(None, *batch)
            assert torch.equal(ours, theirs)
    finally:
        torch.set_default_dtype(torch.float64)


def test_nll_metric_is_cross_entropy_for_every_loss():
    seqs = make_sequences(**SEQS)
    _, ce = reference_token_terms(seqs)
    for name in ("sft", "dft"):
        _, metrics = get_loss_fn(LossConfig(name))(*nested_batch(seqs, engine_log_probs(seqs)))
        assert math.isclose(reduce_metric_values(metrics)["train/nll"], ce.mean().item(), rel_tol=1e-12)


def test_weight_floor_and_alpha_follow_their_formulas():
    seqs = make_sequences(**SEQS)
    batch = nested_batch(seqs, engine_log_probs(seqs))
    p, ce = reference_token_terms(seqs)
    floored, _ = dft_loss(LossConfig("dft", weight_floor=0.2), *batch)
    torch.testing.assert_close(floored, (p.clamp(min=0.2) * ce).mean(), rtol=1e-12, atol=0)
    mixed, _ = dft_loss(LossConfig("dft", alpha=0.3), *batch)
    torch.testing.assert_close(mixed, ((0.3 * p + 0.7) * ce).mean(), rtol=1e-12, atol=0)
    as_sft, _ = dft_loss(LossConfig("dft", alpha=0.0), *batch)
    torch.testing.assert_close(as_sft, ce.mean(), rtol=1e-12, atol=0)


def test_unknown_loss_name_lists_valid_names():
    with pytest.raises(
        ValueError, match=r"loss.name='dtf' is not a known loss \(did you mean dft\?\); valid names: asft, dft, dpo, "
    ):
        loss_config_from({"name": "dtf"})


def test_bad_loss_options_are_named():
    with pytest.raises(ValueError, match=r"loss.weight_floor=1.5 must lie in \[0, 1\]"):
        loss_config_from({"name": "dft", "weight_floor": 1.5})
    with pytest.raises(ValueError, match=r"loss.floor is not a key of the loss section; did you mean loss.weight_fl"):
        loss_config_from({"name": "dft", "floor": 0.1})


# --- loss.normalization=official: the official DFT trainer's per-micro-batch means -------------------------------

EIGHT = dict(lengths=[7, 12, 5, 9, 6, 8, 11, 4], prompt_lengths=[3, 4, 2, 5, 1, 2, 6, 1], vocab=11)


def engine_step(loss_fn, seqs, parts, micro_batch_size):
    """Run a loss over (rank, micro-batch) parts as verl's engine does with fixed micro-batches: backward on each
    micro-batch's loss, logged loss = sum over micro-batches averaged over ranks, gradients averaged over ranks."""
    dp_size = len(parts)
    logits = [s["logits"].detach().clone().requires_grad_(True) for s in seqs]
    total_tokens = sum(int(s["mask"].sum()) for s in seqs)
    logged = 0.0
    for rank_parts in parts:
        for idx in rank_parts:
            part = [dict(seqs[i], logits=logits[i]) for i in idx]
            model_output, data = nested_batch(part, engine_log_probs(part), total_tokens, dp_size)
            tu.assign_non_tensor(data, global_batch_size=len(seqs), micro_batch_size_per_gpu=micro_batch_size,
                                 use_dynamic_bsz=False)  # fmt: skip
            loss, _ = loss_fn(model_output, data)
            loss.backward()
            logged += loss.item() / dp_size
    return logged, [g.grad / dp_size for g in logits]


def official_reference(name, seqs, parts):
    """The official formula in float64 from raw logits: J = 1/R sum_r sum_m mean_{t in m} w_t CE_t; its gradient,
    and the logged value J / M."""
    logits = [s["logits"].detach().clone().requires_grad_(True) for s in seqs]
    objective = 0.0
    for rank_parts in parts:
        for idx in rank_parts:
            terms = []
            for i in idx:
                for j in torch.nonzero(seqs[i]["mask"]).flatten().tolist():
                    ce = F.cross_entropy(logits[i][j - 1][None], seqs[i]["ids"][j][None])
                    terms.append(torch.exp(-ce.detach()) * ce if name == "dft" else ce)
            objective = objective + torch.stack(terms).mean() / len(parts)
    objective.backward()
    return objective.item() / len(parts[0]), [g.grad for g in logits]


@pytest.mark.parametrize("name", ["sft", "dft"])
def test_official_normalization_matches_its_float64_formula(name):
    seqs = make_sequences(**EIGHT)
    for parts, mbs in (([[[0, 1], [2, 3]], [[4, 5], [6, 7]]], 2), ([[[0], [1], [2], [3], [4], [5], [6], [7]]], 1)):
        # run on the official layout itself (M_o = M); other layouts: test_official_scale_on_cpu
        loss_fn = get_loss_fn(LossConfig(name, normalization="official", official_micro_batches=len(parts[0])))
        logged, grads = engine_step(loss_fn, seqs, parts, mbs)
        ref_logged, ref_grads = official_reference(name, seqs, parts)
        assert math.isclose(logged, ref_logged, rel_tol=1e-12)
        for g, r in zip(grads, ref_grads):
            torch.testing.assert_close(g, r, rtol=1e-10, atol=1e-15)


def test_official_gradient_depends_on_the_split_as_its_formula_predicts():
    seqs = make_sequences(**EIGHT)
    official = get_loss_fn(LossConfig("dft", normalization="official", official_micro_batches=2))
    token = get_loss_fn(LossConfig("dft"))
    by_two = [[[0, 1], [2, 3]], [[4, 5], [6, 7]]]
    token_logged, token_grads = engine_step(token, seqs, by_two, 2)
    logged, grads = engine_step(official, seqs, by_two, 2)
    # per token, official / token = N / (R * n_m): tokens of short micro-batches weigh more
    tokens = sum(int(s["mask"].sum()) for s in seqs)
    for rank_parts in by_two:
        for idx in rank_parts:
            n_m = sum(int(seqs[i]["mask"].sum()) for i in idx)
            for i in idx:
                torch.testing.assert_close(grads[i], token_grads[i] * tokens / (2 * n_m), rtol=1e-10, atol=1e-15)
    # the logged loss is the mean of micro-batch means, not the token mean
    assert not math.isclose(logged, token_logged, rel_tol=1e-3)
    # equal token counts per micro-batch: exactly M = 2 micro-batches per rank times the token-mean gradient
    equal = make_sequences([6] * 8, [2] * 8, vocab=11)
    _, g_token = engine_step(token, equal, by_two, 2)
    _, g_official = engine_step(official, equal, by_two, 2)
    for a, b in zip(g_official, g_token):
        torch.testing.assert_close(a, 2 * b, rtol=1e-10, atol=1e-15)


def test_official_normalization_refuses_dynamic_micro_batches():
    seqs = make_sequences(**SEQS)
    model_output, data = nested_batch(seqs, engine_log_probs(seqs))
    tu.assign_non_tensor(data, global_batch_size=4, micro_batch_size_per_gpu=2, use_dynamic_bsz=True)
    with pytest.raises(ValueError, match="set data.use_dynamic_bsz=False"):
        dft_loss(LossConfig("dft", normalization="official"), model_output, data)


@pytest.mark.parametrize("normalization", ["token", "official"])
def test_a_batch_without_loss_tokens_is_an_error_not_a_nan(normalization):
    seqs = make_sequences([5, 6], [5, 6], vocab=11)  # prompts only
    model_output, data = nested_batch(seqs, engine_log_probs(seqs))
    tu.assign_non_tensor(data, global_batch_size=2, micro_batch_size_per_gpu=2, use_dynamic_bsz=False)
    with pytest.raises(ValueError, match="this global batch has no loss token"):
        dft_loss(LossConfig("dft", normalization=normalization), model_output, data)


def test_every_registered_loss_declares_its_needs_and_the_trainer_config_lists_its_options():
    from conftest import compose_config

    from dft.train.losses.registry import losses
    from dft.train.sft_datasets import DATASETS

    for name, spec in losses().items():
        assert ("chat", spec.data) in DATASETS and spec.unit in ("token", "pair"), name
    # every LossConfig field is a key of the trainer config's loss section, with the same default
    section = compose_config().loss
    defaults = {k: v.default for k, v in LossConfig.__dataclass_fields__.items()}
    assert dict(section) == {k: list(v) if isinstance(v, tuple) else v for k, v in defaults.items()}


def test_a_loss_added_as_one_module_is_listed_checked_and_trained_on(tmp_path):
    """Adding a loss touches only its module: a copy of the package with one new file in dft/train/losses/ lists it in
    --help (without importing torch or verl), accepts it, and refuses a typo of it naming it."""
    import shutil

    from conftest import REPO

    shutil.copytree(REPO / "dft", tmp_path / "dft", ignore=shutil.ignore_patterns("__pycache__"))
    (tmp_path / "configs").symlink_to(REPO / "configs")
    (tmp_path / "dft" / "train" / "losses" / "half_sft.py").write_text(
        "from dft.train.losses.registry import register_loss\n\n\n"
        "@register_loss('half_sft')\n"
        "def half_sft_loss(config, model_output, data, dp_group=None):\n"
        '    """Half of cross-entropy (a loss made for this test)."""\n'
        "    from dft.train.losses.likelihood import sft_loss\n\n"
        "    loss, metrics = sft_loss(config, model_output, data)\n"
        "    return loss / 2, metrics\n"
    )
    code = (
        "import sys\n"
        "from dft.train.losses.registry import loss_errors, losses\n"
        "print(sorted(losses()), sorted({'torch', 'verl'} & set(sys.modules)))\n"
        "print(loss_errors({'loss': {'name': 'half_sft'}}), loss_errors({'loss': {'name': 'half_stf'}}))\n"
    )
    env = dict(os.environ, PYTHONPATH=str(tmp_path))
    result = subprocess.run([sys.executable, "-c", code], cwd=tmp_path, env=env, capture_output=True, text=True)
    names, errors = result.stdout.splitlines()
    assert "'half_sft'" in names and names.endswith("[]"), result.stderr[-2000:]
    assert errors.startswith("[] [") and "did you mean half_sft?" in errors
    help_text = subprocess.run([sys.executable, "-m", "dft", "train", "--help"], cwd=tmp_path, env=env,
                               capture_output=True, text=True).stdout  # fmt: skip
    assert "half_sft   Half of cross-entropy (a loss made for this test)." in help_text
