"""``model.use_fused_kernels=True`` through ``dft train``: every loss takes the same first steps as on the unfused
path (loss, gradient norm, and the loss after the first update), in both layouts; the combinations verl 0.9.1
cannot train are refused before any model loads, and the refusal stays true of verl."""

import math
import subprocess
import sys

import numpy as np
import pandas as pd
import pytest
import torch
from conftest import FP32, REPO, check_ok, compose_config, read_log, run_module, tiny_overrides

from dft.models.presets import paper_presets
from dft.train.columns import PAIR_SIDES, ref_column
from dft.train.sft_datasets import target_positions

PAPER_CARDS = [p.card for p in paper_presets()]

LOGGED = ("train/loss", "train/nll", "train/grad_norm")


def target_counts(tiny, data, pairs: bool) -> list:
    """Target tokens per row (per side for pairs) as verl's dataset encodes the rows with the tiny tokenizer."""
    from transformers import AutoTokenizer
    from verl.utils.dataset.multiturn_sft_dataset import MultiTurnSFTDataset

    from dft.train.sft_datasets import PreferencePairDataset

    cfg = compose_config(["preset=tiny-cpu", f"model.path={tiny.model_dir}"])
    tokenizer = AutoTokenizer.from_pretrained(tiny.model_dir)
    if pairs:
        dataset = PreferencePairDataset(str(data), tokenizer, cfg.data, require_reference=False)
        return [{side: int(target_positions(dataset.encode(i, side)["loss_mask"]).sum()) for side in PAIR_SIDES}
                for i in range(len(dataset))]  # fmt: skip
    dataset = MultiTurnSFTDataset(str(data), tokenizer, cfg.data)
    return [int(target_positions(dataset[i]["loss_mask"]).sum()) for i in range(len(dataset))]


def random_reference(count: int, rng) -> np.ndarray:
    """Stand-in reference log-probs: the comparison only needs both paths to read the same ones."""
    return rng.uniform(-9.0, -1.0, size=count)


@pytest.fixture(scope="module")
def reference_data(tiny, tmp_path_factory):
    """``iw_sft`` rows and ``dpo`` pairs (each solution chosen over the next problem's) with reference log-probs."""
    root, rng = tmp_path_factory.mktemp("fused_data"), np.random.default_rng(0)
    frame = pd.read_parquet(tiny.train_parquet)
    counts = target_counts(tiny, tiny.train_parquet, pairs=False)
    frame[ref_column()] = [random_reference(n, rng) for n in counts]
    frame.to_parquet(root / "iw.parquet", index=False)
    messages = [list(m) for m in pd.read_parquet(tiny.train_parquet)["messages"]]
    rows = [{"prompt": [dict(m[0])], "chosen": [dict(m[1])], "rejected": [dict(messages[(i + 1) % len(messages)][1])]}
            for i, m in enumerate(messages)]  # fmt: skip
    pairs = pd.DataFrame(rows)
    pairs.to_parquet(root / "pairs.parquet", index=False)
    counts = target_counts(tiny, root / "pairs.parquet", pairs=True)
    for side in PAIR_SIDES:
        pairs[ref_column(side)] = [random_reference(c[side], rng) for c in counts]
    pairs.to_parquet(root / "pairs.parquet", index=False)
    return {"iw_sft": root / "iw.parquet", "dpo": root / "pairs.parquet"}


# loss overrides, remove-padding, processes: each loss once, each layout twice, DFT data-parallel
CASES = {
    "dft, remove-padding, 2 processes": (["loss.name=dft"], True, 2),
    "sft, padded, 1 process": (["loss.name=sft"], False, None),
    "iw_sft token-level, padded, 1 process": (["loss.name=iw_sft", "loss.iw_level=token"], False, None),
    "dpo, remove-padding, 1 process": (["loss.name=dpo", "data.train_batch_size=12"], True, None),
}


def two_steps(tiny, run_dir, loss_args, remove_padding, nproc, fused, data=None):
    """Steps 1 and 2 of ``dft train`` in fp32; returns (log, stdout)."""
    args = tiny_overrides(tiny, run_dir, steps=2) + ["data.val_files=null", *FP32, *loss_args]
    args += [f"model.use_remove_padding={remove_padding}", f"model.use_fused_kernels={fused}"]
    if data is not None:
        args.append(f"data.train_files={data}")
    result = run_module("train", args, run_dir / "log.jsonl", nproc=nproc)
    check_ok(result)
    return read_log(run_dir / "log.jsonl"), result.stdout


@pytest.mark.parametrize("case", list(CASES))
def test_fused_kernels_take_the_same_steps_as_the_unfused_path(tiny, reference_data, tmp_path, case):
    loss_args, remove_padding, nproc = CASES[case]
    data = reference_data.get(loss_args[0].split("=")[1])
    runs = {
        fused: two_steps(tiny, tmp_path / f"fused{fused}", loss_args, remove_padding, nproc, fused, data)
        for fused in (False, True)
    }
    (unfused, _), (fused, stdout) = runs[False], runs[True]
    assert "log-prob path: fused: verl's FusedLinearForPPO (torch backend)" in stdout
    assert "log-prob path: unfused" in runs[False][1]
    for key in LOGGED:
        assert math.isclose(fused[1][key], unfused[1][key], rel_tol=1e-5), (case, key, fused[1], unfused[1])
    # the same update: the loss and gradient after the first optimizer step agree too
    for key in ("train/loss", "train/grad_norm"):
        assert math.isclose(fused[2][key], unfused[2][key], rel_tol=1e-5), (case, key, fused[2], unfused[2])
    assert fused[2]["train/loss"] != fused[1]["train/loss"]  # the step changed the model


