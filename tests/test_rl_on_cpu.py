"""The PPO and GRPO baselines through verl's own trainer, without starting it: both configs compose and pass verl's
validation (main_ppo's validate_config and the config dataclasses its workers build), on GPUs and with the CPU
setting, the reward grades real responses to real problems, the RL prep writes what verl's RLHFDataset loads and its
reward worker scores, and the launcher's command runs verl's main_ppo entry point up to the point where it would
start Ray. Training steps on a CPU (Hugging Face rollout) are in test_quickstart_table3_on_cpu.py."""

import json
import os
import shlex
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
import torch
from conftest import REPO, compose_config
from omegaconf import OmegaConf
from verl.trainer.ppo.utils import need_critic, need_reference_policy
from verl.utils.config import omega_conf_to_dataclass, validate_config

from dft.data import math as math_prep
from dft.data.prep import DataPrepError, PrepOptions, prepare
from dft.data.problems import last_boxed, read_problems
from dft.models.prompts import build_prompt, chat_cot_user
from dft.rl import rl_data as rl
from dft.rl.reward import compute_score

DATA_DIR = Path(os.environ.get("DFT_DATA_DIR") or Path(__file__).resolve().parents[1].parent / "shared" / "data")
MATH500 = DATA_DIR / "math500" / "test.jsonl"
MATH_TEST = DATA_DIR / "math_full_test" / "test.jsonl"
AMC23 = DATA_DIR / "amc23" / "test.jsonl"
needs_data = pytest.mark.skipif(not MATH500.is_file(), reason=f"shared data not found at {DATA_DIR}")

CONFIGS = {"grpo": "grpo_trainer", "ppo": "ppo_gae_trainer"}
QWEN_MATH_CONTEXT = 4096  # max_position_embeddings in Qwen/Qwen2.5-Math-1.5B's config.json
VALIDATED = "[validate_config] All configuration checks passed successfully!"


def validate_like_verl(cfg) -> dict:
    """main_ppo's own validate_config, then the config dataclasses its trainer and workers build (their
    ``__post_init__`` checks); the model section is read from disk, so it needs a local model path."""
    use_critic, use_ref = need_critic(cfg), need_reference_policy(cfg)
    validate_config(cfg, use_reference_policy=use_ref, use_critic=use_critic)
    sections = ["actor_rollout_ref.actor", "actor_rollout_ref.rollout", "actor_rollout_ref.model", "algorithm"]
    sections += ["actor_rollout_ref.rollout.checkpoint_engine"] + (["critic"] if use_critic else [])
    return {key: omega_conf_to_dataclass(OmegaConf.select(cfg, key)) for key in sections}


def read_jsonl(path):
    return [json.loads(line) for line in Path(path).read_text().splitlines() if line.strip()]


def rlhf_dataset(files, tokenizer, **data):
    """verl's own RL dataset over ``files``, configured by the GRPO config's data section plus ``data``."""
    from verl.utils.dataset.rl_dataset import RLHFDataset

    cfg = compose_config(name="grpo_trainer", overrides=[f"data.{k}={v}" for k, v in data.items()])
    return RLHFDataset([str(f) for f in files], tokenizer, cfg.data)


@pytest.fixture(scope="module")
def tokenizer(tiny):
    from transformers import AutoTokenizer

    return AutoTokenizer.from_pretrained(tiny.model_dir)


# ---------------------------------------------------------------------------------------------------------------
# Configs
# ---------------------------------------------------------------------------------------------------------------


@pytest.mark.parametrize("algo", sorted(CONFIGS))
def test_configs_hold_the_papers_online_rl_settings(algo):
    cfg = compose_config(name=CONFIGS[algo])
    actor = cfg.actor_rollout_ref.actor
    assert cfg.actor_rollout_ref.model.path == "Qwen/Qwen2.5-Math-1.5B"
    assert (actor.optim.lr, actor.optim.lr_warmup_steps_ratio, cfg.data.train_batch_size) == (1e-6, 0.1, 256)
    assert cfg.actor_rollout_ref.rollout.name == "vllm"
    assert cfg.data.max_prompt_length + cfg.data.max_response_length <= QWEN_MATH_CONTEXT
    assert cfg.reward.custom_reward_function.path == "pkg://dft.rl.reward"
    assert cfg.reward.custom_reward_function.name == "compute_score"
    if algo == "grpo":
        assert (cfg.algorithm.adv_estimator, cfg.actor_rollout_ref.rollout.n) == ("grpo", 4)
        assert actor.use_kl_loss and need_reference_policy(cfg) and not need_critic(cfg)
    else:
        assert (cfg.algorithm.adv_estimator, cfg.actor_rollout_ref.rollout.n) == ("gae", 1)
        assert need_critic(cfg) and not need_reference_policy(cfg)
        assert (cfg.critic.optim.lr, cfg.critic.model.path) == (1e-5, "Qwen/Qwen2.5-Math-1.5B")


