"""``python -m dft quickstart table3`` at a reduced size, and the PPO/GRPO runs it makes through verl's ``main_ppo``.

One run of the Table 3 quickstart (module fixture) trains every row through the real pipeline on the tiny Base of
tests/tiny_base.py: SFT, iw-SFT and DFT (``dft train``, ``dft.train.ref_scoring``), rejection sampling
(``dft.rl.rft``), RFT/iw-SFT/DFT on the accepted samples and DPO on the pairs, then GRPO and PPO for 2 steps
each through ``scripts/train_rl.sh rl_setting=tiny-cpu`` (2 training processes, FSDP2 over gloo, the Hugging Face
rollout of dft/rl/hf_rollout.py, the math-verify reward of dft/rl/reward.py on the Base's own responses). The RL tests
read those runs' metrics and rollouts; one more ``main_ppo`` run resumes GRPO from its step-2 checkpoint.

The quickstart's ``python -m``/torchrun stages are forked from the test process (tests/forked_quickstart.py; the
Table 1 quickstart test runs its stages through the real launchers); ``main_ppo`` runs as a user runs it.
"""

import json
import math
import os
import re
import shutil
import subprocess
import sys

import pytest
from conftest import REPO, read_log
from forked import run_forked

from dft.cli.quickstart.table1 import slug
from dft.cli.quickstart.table3 import RESPONSES, ROWS, train_online
from dft.eval.grading import grade

pytest.importorskip("transfer_queue", reason="verl's main_ppo imports TransferQueue: pip install -e '.[test]'")

N_TEST = 32
RL_LR = 2e-3  # fast enough that a rollout left with step-1 weights would be far off the actor at step 2
AGREE = 1e-4  # the rollout's log-probs against the actor's recomputation, float32 on both sides
ARGS = ["--n-train", "1024", "--steps", "4", "--offline-steps", "4", "--rft-problems", "64", "--rl-steps", "2",
        "--rl-lr", str(RL_LR), "--n-test", str(N_TEST), "--max-new-tokens", "48"]  # fmt: skip


def run_table3(out, base):
    """The quickstart's stages through python/torchrun forked from this process (tests/forked_quickstart.py)."""
    args = ["table3", "--out", str(out), "--base", str(base), *ARGS]
    if os.environ.get("DFT_TESTS_SUBPROCESS") == "1":
        cmd = [sys.executable, "-m", "dft", "quickstart", *args]
        result = subprocess.run(cmd, cwd=REPO, capture_output=True, text=True, timeout=3600)
    else:
        result = run_forked("forked_quickstart", args, dict(os.environ), REPO, None, timeout=3600)
    assert result.returncode == 0, result.stdout[-4000:] + result.stderr[-6000:]
    return result.stdout


@pytest.fixture(scope="module")
def table3(tiny_base, tmp_path_factory):
    _, base = tiny_base
    out = tmp_path_factory.mktemp("table3")
    return out, base, run_table3(out, base)


def read_jsonl(path):
    return [json.loads(line) for line in path.read_text().splitlines()]


# ---------------------------------------------------------------------------------------------------------------
# The table
# ---------------------------------------------------------------------------------------------------------------


def test_all_ten_rows_are_trained_evaluated_printed_and_written(table3):
    out, _, stdout = table3
    printed = {m.group(1): float(m.group(2)) for m in re.finditer(r"^\| ([^|*]+?) \| \**([\d.]+)\**", stdout, re.M)}
    assert list(printed) == list(ROWS)
    assert "the pipeline works" in stdout
    summary = json.loads((out / "results_table3.json").read_text())
    assert list(summary["results"]) == list(ROWS) and summary["commit"] and summary["note"]
    for row, result in summary["results"].items():
        lines = read_jsonl(out / f"eval_{slug(row)}.jsonl")
        assert len(lines) == result["problems"] == N_TEST
        # each verdict re-derived from the saved response agrees, and the printed accuracy is their mean
        assert all(line["correct"] == grade(line["response"], line["gold"]).correct for line in lines)
        assert printed[row] == round(100 * sum(line["correct"] for line in lines) / N_TEST, 1)
    rft = summary["rft"]
    assert rft["problems"] == 64 and rft["samples"] == 256 and 0 < rft["accepted"] < 256 and rft["dpo_pairs"] > 0
    # every row is its own model (no row silently evaluates another's weights)
    assert len(set(summary["models"].values())) == len(ROWS)