def untied_copy(tiny_model_dir, out_dir):
    """The tiny model with its LM head untied from the embedding (same values), as Qwen2.5-Math-7B has."""
    from transformers import AutoModelForCausalLM, AutoTokenizer

    model = AutoModelForCausalLM.from_pretrained(tiny_model_dir, dtype=torch.float32)
    model.config.tie_word_embeddings = False
    model.lm_head.weight = torch.nn.Parameter(model.model.embed_tokens.weight.detach().clone())
    model.save_pretrained(out_dir)
    AutoTokenizer.from_pretrained(tiny_model_dir).save_pretrained(out_dir)
    return out_dir


@pytest.fixture(scope="module")
def untied(tiny, tmp_path_factory):
    return untied_copy(tiny.model_dir, tmp_path_factory.mktemp("untied") / "model")


def prepare(tiny, model_dir, *overrides):
    from dft.train.config import prepare_config

    base = ["preset=tiny-cpu", f"model.path={model_dir}", f"data.train_files={tiny.train_parquet}"]
    return prepare_config(compose_config([*base, "data.val_files=null", *overrides]))


def test_untied_lm_head_with_fused_kernels_is_refused_naming_where_verl_breaks(tiny, untied):
    with pytest.raises(ValueError) as error:
        prepare(tiny, untied, "model.use_fused_kernels=True")
    message = str(error.value)
    where = ("_select_fsdp2_wrap_targets", "dense_common.py", "mixed torch.Tensor and DTensor")
    for part in (str(untied), "untied", *where, "model.use_fused_kernels=False"):
        assert part in message, part
    prepare(tiny, untied)  # unfused, the same model trains
    prepare(tiny, tiny.model_dir, "model.use_fused_kernels=True")  # fused, a tied head trains


@pytest.mark.parametrize(
    "override, message",
    [
        ("model.fused_kernel_options.impl_backend=triton", "impl_backend=triton needs a CUDA GPU"),
        ("model.fused_kernel_options.impl_backend=null", "impl_backend in ['torch', 'triton', 'liger'], got None"),
    ],
)
def test_fused_backends_that_cannot_run_here_are_refused(tiny, override, message):
    with pytest.raises(ValueError, match=message.replace("[", r"\[").replace("]", r"\]")):
        prepare(tiny, tiny.model_dir, "model.use_fused_kernels=True", override)


FSDP2_FORWARD = """
import sys, torch, torch.distributed as dist
import dft.train.cpu_platform
from transformers import AutoModelForCausalLM
from verl.models.transformers.monkey_patch import apply_monkey_patch
from verl.utils.fsdp_utils import apply_fsdp2
from torch.distributed.elastic.utils.distributed import get_free_port
dist.init_process_group("gloo", rank=0, world_size=1, init_method=f"tcp://127.0.0.1:{get_free_port()}")
for name, path in zip(sys.argv[1::2], sys.argv[2::2]):
    model = AutoModelForCausalLM.from_pretrained(path, dtype=torch.float32, attn_implementation="sdpa")
    apply_monkey_patch(model, use_remove_padding=False, use_fused_kernels=True, fused_kernels_backend="torch")
    apply_fsdp2(model, {}, {})
    ids = torch.randint(0, model.config.vocab_size, (1, 16))
    try:
        print(name, "log_probs", tuple(model(input_ids=ids, return_dict=True).log_probs.shape))
    except RuntimeError as err:
        print(name, "error", err)
"""


def test_the_refusal_matches_verl_untied_heads_fail_under_fsdp2_and_tied_heads_run(tiny, untied):
    """verl's own pieces, no dft: its fused forward on an FSDP2-wrapped model. If a verl upgrade makes the untied
    case run, this test fails and the refusal in dft/train/logprob_path.py can go."""
    args = ["tied", str(tiny.model_dir), "untied", str(untied)]
    result = subprocess.run([sys.executable, "-c", FSDP2_FORWARD, *args], cwd=REPO, capture_output=True, text=True,
                            timeout=300)  # fmt: skip
    check_ok(result)
    assert "tied log_probs (1, 16)" in result.stdout
    assert "untied error aten.mm.default got mixed torch.Tensor and DTensor" in result.stdout


@pytest.mark.parametrize("card", PAPER_CARDS)
def test_presets_turn_fused_kernels_on_exactly_where_verl_can_run_them(card):
    from dft.models.cards import load_card
    from dft.train.logprob_path import check_fused_kernels, lm_head_is_tied

    card_dir = load_card(card).path
    cfg = compose_config([f"preset={card}", f"model.path={card_dir}"])
    assert cfg.model.use_fused_kernels == lm_head_is_tied(cfg)
    check_fused_kernels(cfg)  # the preset itself is never refused