@pytest.mark.parametrize("algo", sorted(CONFIGS))
def test_configs_pass_verls_validation_and_build_its_dataclasses(algo, tiny):
    local_model = [f"actor_rollout_ref.model.path={tiny.model_dir}"]
    built = validate_like_verl(compose_config(name=CONFIGS[algo], overrides=local_model))
    actor, rollout = built["actor_rollout_ref.actor"], built["actor_rollout_ref.rollout"]
    assert (actor.optim.lr, actor.optim.lr_warmup_steps_ratio) == (1e-6, 0.1)
    assert (rollout.prompt_length, rollout.response_length) == (1024, 3072)  # from data.* through interpolation
    assert rollout.n == (4 if algo == "grpo" else 1)
    if algo == "ppo":  # the critic starts from the policy's weights
        assert built["critic"].model.path == str(tiny.model_dir)
        assert built["critic"].optim.lr == 1e-5


def test_tiny_overrides_validate_and_verl_rejects_inconsistent_batches(tiny):
    tiny_run = [
        f"actor_rollout_ref.model.path={tiny.model_dir}",
        "trainer.n_gpus_per_node=2",
        "data.train_batch_size=4",
        "data.max_prompt_length=256",
        "data.max_response_length=64",
        "actor_rollout_ref.rollout.n=2",
        "actor_rollout_ref.actor.ppo_mini_batch_size=2",
        "actor_rollout_ref.actor.use_dynamic_bsz=false",
        "actor_rollout_ref.actor.ppo_micro_batch_size_per_gpu=1",
        "actor_rollout_ref.rollout.log_prob_micro_batch_size_per_gpu=1",
        "actor_rollout_ref.ref.log_prob_micro_batch_size_per_gpu=1",
    ]
    rollout = validate_like_verl(compose_config(name="grpo_trainer", overrides=tiny_run))["actor_rollout_ref.rollout"]
    assert (rollout.prompt_length, rollout.response_length, rollout.n) == (256, 64, 2)
    # 3 prompts x 1 response cannot be split over 2 GPUs
    odd = tiny_run + ["data.train_batch_size=3", "actor_rollout_ref.rollout.n=1"]
    with pytest.raises(AssertionError, match=r"real_train_batch_size \(3\) must be divisible"):
        validate_like_verl(compose_config(name="grpo_trainer", overrides=odd))
    with pytest.raises(ValueError, match="log_prob_micro_batch_size"):
        validate_like_verl(compose_config(name="grpo_trainer", overrides=tiny_run[:-2]))


# ---------------------------------------------------------------------------------------------------------------
# Reward
# ---------------------------------------------------------------------------------------------------------------

HALF = "test/counting_and_probability/282.json"  # gold \frac{1}{2}
REWARD_CASES = [
    (HALF, r"The wheel gives $\frac{18}{36}$, so the probability is $\boxed{\frac{1}{2}}$.", 1.0),
    (HALF, r"So the probability is $\boxed{0.5}$.", 1.0),
    (HALF, r"Hence $\boxed{\dfrac12}$", 1.0),
    ("test/algebra/1072.json", r"Therefore the answer is $\boxed{0.3888}$.", 1.0),  # \frac{243}{625}
    ("test/precalculus/807.json", r"In polar form: $\boxed{(3, \frac{\pi}{2})}$.", 1.0),  # \left( 3, ... \right)
    ("test/precalculus/927.json", r"The angle is $\boxed{90}$ degrees.", 1.0),  # 90^\circ
    ("test/algebra/1349.json", r"\boxed{Evelyn}", 1.0),  # \text{Evelyn}
    (HALF, r"So the probability is $\boxed{\frac{1}{3}}$.", 0.0),
    (HALF, "The probability is 1/2.", 0.0),  # no boxed answer
    (HALF, r"The final answer is $\frac{1}{2}$.", 0.0),  # the evaluation reads it; the reward wants a box
    (HALF, "Trying 3, then 5, it is 0.5", 0.0),  # nor the last number (which the evaluation counts)
    (HALF, r"Thus the probability is $\boxed{\frac{1}{2}", 0.0),  # truncated: the last box never closes
    (HALF, r"First $\boxed{\frac{1}{2}}$, but on reflection $\boxed{\frac{1}{4}}$.", 0.0),  # the last box counts
]


