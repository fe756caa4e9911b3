"""Every config in configs/ composes and validates through verl's own config classes; bad input fails clearly."""

import os
import shlex
import subprocess
from pathlib import Path

import pytest
from conftest import REPO, compose_config, run_module
from verl.utils.config import omega_conf_to_dataclass

from dft.train.losses.registry import loss_config_from, loss_errors, losses

PRESETS = sorted(p.stem for p in (REPO / "configs" / "preset").glob("*.yaml"))
PAPER_LR = {"llama-3.1-8b": 2e-5}


def test_presets_cover_the_papers_models():
    assert set(PRESETS) >= {"qwen2.5-math-1.5b", "qwen2.5-math-7b", "llama-3.2-3b", "llama-3.1-8b", "deepseek-math-7b"}


@pytest.mark.parametrize("loss", sorted(losses()))
@pytest.mark.parametrize("preset", PRESETS)
def test_every_preset_and_loss_composes_and_validates(preset, loss):
    cfg = compose_config([f"preset={preset}", f"loss.name={loss}", "model.path=/some/model"])
    for section in ("engine", "optim", "checkpoint", "profiler"):
        omega_conf_to_dataclass(cfg[section])
    assert loss_config_from(cfg.loss).name == loss
    assert cfg.trainer.experiment_name.endswith(loss)
    if preset != "tiny-cpu":
        # the paper's recipe (sec. 4.1): AdamW, cosine with 10% warmup, batch 256, max length 2048, one epoch
        assert cfg.optim.lr == PAPER_LR.get(preset, 5e-5)
        assert (cfg.optim.optimizer, cfg.optim.lr_scheduler_type, cfg.optim.lr_warmup_steps_ratio) == (
            "AdamW",
            "cosine",
            0.1,
        )
        assert (cfg.data.train_batch_size, cfg.data.max_length, cfg.trainer.total_epochs) == (256, 2048, 1)


def test_command_line_overrides_reach_verl_fields():
    cfg = compose_config(["preset=qwen2.5-math-7b", "optim.lr=1e-5", "data.train_batch_size=64", "loss.alpha=0.5"])
    assert (cfg.optim.lr, cfg.data.train_batch_size, cfg.loss.alpha) == (1e-5, 64, 0.5)
    assert cfg.model.path == "Qwen/Qwen2.5-Math-7B"


def test_wrong_loss_name_fails_before_training_with_the_valid_names(tiny, tmp_path):
    result = run_module(
        "train",
        [f"model.path={tiny.model_dir}", f"data.train_files={tiny.train_parquet}", "loss.name=dtf"],
        tmp_path / "log.jsonl",
    )
    assert result.returncode != 0
    assert "error: loss.name='dtf' is not a known loss (did you mean dft?)" in result.stderr
    assert "Traceback" not in result.stderr


def test_missing_data_file_fails_naming_the_field_and_file(tiny, tmp_path):
    missing = tmp_path / "nope" / "train.parquet"
    result = run_module(
        "train", [f"model.path={tiny.model_dir}", f"data.train_files={missing}"], tmp_path / "log.jsonl"
    )
    assert result.returncode != 0
    assert f"data.train_files: no such file: {missing}" in result.stderr


def dry_run(script, args, **env):
    result = subprocess.run(
        ["bash", str(REPO / "scripts" / script), *args],
        capture_output=True,
        text=True,
        env=dict(os.environ, DRY_RUN="1", **env),
        check=True,
    )
    return shlex.split(result.stdout)


def test_single_node_script_runs_dft_train_under_torchrun_and_passes_overrides_through():
    cmd = dry_run("train.sh", ["preset=qwen2.5-math-7b", "optim.betas=[0.9,0.95]"], NPROC_PER_NODE="8")
    assert cmd[:3] == ["torchrun", "--standalone", "--nnodes=1"] and "--nproc_per_node=8" in cmd
    overrides = cmd[cmd.index("train") + 1 :]
    assert compose_config(overrides).optim.betas == [0.9, 0.95]


