"""Output folders hold one run: fingerprints, what differs when they differ, default folders unique per model."""

import json

import pytest

from dft.data.problems import Problem
from dft.eval.fingerprint import FILE, claim, default_output_dir, problems_digest, weights_digest


def fingerprint(**changes):
    base = {"model": "/m/a", "weights_sha256": "aa", "prompt": "qwen-boxed", "prompt_sha256": "p1",
            "sampling": {"temperature": 1.0, "top_p": 1.0, "max_new_tokens": 4096, "seed": 0},
            "stops": {"token_ids": [1], "tokens": ["<e>"], "strings": []}, "context": 4096, "backend": "vllm",
            "dtype": "bfloat16", "benchmarks": {"aime24": "d1"}}  # fmt: skip
    for key, value in changes.items():
        if "." in key:
            section, field = key.split(".")
            base[section] = {**base[section], field: value}
        else:
            base[key] = value
    return base


def test_a_new_folder_is_claimed_and_the_same_run_resumes(tmp_path):
    claim(tmp_path, fingerprint())
    claim(tmp_path, fingerprint())
    claim(tmp_path, fingerprint(benchmarks={"amc23": "d2"}))  # another benchmark joins the folder
    assert json.loads((tmp_path / FILE).read_text())["benchmarks"] == {"aime24": "d1", "amc23": "d2"}


@pytest.mark.parametrize("change, shown", [
    ({"model": "/m/b", "weights_sha256": "bb"}, ['model: "/m/a" in the folder, "/m/b" now', "weights_sha256"]),
    ({"prompt": "chat-cot"}, ['prompt: "qwen-boxed" in the folder, "chat-cot" now']),
    ({"sampling.temperature": 0.6}, ["sampling.temperature: 1.0 in the folder, 0.6 now"]),
    ({"benchmarks": {"aime24": "other"}}, ["benchmarks.aime24"]),
    ({"stops": {"token_ids": [1, 2], "tokens": ["<e>", "<t>"], "strings": []}}, ["stops.token_ids", "stops.tokens"]),
])  # fmt: skip
def test_resuming_with_a_different_run_is_refused_with_what_differs(tmp_path, change, shown):
    claim(tmp_path, fingerprint())
    with pytest.raises(ValueError, match="holds results of a different run") as err:
        claim(tmp_path, fingerprint(**change))
    assert all(s in str(err.value) for s in shown), str(err.value)
    assert json.loads((tmp_path / FILE).read_text()) == fingerprint()  # the folder's record is untouched


def test_responses_without_a_fingerprint_and_a_broken_one_are_refused(tmp_path):
    (tmp_path / "aime24.jsonl").write_text('{"id": "1", "sample": 0}\n')
    with pytest.raises(ValueError, match=r"holds responses \(aime24.jsonl\) but no fingerprint.json"):
        claim(tmp_path, fingerprint())
    (tmp_path / FILE).write_text("{not json")
    with pytest.raises(ValueError, match=r"fingerprint.json: not valid JSON"):
        claim(tmp_path, fingerprint())


def test_default_folders_are_unique_per_model(tmp_path):
    a, b = tmp_path / "dft/global_step_390/huggingface", tmp_path / "sft/global_step_390/huggingface"
    a.mkdir(parents=True), b.mkdir(parents=True)
    assert default_output_dir(str(a)) != default_output_dir(str(b))
    assert default_output_dir(str(a)).name.startswith("global_step_390_huggingface-")
    assert default_output_dir("Qwen/Qwen2.5-Math-7B") != default_output_dir("Qwen/Qwen2.5-Math-1.5B")


def test_digests_see_weights_and_problems(tmp_path):
    (tmp_path / "model.safetensors").write_bytes(b"x" * 1000)
    first = weights_digest(tmp_path)
    (tmp_path / "model.safetensors").write_bytes(b"x" * 999 + b"y")
    assert weights_digest(tmp_path) != first
    problems = [Problem("1", "What is 1+1?", "2")]
    assert problems_digest(problems) != problems_digest([Problem("1", "What is 1+1?", "3")])
    with pytest.raises(FileNotFoundError, match="no weight files"):
        weights_digest(tmp_path / "..")