@needs_data
@pytest.mark.parametrize(("uid", "response", "expected"), REWARD_CASES)
def test_reward_grades_responses_to_real_problems(uid, response, expected):
    gold = {row["unique_id"]: row["answer"] for row in read_jsonl(MATH500)}[uid]
    score = compute_score("math", response, gold, extra_info={"split": "train", "index": 0})
    assert type(score) is float and score == expected


@needs_data
def test_reward_takes_numeric_golds_as_the_prep_writes_them():
    row = read_jsonl(AMC23)[0]  # answer 27.0, a float; the prep writes it as the string "27.0"
    assert isinstance(row["answer"], float)
    assert compute_score("math", rf"$\boxed{{{int(row['answer'])}}}$", str(row["answer"])) == 1.0
    assert compute_score("math", rf"$\boxed{{{int(row['answer']) + 1}}}$", str(row["answer"])) == 0.0


def test_reward_scores_garbage_zero_without_raising():
    garbage = [
        ("x" * 5_000_000, "9"),  # huge, no answer
        ("\\boxed{" + "9" * 200_000 + "}", "9"),  # huge answer
        ("\\boxed{" * 10_000, "9"),  # unclosed boxes
        ("\x00\ufffd\\boxed{\x00}", "9"),  # binary junk in the box
        (r"\boxed{9}", None),  # no gold
        (r"\boxed{9}", ["9"]),  # gold of the wrong type
        (r"\boxed{9}", "$"),  # a gold math-verify cannot parse
    ]
    for response, gold in garbage:
        assert compute_score("math", response, gold) == 0.0, (response[:40], gold)
    start = time.monotonic()  # an answer math-verify cannot finish comparing: the hard timeout scores it 0
    assert compute_score("math", r"$\boxed{9^{9^{9^{9}}}}$", "9", timeout_s=1.0) == 0.0
    assert time.monotonic() - start < 30


# ---------------------------------------------------------------------------------------------------------------
# RL prep -> verl's RLHFDataset -> verl's reward worker
# ---------------------------------------------------------------------------------------------------------------


@needs_data
def test_rl_parquet_loads_in_verls_rlhf_dataset_with_prompt_and_gold_intact(tmp_path, tokenizer):
    report = rl.main(["--out", str(tmp_path), "--input", str(MATH500), "--limit", "40", "--val-size", "8"])
    assert (report["train_rows"], report["val_rows"], report["skipped_rows"]) == (32, 8, 0)
    golds = {row["problem"].strip(): row["answer"] for row in read_jsonl(MATH500)[:40]}
    seen = set()
    for split in ("train", "val"):
        dataset = rlhf_dataset([tmp_path / f"{split}.parquet"], tokenizer, max_prompt_length=100_000)
        assert len(dataset) == report[f"{split}_rows"]
        for index in range(len(dataset)):
            item = dataset[index]
            problem = item["extra_info"]["problem"]
            assert item["reward_model"] == {"style": "rule", "ground_truth": golds[problem]}
            assert item["raw_prompt"] == [{"role": "user", "content": chat_cot_user(problem)}]
            # what verl renders for the rollout is exactly the evaluation's chat-cot prompt
            rendered = tokenizer.apply_chat_template(item["raw_prompt"], add_generation_prompt=True, tokenize=False)
            assert rendered == build_prompt("chat-cot", problem, tokenizer)
            assert (item["data_source"], item["ability"]) == ("math", "math")
            assert (item["extra_info"]["split"], item["index"]) == (split, index)
            seen.add(problem)
    assert seen == set(golds)  # every problem once, train and val disjoint