def test_a_second_run_reuses_every_stage(table3):
    out, base, stdout = table3
    logs = {p: p.stat().st_mtime for p in out.rglob("train.log")}
    assert len(logs) >= 9  # SFT, DFT, iw-SFT, RFT x3, DPO, PPO, GRPO
    again = run_table3(out, base)
    assert {p: p.stat().st_mtime for p in logs} == logs
    assert again.split("\n\n| Model")[1].split("\n\n")[0] == stdout.split("\n\n| Model")[1].split("\n\n")[0]


# ---------------------------------------------------------------------------------------------------------------
# PPO and GRPO through verl's main_ppo
# ---------------------------------------------------------------------------------------------------------------


def rollouts(run_dir, step):
    return read_jsonl(run_dir / "rollouts" / f"{step}.jsonl")


def check_rewards_are_math_verify_of_the_responses(run_dir, step, responses):
    rows = rollouts(run_dir, step)
    assert len(rows) == responses
    for row in rows:
        # the reward is the evaluation's verdict on the last \boxed{} answer only (dft/rl/reward.py): an answer the
        # evaluation reads some other way (the last number) earns nothing
        verdict = grade(row["output"], row["gts"])
        assert row["score"] == float(verdict.correct and verdict.rule == "boxed"), (row, verdict)
    return [row["score"] for row in rows]


def check_rollout_follows_actor(metrics):
    """verl compares the rollout's log-probs with the actor's recomputation of the same tokens."""
    assert metrics["training/rollout_probs_diff_valid"] == 1
    assert metrics["training/rollout_probs_diff_max"] < AGREE


def test_grpo_steps_rewarded_by_math_verify_and_the_rollout_gets_the_updated_weights(table3):
    run_dir = table3[0] / "table3" / "grpo"
    log = read_log(run_dir / "metrics.jsonl")
    assert sorted(log) == [1, 2]
    scores = [check_rewards_are_math_verify_of_the_responses(run_dir, step, 16 * RESPONSES["grpo"]) for step in (1, 2)]
    assert 0 < sum(scores[0]) < len(scores[0])  # some right, some wrong: not every advantage is 0
    for step in (1, 2):
        check_rollout_follows_actor(log[step])
        for key in ("actor/kl_loss", "actor/pg_loss", "critic/advantages/mean", "critic/advantages/max"):
            assert math.isfinite(log[step][key]), key
    assert log[1]["actor/grad_norm"] > 0
    # at step 2 the actor is far from where it started (its KL to the reference, 0 at step 1, is > 1e-3: log-probs
    # moved by ~0.05), yet the rollout's log-probs still agree with it to < 1e-4: the new weights reached the rollout
    assert log[1]["actor/kl_loss"] == pytest.approx(0, abs=1e-9) and log[2]["actor/kl_loss"] > 1e-3


def test_ppo_steps_with_a_critic_and_gae(table3):
    run_dir = table3[0] / "table3" / "ppo"
    log = read_log(run_dir / "metrics.jsonl")
    assert sorted(log) == [1, 2]
    for step in (1, 2):
        check_rewards_are_math_verify_of_the_responses(run_dir, step, 16 * RESPONSES["ppo"])
        check_rollout_follows_actor(log[step])
        for key in ("critic/vf_loss", "critic/values/mean", "critic/advantages/mean", "critic/returns/mean"):
            assert math.isfinite(log[step][key]), key
    assert log[1]["actor/grad_norm"] > 0 and log[1]["critic/grad_norm"] > 0
    assert (run_dir / "ckpt" / "global_step_2" / "critic").is_dir()


def test_grpo_resumes_from_its_last_checkpoint_with_weights_and_data_position(table3, tmp_path):
    out, base, _ = table3
    run_dir = tmp_path / "grpo"
    shutil.copytree(out / "table3" / "grpo", run_dir)
    train_online("grpo", base, out / "table3" / "rl", run_dir, 3, RL_LR)
    log = read_log(run_dir / "metrics.jsonl")  # verl's file logger starts the file anew
    assert sorted(log) == [3]  # steps 1 and 2 are not run again
    assert f"Resuming from {run_dir / 'ckpt' / 'global_step_2'}" in (run_dir / "train.log").read_text()
    # the rollout starts from the checkpoint's weights (the KL to the reference is already > 0 at the resumed step)
    check_rollout_follows_actor(log[3])
    assert log[3]["actor/kl_loss"] > 1e-3
    # the dataloader resumed too: step 3 draws prompts that steps 1 and 2 did not
    seen = {row["input"] for step in (1, 2) for row in rollouts(run_dir, step)}
    assert not seen & {row["input"] for row in rollouts(run_dir, 3)}
