"""setting=paper on any cluster shape, checked on the composed configs: the kernels decided in
configs/dft_trainer.yaml for every preset and setting, the Ray trainer kept from regrouping micro-batches, and the
README's paper-mode section saying what the configs compose to."""

import re
import subprocess
import sys

import pytest
from conftest import REPO, compose_config

from dft.models.presets import paper_presets

PAPER_CARDS = [p.card for p in paper_presets()]
README = (REPO / "README.md").read_text()
# the one published official launch (yongliang-wu/DFT verl/train_dft.sh: model.partial_pretrain)
OFFICIAL_LAUNCH_MODEL = "Qwen/Qwen2.5-Math-1.5B"


def composed(card, setting):
    from dft.models.cards import load_card

    return compose_config([f"preset={card}", f"setting={setting}", f"model.path={load_card(card).path}"])


def readme_row(table_key: str) -> list[str]:
    """The cells of the README table row whose first cell is ``table_key``."""
    line = next(line for line in README.splitlines() if line.startswith(f"| {table_key} |"))
    return [cell.strip() for cell in line.strip("|").split(" | ")]


def kernels_said(cell: str, tied: bool) -> dict:
    """The model.* kernel switches a README kernels cell states, for a model whose LM head is (not) tied."""
    fused = re.search(r"fused kernels (off|per preset)", cell).group(1)
    return {
        "use_liger": re.search(r"Liger (on|off)", cell).group(1) == "on",
        "use_fused_kernels": tied if fused == "per preset" else False,
        "use_remove_padding": re.search(r"remove-padding (on|off)", cell).group(1) == "on",
    }


@pytest.mark.parametrize("card", PAPER_CARDS)
def test_every_preset_composes_the_kernels_the_readme_states(card):
    from dft.train.logprob_path import check_fused_kernels, lm_head_is_tied

    _, paper_cell, corrected_cell = readme_row("kernels")
    for setting, cell in (("paper", paper_cell), ("corrected", corrected_cell)):
        cfg = composed(card, setting)
        said = kernels_said(cell, lm_head_is_tied(cfg))
        assert {key: cfg.model[key] for key in said} == said, (card, setting)
        assert not (cfg.model.use_liger and cfg.model.use_fused_kernels)  # the combination nobody checked
        check_fused_kernels(cfg)  # never a combination dft.train refuses


def test_paper_mode_keeps_the_official_micro_batches_on_ray_and_torchrun():
    from dft.cli.validate import validate

    paper = composed("qwen2.5-math-1.5b", "paper")
    assert paper.trainer.balance_batch is False and paper.loss.official_micro_batches == 8
    # verl's default balances batches; the Ray entry point refuses it under the official normalisation
    official = compose_config(["preset=qwen2.5-math-1.5b", "loss.normalization=official", "data.use_dynamic_bsz=False"])
    assert official.trainer.balance_batch is True
    balance = [e for e in validate("train_ray", official) if e.startswith("trainer.balance_batch")]
    assert len(balance) == 1 and "set trainer.balance_batch=False (setting=paper does)" in balance[0]
    assert not [e for e in validate("train", official) if "balance_batch" in e]  # torchrun never balances
    assert not [e for e in validate("train_ray", paper) if "balance_batch" in e]


def test_the_ray_refusal_is_one_error_line_exit_2(tiny):
    args = [f"model.path={tiny.model_dir}", f"data.train_files={tiny.train_parquet}", "preset=tiny-cpu",
            "loss.normalization=official", "data.use_dynamic_bsz=False"]  # fmt: skip
    result = subprocess.run([sys.executable, "-m", "dft", "train_ray", *args], cwd=REPO, capture_output=True, text=True,
                            timeout=120)  # fmt: skip
    assert result.returncode == 2, result.stderr[-2000:]
    assert [line for line in result.stderr.splitlines() if line.startswith("error:")] == [
        line for line in result.stderr.splitlines() if line.strip()
    ]
    assert "error: trainer.balance_batch=True" in result.stderr and "Traceback" not in result.stderr


def test_readme_paper_mode_names_each_model_its_launch_and_prompt():
    section = README.split("### Paper mode")[1].split("\n### ")[0]
    rows = [line for line in section.splitlines() if line.startswith("| ") and not line.startswith("| model")]
    for card in PAPER_CARDS:
        cfg = compose_config([f"preset={card}", "setting=paper"])  # the preset's hub model
        row = next(r for r in rows if cfg.paper.name in r.split(" | ")[0])
        assert ("the official launch itself" in row) == (cfg.model.path == OFFICIAL_LAUNCH_MODEL), card
        assert ("never launched" in row) == (cfg.model.path != OFFICIAL_LAUNCH_MODEL), card
        if card.startswith(("llama", "deepseek")):  # prompts of ours: the row names the evaluation prompt used
            assert f"`{cfg.paper.eval_prompt}`" in row, card


def test_readme_gradient_scales_are_the_official_arithmetic():
    cfg = composed("qwen2.5-math-1.5b", "paper")
    batch, micro = cfg.data.train_batch_size, cfg.data.micro_batch_size_per_gpu
    section = " ".join(README.split("### Paper mode")[1].split("\n### ")[0].split())
    before = re.search(r"gave (\d+)x on 2 GPUs, (\d+)x on 4, (\d+)x on 8 and (\d+)x on 16", section).groups()
    assert [int(x) for x in before] == [batch // (gpus * micro) for gpus in (2, 4, 8, 16)]
    assert re.search(r"(\d+)x on one GPU", section).group(1) == str(batch // micro)
    assert int(re.search(r"now (\d+)x on each", section).group(1)) == cfg.loss.official_micro_batches
    assert cfg.loss.official_micro_batches == batch // (8 * micro)  # the official run: 8 GPUs
    assert readme_row("`loss.official_micro_batches`")[1] == f"`{cfg.loss.official_micro_batches}`"
    assert "pull/3332" in README and "DFT/issues/27" in README and "DFT/issues/26" in README