@needs_data
def test_prepared_sft_parquet_becomes_the_same_problems_and_golds(tmp_path):
    # the documented pipeline: an SFT prep's train.parquet (what dft.rl.rft samples) -> RL prompts
    sft = tmp_path / "sft"
    prepare(math_prep.SPEC, PrepOptions(out=sft, source="local", input=MATH_TEST, limit=30, selection="first"))
    opts = PrepOptions(out=tmp_path / "rl", source="local", input=sft / "train.parquet", n=30, selection="first")
    rl.prepare(opts)
    sft_rows = pd.read_parquet(sft / "train.parquet")
    rl_rows = pd.read_parquet(tmp_path / "rl" / "train.parquet")
    originals = {row["problem"].strip(): row["solution"] for row in read_jsonl(MATH_TEST)[:30]}
    assert len(rl_rows) == len(sft_rows) == 30
    for (_, s), (_, r) in zip(sft_rows.iterrows(), rl_rows.iterrows()):
        assert r["extra_info"]["source_id"] == s["id"]
        assert r["prompt"][0]["content"] == s["messages"][0]["content"]
        problem = r["extra_info"]["problem"]
        assert r["reward_model"]["ground_truth"] == s["gold"] == last_boxed(originals[problem])
        assert r["data_source"] == s["source"] == "math"
    # and rejection sampling reads the RL file as the same problems (recipes/table3 chooses them once)
    assert read_problems(tmp_path / "rl" / "train.parquet") == read_problems(sft / "train.parquet")


