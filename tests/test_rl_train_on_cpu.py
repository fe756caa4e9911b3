"""GRPO and PPO stepping through verl's own ``main_ppo`` on a CPU, launched as the README says
(``ALGO=grpo|ppo bash scripts/train_rl.sh rl_setting=tiny-cpu``): 2 training processes (FSDP2 over gloo), the
Hugging Face rollout (dft/hf_rollout.py) and the math-verify reward (dft/reward.py) on the tiny Base model's own
responses. Each run pays a Ray and verl start-up; the module runs three: GRPO for 2 steps, PPO for 2 steps, and
the GRPO run resumed from its step-2 checkpoint for a third step."""

import json
import math
import os
import shutil
import subprocess

import pytest
from conftest import REPO, read_log
from tiny_base import TRAINED

from dft.data import rl
from dft.eval.grading import grade
from dft.tiny import write_sft_parquet

pytest.importorskip("transfer_queue", reason="verl's main_ppo imports TransferQueue: pip install -e '.[test]'")

# the actor learns fast enough that a rollout left with step-1 weights would be far off the actor at step 2
LR = "actor_rollout_ref.actor.optim.lr=2e-3"
# the rollout's log-probs against the actor's own recomputation: float32 on both sides
AGREE = 1e-4


@pytest.fixture(scope="module")
def rl_data(tmp_path_factory, tiny_base):
    """The tiny Base (right on ~10% of samples) and RL prompts it was not trained on, prepared by dft.data.rl."""
    assets, base = tiny_base
    root = tmp_path_factory.mktemp("rl")
    write_sft_parquet(assets.train_records[TRAINED:], root / "problems.parquet")
    rl.main(["--out", str(root / "data"), "--input", str(root / "problems.parquet"), "--val-size", "16"])
    return root, base


def train_rl(algo, base, root, run_dir, steps, *overrides):
    """``scripts/train_rl.sh`` on the CPU setting for ``steps`` steps, a checkpoint and a rollout dump every step."""
    env = dict(os.environ, ALGO=algo, MODEL=str(base), DATA_DIR=str(root / "data"), PYTHONUNBUFFERED="1",
               VERL_FILE_LOGGER_PATH=str(run_dir / "metrics.jsonl"), RAY_ADDRESS="")  # a Ray of its own  # fmt: skip
    args = ["rl_setting=tiny-cpu", f"trainer.total_training_steps={steps}", "trainer.save_freq=1",
            "trainer.logger=[console,file]", f"trainer.default_local_dir={run_dir / 'ckpt'}",
            f"trainer.rollout_data_dir={run_dir / 'rollouts'}", *overrides]  # fmt: skip
    run_dir.mkdir(parents=True, exist_ok=True)
    with open(run_dir / "train.log", "a") as log:
        result = subprocess.run(["bash", str(REPO / "scripts" / "train_rl.sh"), *args], cwd=run_dir, env=env,
                                stdout=log, stderr=subprocess.STDOUT, timeout=1200)  # fmt: skip
    assert result.returncode == 0, (run_dir / "train.log").read_text()[-6000:]
    return read_log(run_dir / "metrics.jsonl")


def rollouts(run_dir, step):
    return [json.loads(line) for line in (run_dir / "rollouts" / f"{step}.jsonl").read_text().splitlines()]


@pytest.fixture(scope="module")
def grpo(rl_data):
    root, base = rl_data
    run_dir = root / "grpo"
    return run_dir, train_rl("grpo", base, root, run_dir, 2, LR)


@pytest.fixture(scope="module")
def ppo(rl_data):
    root, base = rl_data
    run_dir = root / "ppo"
    return run_dir, train_rl("ppo", base, root, run_dir, 2, LR, "critic.optim.lr=2e-3")


def check_rewards_are_math_verify_of_the_responses(run_dir, step, group):
    rows = rollouts(run_dir, step)
    assert len(rows) == 16 * group  # train_batch_size prompts x responses per prompt
    for row in rows:
        assert row["score"] == float(grade(row["output"], row["gts"]).correct), row
    return [row["score"] for row in rows]


def check_rollout_follows_actor(metrics):
    """verl compares the rollout's log-probs with the actor's recomputation of the same tokens."""
    assert metrics["training/rollout_probs_diff_valid"] == 1
    assert metrics["training/rollout_probs_diff_max"] < AGREE


def test_grpo_steps_rewarded_by_math_verify_and_the_rollout_gets_the_updated_weights(grpo):
    run_dir, log = grpo
    assert sorted(log) == [1, 2]
    scores = [check_rewards_are_math_verify_of_the_responses(run_dir, step, group=4) for step in (1, 2)]
    assert 0 < sum(map(sum, scores)) < len(scores[0]) * 2  # some right, some wrong: advantages are not all 0
    for step in (1, 2):
        check_rollout_follows_actor(log[step])
        for key in ("actor/kl_loss", "actor/pg_loss", "critic/advantages/mean", "critic/advantages/max"):
            assert math.isfinite(log[step][key]), key
    assert log[1]["actor/grad_norm"] > 0
    # at step 2 the actor is far from where it started (its KL to the reference, 0 at step 1, is > 1e-3: log-probs
    # moved by ~0.05), yet the rollout's log-probs still agree with it to < 1e-4: the new weights reached the rollout
    assert log[1]["actor/kl_loss"] == pytest.approx(0, abs=1e-9) and log[2]["actor/kl_loss"] > 1e-3
    assert (run_dir / "ckpt" / "global_step_2" / "actor").is_dir()


def test_ppo_steps_with_a_critic_and_gae(ppo):
    run_dir, log = ppo
    assert sorted(log) == [1, 2]
    for step in (1, 2):
        check_rewards_are_math_verify_of_the_responses(run_dir, step, group=1)
        check_rollout_follows_actor(log[step])
        for key in ("critic/vf_loss", "critic/values/mean", "critic/advantages/mean", "critic/returns/mean"):
            assert math.isfinite(log[step][key]), key
    assert log[1]["actor/grad_norm"] > 0 and log[1]["critic/grad_norm"] > 0
    assert (run_dir / "ckpt" / "global_step_2" / "critic").is_dir()


def test_grpo_resumes_from_its_last_checkpoint_with_weights_and_data_position(grpo, rl_data):
    root, base = rl_data
    first, _ = grpo
    run_dir = root / "grpo_resumed"
    shutil.copytree(first, run_dir)
    log = train_rl("grpo", base, root, run_dir, 3, LR, f"trainer.default_local_dir={run_dir / 'ckpt'}")
    assert sorted(log) == [1, 2, 3]  # the first run's lines, then step 3 only
    # the rollout starts from the checkpoint's weights (KL to the reference already > 0 at the resumed step)
    check_rollout_follows_actor(log[3])
    assert log[3]["actor/kl_loss"] > 1e-3
    # the dataloader resumed too: step 3 draws prompts that steps 1 and 2 did not
    seen = {row["input"] for step in (1, 2) for row in rollouts(run_dir, step)}
    assert not seen & {row["input"] for row in rollouts(run_dir, 3)}
    assert (run_dir / "ckpt" / "global_step_3" / "actor").is_dir()