def test_multi_node_script_uses_a_c10d_rendezvous_on_the_master():
    cmd = dry_run("train.sh", ["loss.name=sft"], NNODES="4", NPROC_PER_NODE="8", MASTER_ADDR="node0", JOB_ID="j1")
    assert {"--nnodes=4", "--rdzv_backend=c10d", "--rdzv_endpoint=node0:29500", "--rdzv_id=j1"} <= set(cmd)


def test_ray_script_sizes_the_cluster_from_its_knobs():
    cmd = dry_run("train_ray.sh", ["preset=llama-3.1-8b"], NNODES="2", GPUS_PER_NODE="8")
    assert cmd[:4] == ["python", "-m", "dft", "train_ray"]
    cfg = compose_config(cmd[4:])
    assert (cfg.trainer.nnodes, cfg.trainer.n_gpus_per_node, cfg.optim.lr) == (2, 8, 2e-5)


def test_launch_scripts_have_no_trailing_space_after_a_backslash():
    # the original DFT launch script broke on "\\ " (the shell then ends the command early)
    scripts = list(REPO.glob("scripts/*.sh")) + list(REPO.glob("recipes/**/*.sh"))
    assert scripts
    for script in scripts:
        for number, line in enumerate(Path(script).read_text().splitlines(), 1):
            assert not line.endswith("\\ "), f"{script}:{number} has a space after its backslash"


def test_training_files_smaller_than_one_batch_fail_with_the_counts(tiny, tmp_path):
    args = [f"model.path={tiny.model_dir}", f"data.train_files={tiny.train_parquet}", "data.train_batch_size=100000"]
    result = run_module("train", args, tmp_path / "log.jsonl")
    assert result.returncode != 0
    assert "data.train_files hold 256 rows, fewer than data.train_batch_size=100000" in result.stderr


SETTINGS = sorted(p.stem for p in (REPO / "configs" / "setting").glob("*.yaml"))


@pytest.mark.parametrize("setting", SETTINGS)
def test_every_setting_composes_with_every_paper_preset(setting):
    from dft.train.sft_datasets import dataset_for

    for preset in (p for p in PRESETS if p != "tiny-cpu"):
        cfg = compose_config([f"preset={preset}", f"setting={setting}"])
        loss = loss_config_from(cfg.loss)
        assert loss_errors(cfg) == [], (preset, setting)
        dataset_for(cfg.data.format, loss.spec.data)
        if setting != "dpo":  # the preset's learning rate survives (dpo sets the paper's offline 1e-6)
            assert cfg.optim.lr == PAPER_LR.get(preset, 5e-5)


def test_setting_paper_sets_what_the_official_launch_sets():
    cfg = compose_config(["preset=qwen2.5-math-1.5b", "setting=paper"])
    official = {
        "loss.normalization": "official",
        "data.format": "official",
        "data.micro_batch_size_per_gpu": 4,
        "data.use_dynamic_bsz": False,
        "data.train_batch_size": 256,
        "data.max_length": 2048,
        "data.truncation": "right",
        "engine.model_dtype": "bf16",
        "model.use_liger": True,
        "model.use_remove_padding": True,
        "optim.lr": 5e-5,
        "optim.betas": [0.9, 0.95],
        "optim.weight_decay": 0.01,
        "optim.clip_grad": 1.0,
        "optim.lr_scheduler_type": "cosine",
        "optim.lr_warmup_steps_ratio": 0.1,
        "trainer.total_epochs": 1,
    }
    from omegaconf import OmegaConf

    assert {key: OmegaConf.select(cfg, key) for key in official} == official
    corrected = compose_config(["preset=qwen2.5-math-1.5b", "setting=corrected"])
    assert (corrected.loss.normalization, corrected.data.format, corrected.engine.model_dtype) == (
        "token",
        "chat",
        "fp32",
    )


def test_official_normalization_with_dynamic_micro_batches_is_refused_before_training(tiny, tmp_path):
    args = [f"model.path={tiny.model_dir}", f"data.train_files={tiny.train_parquet}", "loss.normalization=official"]
    result = run_module("train", args, tmp_path / "log.jsonl")
    assert result.returncode != 0
    assert "loss.normalization=official takes a mean per micro-batch" in result.stderr
    assert "data.use_dynamic_bsz=False" in result.stderr