@needs_data
def test_prompt_length_limit_drops_exactly_what_verls_filter_drops(tmp_path, tiny, tokenizer):
    rl.main(["--out", str(tmp_path / "all"), "--input", str(MATH500), "--limit", "40", "--no-gold-check"])
    lengths = sorted(
        rl.prompt_length(tokenizer, list(p)) for p in pd.read_parquet(tmp_path / "all" / "train.parquet")["prompt"]
    )
    limit = lengths[len(lengths) // 2]
    args = ["--input", str(MATH500), "--limit", "40", "--no-gold-check", "--tokenizer", str(tiny.model_dir)]
    report = rl.main(["--out", str(tmp_path / "short"), *args, "--max-length", str(limit), "--on-bad-row", "skip"])
    kept = set(pd.read_parquet(tmp_path / "short" / "train.parquet")["extra_info"].map(lambda e: e["id"]))
    dataset = rlhf_dataset([tmp_path / "all" / "train.parquet"], tokenizer, max_prompt_length=limit)
    assert {dataset[i]["extra_info"]["id"] for i in range(len(dataset))} == kept
    assert 0 < report["skipped"]["prompt longer than max_length"] == 40 - len(kept)
    assert report["token_lengths"]["max"] <= limit


def test_hub_default_reads_numina_cot_rows_by_problem_and_boxed_solution(tmp_path, monkeypatch):
    import datasets

    problem = "Find $x$ if $2x = 6$."
    row = {  # NuminaMath-CoT's fields; its messages hold the bare problem, not a chat-cot prompt
        "source": "cn_k12",
        "problem": problem,
        "solution": r"Divide by 2: $x = \boxed{3}$.",
        "messages": [{"role": "user", "content": problem}, {"role": "assistant", "content": "x = 3"}],
    }
    calls = []

    def fake_load_dataset(path, name=None, split=None):
        calls.append((path, name, split))
        return datasets.Dataset.from_list([row] * 3)

    monkeypatch.setattr(datasets, "load_dataset", fake_load_dataset)
    report = rl.main(["--out", str(tmp_path), "--limit", "3"])
    assert calls == [("AI-MO/NuminaMath-CoT", None, "train[:3]")] and report["train_rows"] == 3
    written = pd.read_parquet(tmp_path / "train.parquet").iloc[0]
    assert written["prompt"][0]["content"] == chat_cot_user(problem)
    assert (written["reward_model"]["ground_truth"], written["data_source"]) == ("3", "cn_k12")


GOOD = {"problem": "What is $1+2$?", "answer": "3"}
BAD_ROWS = [
    ({"problem": "What is $2+2$?", "answer": ""}, "line 2: field 'answer' is empty"),
    ({"answer": "4"}, "line 2: field 'problem' is missing"),
    ({"messages": [{"role": "user", "content": "Critique the solution."}], "answer": "4"}, "line 2: field 'messages'"),
    ({"problem": "What is $2+2$?", "solution": "It is four."}, "line 2: field 'solution' has no \\boxed{} answer"),
    ({"problem": "What is $2+2$?", "answer": "$"}, "line 2: field 'answer' '$' does not verify against itself"),
    ("{not json", "line 2: the line is not valid JSON"),
]


@pytest.mark.parametrize(("bad", "message"), BAD_ROWS)
def test_bad_rows_fail_naming_the_file_line_and_field(tmp_path, bad, message):
    path = tmp_path / "problems.jsonl"
    path.write_text(json.dumps(GOOD) + "\n" + (bad if isinstance(bad, str) else json.dumps(bad)) + "\n")
    gold_check = "does not verify" in message  # the grader's workers start only where the case needs them
    opts = PrepOptions(out=tmp_path / "out", source="local", input=path, extra={"gold_check": gold_check})
    with pytest.raises(DataPrepError, match="--on-bad-row skip") as err:
        rl.prepare(opts)
    assert f"{path}: {message}" in str(err.value)
    assert not (tmp_path / "out" / "train.parquet").exists()


def test_skipped_rows_are_counted_by_reason_and_the_cli_exits_2_on_errors(tmp_path, capsys):
    path = tmp_path / "problems.jsonl"
    path.write_text("".join((r if isinstance(r, str) else json.dumps(r)) + "\n" for r, _ in [(GOOD, ""), *BAD_ROWS]))
    report = rl.main(["--out", str(tmp_path / "out"), "--input", str(path), "--on-bad-row", "skip"])
    assert (report["train_rows"], report["skipped_rows"]) == (1, len(BAD_ROWS))
    assert report["skipped"]["gold answer does not verify"] == 1
    assert report["input_rows"] == report["train_rows"] + report["skipped_rows"] + report["unselected_rows"]
    with pytest.raises(SystemExit) as exit_:
        rl.main(["--out", str(tmp_path / "err"), "--input", str(path), "--selection", "first"])
    assert exit_.value.code == 2 and f"{path}: line 2: field 'answer' is empty" in capsys.readouterr().err


@needs_data
def test_verls_reward_worker_scores_rollouts_of_prepared_prompts_with_dft_reward(tmp_path, tiny, tokenizer):
    from verl import DataProto
    from verl.experimental.reward_loop.reward_loop import RewardLoopWorker

    rl.main(["--out", str(tmp_path), "--input", str(MATH500), "--limit", "4"])
    dataset = rlhf_dataset([tmp_path / "train.parquet"], tokenizer, max_prompt_length=100_000)
    items = [dataset[i] for i in range(4)]
    golds = [item["reward_model"]["ground_truth"] for item in items]
    responses = [
        f"Step by step, we get $\\boxed{{{golds[0]}}}$.",
        r"I believe it is $\boxed{-12345}$.",
        "I cannot finish this one.",
        f"Hence the final answer is \\boxed{{{golds[3]}}}",
    ]
    # rollouts as verl's agent loop hands them over: left part prompt, right part response ids ending in EOS, padded
    ids = [tokenizer(r, add_special_tokens=False)["input_ids"] + [tokenizer.eos_token_id] for r in responses]
    width, prompt_width = max(map(len, ids)), 3
    response_ids = torch.full((4, width), tokenizer.pad_token_id)
    mask = torch.zeros((4, prompt_width + width), dtype=torch.long)
    for row, seq in enumerate(ids):
        response_ids[row, : len(seq)] = torch.tensor(seq)
        mask[row, : prompt_width + len(seq)] = 1
    keys = ("data_source", "reward_model", "extra_info")
    data = DataProto.from_dict(
        tensors={"prompts": torch.zeros((4, prompt_width), dtype=torch.long), "responses": response_ids,
                 "attention_mask": mask},
        non_tensors={k: np.array([item[k] for item in items], dtype=object) for k in keys},
    )  # fmt: skip
    cfg = compose_config(name="grpo_trainer", overrides=[f"actor_rollout_ref.model.path={tiny.model_dir}"])
    worker = RewardLoopWorker(cfg)  # loads compute_score from reward.custom_reward_function (pkg://dft.rl.reward)
    outputs = worker.loop.run_until_complete(worker.compute_score_batch(data))
    assert [out["reward_score"] for out in outputs] == [1.0, 0.0, 0.0, 1.0]


# ---------------------------------------------------------------------------------------------------------------
# Launcher
# ---------------------------------------------------------------------------------------------------------------


def dry_run(args=(), **env):
    result = subprocess.run(
        ["bash", str(REPO / "scripts" / "train_rl.sh"), *args],
        capture_output=True,
        text=True,
        env=dict(os.environ, DRY_RUN="1", **env),
        check=True,
    )
    return shlex.split(result.stdout)


def main_ppo_up_to_ray(cmd, tmp_path, monkeypatch, capsys):
    """verl's real entry point parses the launcher's command (Hydra), sets the device and validates; the config
    it would hand to Ray is returned instead of starting Ray."""
    import verl.trainer.main_ppo as main_ppo

    started = {}
    monkeypatch.setattr(main_ppo, "run_ppo", lambda config, task_runner_class: started.update(config=config))
    hydra_quiet = ["hydra/job_logging=none", "hydra/hydra_logging=none", f"hydra.run.dir={tmp_path}"]
    monkeypatch.setattr(sys, "argv", ["main_ppo", *cmd[3:], *hydra_quiet])
    main_ppo.main()
    assert VALIDATED in capsys.readouterr().out
    return started["config"]


@pytest.mark.parametrize("algo", sorted(CONFIGS))
def test_launcher_command_runs_verls_main_ppo_up_to_ray(algo, tiny, tmp_path, monkeypatch, capsys):
    env = {"ALGO": algo, "GPUS_PER_NODE": "8", "MODEL": str(tiny.model_dir), "DATA_DIR": str(tmp_path / "rl")}
    cmd = dry_run(["trainer.total_epochs=3"], **env)
    assert cmd[:3] == ["python", "-m", "verl.trainer.main_ppo"]
    assert cmd[cmd.index("--config-name") + 1] == CONFIGS[algo]
    cfg = main_ppo_up_to_ray(cmd, tmp_path, monkeypatch, capsys)
    assert cfg.algorithm.adv_estimator == {"grpo": "grpo", "ppo": "gae"}[algo]
    assert (cfg.trainer.n_gpus_per_node, cfg.trainer.nnodes, cfg.trainer.total_epochs) == (8, 1, 3)
    assert cfg.actor_rollout_ref.model.path == str(tiny.model_dir)
    assert cfg.data.train_files == str(tmp_path / "rl" / "train.parquet")


def test_launcher_refuses_an_unknown_algorithm():
    result = subprocess.run(
        ["bash", str(REPO / "scripts" / "train_rl.sh")],
        capture_output=True,
        text=True,
        env=dict(os.environ, ALGO="dpo"),
    )
    assert result.returncode == 2 and "valid: grpo, ppo" in result.stderr


def test_cpu_setting_validates_and_rolls_out_with_hugging_face_on_two_processes(tiny, tmp_path, monkeypatch, capsys):
    from dft.rl.hf_rollout import HFReplica, HFServerAdapter

    # no GPU here: the launcher leaves the process count to the CPU setting instead of refusing to start
    env = {"ALGO": "ppo", "GPUS_PER_NODE": "0", "MODEL": str(tiny.model_dir), "DATA_DIR": str(tmp_path / "rl")}
    cmd = dry_run(["rl_setting=tiny-cpu"], **env)
    assert not any(arg.startswith("trainer.n_gpus_per_node=") for arg in cmd)
    cfg = main_ppo_up_to_ray(cmd, tmp_path, monkeypatch, capsys)
    built = validate_like_verl(cfg)
    assert (cfg.trainer.device, cfg.trainer.n_gpus_per_node, cfg.ray_kwargs.ray_init.num_gpus) == ("cpu", 2, 2)
    assert (built["actor_rollout_ref.actor"].strategy, built["critic"].strategy) == ("fsdp2", "fsdp2")
    assert built["actor_rollout_ref.rollout"].name == "hf" and cfg.critic.model.override_config.attn_implementation
    from verl.workers.rollout.base import get_rollout_class
    from verl.workers.rollout.replica import get_rollout_replica_class

    assert (get_rollout_replica_class("hf"), get_rollout_class("hf")) == (HFReplica, HFServerAdapter)


def test_launcher_without_a_gpu_or_the_cpu_setting_says_how_to_run():
    env = dict(os.environ, ALGO="grpo", GPUS_PER_NODE="0")
    result = subprocess.run(["bash", str(REPO / "scripts" / "train_rl.sh")], capture_output=True, text=True, env=env)
    assert result.returncode == 2 and "rl_setting=tiny-cpu" in result.stderr
