"""``python -m dft diagnose`` on the tiny Base and on model-faithful tiny Qwen2.5-Math and LLaMA-3 base models: its
numbers (quantiles, shares below 0.1 and 0.01, mean_target_prob, the end tokens' p) equal an independent float64
computation (a plain transformers forward and log_softmax on the same rows, tokenised here from the chat template
or the official format), and the structural tokens are the real tokenizers' ones."""

import json

import numpy as np
import pytest
import torch
from conftest import FP32, check_ok, run_module
from transformers import AutoModelForCausalLM, AutoTokenizer

from dft.data.prep import Example, write_parquet
from dft.models.prompts import build_prompt, chat_cot_user
from dft.report.prior import QUANTILES

ROWS = 6


def examples(records, fmt):
    user = chat_cot_user if fmt == "chat" else (lambda problem: problem)
    return [Example(user(r["problem"]), r["solution"], r["gold"], "tiny", r["id"]) for r in records]


def chat_rows(tokenizer, records):
    """(input ids, number of prompt tokens) per row, from the chat template: verl's dataset trains on the whole
    assistant turn, the newline after its end token included."""
    rows = []
    for e in examples(records, "chat"):
        prompt = tokenizer.apply_chat_template(e.messages()[:1], add_generation_prompt=True, tokenize=False)
        full = tokenizer.apply_chat_template(e.messages(), tokenize=False)
        assert full.startswith(prompt)
        ids = tokenizer(prompt, add_special_tokens=False).input_ids
        target = tokenizer(full[len(prompt) :], add_special_tokens=False).input_ids  # the "\n" after the end too
        rows.append((ids + target, len(ids)))
    return rows


def official_rows(tokenizer, records):
    """The official format without a chat template: BOS, the evaluation prompt, then solution + eos."""
    rows = []
    for r in records:
        ids = [tokenizer.bos_token_id] + tokenizer(build_prompt("llama-base-boxed", r["problem"]),
                                                   add_special_tokens=False).input_ids  # fmt: skip
        target = tokenizer(r["solution"] + tokenizer.eos_token, add_special_tokens=False).input_ids
        rows.append((ids + target, len(ids)))
    return rows


def float64_targets(model_dir, rows):
    """(target ids, target log p) per row by the HF model in float64."""
    model = AutoModelForCausalLM.from_pretrained(model_dir, dtype=torch.float64, attn_implementation="eager")
    out = []
    with torch.no_grad():
        for ids, prompt_len in rows:
            ids = torch.tensor(ids)
            log_p = torch.log_softmax(model(ids[None]).logits[0, :-1], -1).gather(-1, ids[1:, None]).squeeze(-1)
            out.append((ids[prompt_len:].tolist(), log_p[prompt_len - 1 :].numpy()))
    return out


def diagnose(model_dir, data, out, *extra, nproc=None):
    args = ["preset=tiny-cpu", f"model.path={model_dir}", f"data.train_files={data}", f"out={out}", f"limit={ROWS}",
            *FP32, *extra]  # fmt: skip
    check_ok(run_module("diagnose", args, out.parent / "diagnose.log", nproc=nproc))
    assert {"report.md", "report.json", "target_probs.png"} <= {p.name for p in out.iterdir()}
    assert list(out.glob("logs/*/.hydra/config.yaml")), "Hydra's folder belongs in out/logs, not in the working dir"
    return json.loads((out / "report.json").read_text())


def check_numbers(report, reference, tokenizer):
    p = np.exp(np.concatenate([lp for _, lp in reference]))
    stats = report["statistics"]
    assert stats["target_tokens"] == p.size and stats["rows"] == ROWS
    assert report["mean_target_prob"] == pytest.approx(p.mean(), rel=1e-4)
    expected = np.quantile(p, QUANTILES)
    np.testing.assert_allclose([stats["quantiles"][f"{q:g}"] for q in QUANTILES], expected, rtol=1e-4)
    for threshold in (0.1, 0.01):
        assert stats["share_below"][f"{threshold:g}"] == pytest.approx((p < threshold).mean(), abs=1.5 / p.size)
    for entry in report["structural"]:
        if len(entry["token_ids"]) != 1 or entry["name"] == "answer format":
            continue
        (tid,) = entry["token_ids"]
        at = np.concatenate([np.exp(lp)[np.array(ids) == tid] for ids, lp in reference])
        assert entry["occurrences"] == at.size
        if at.size:
            assert entry["mean_p"] == pytest.approx(at.mean(), rel=1e-4)
    boxed = next(e for e in report["structural"] if e["name"] == "answer format")
    assert boxed["occurrences"] == sum(tokenizer.decode(ids).count("\\boxed") for ids, _ in reference)


def structural(report):
    return {e["text"]: e for e in report["structural"] if e["name"] != "answer format"}


def test_tiny_base_report_matches_a_float64_forward(tiny_base, tmp_path):
    from tiny_base import TRAINED

    assets, base = tiny_base
    records = assets.train_records[TRAINED : TRAINED + ROWS]  # problems the Base never saw
    data = tmp_path / "unseen.parquet"
    write_parquet(examples(records, "chat"), str(data), "chat")
    report = diagnose(base, data, tmp_path / "report", nproc=2)  # as torchrun runs it: two ranks share the rows
    tokenizer = AutoTokenizer.from_pretrained(base)
    check_numbers(report, float64_targets(base, chat_rows(tokenizer, records)), tokenizer)
    assert report["verdict"]["position"] in ("weak", "intermediate", "strong")
    assert "![target token probabilities](target_probs.png)" in (tmp_path / "report" / "report.md").read_text()


def test_faithful_qwen_math_resolves_its_end_tokens_and_warns(tiny, faithful_tiny, tmp_path):
    model = faithful_tiny("qwen2.5-math-1.5b")
    data = tmp_path / "chat.parquet"
    write_parquet(examples(tiny.train_records[:ROWS], "chat"), str(data), "chat")
    report = diagnose(model, data, tmp_path / "report")
    tokenizer = AutoTokenizer.from_pretrained(model)
    check_numbers(report, float64_targets(model, chat_rows(tokenizer, tiny.train_records[:ROWS])), tokenizer)
    ends = structural(report)
    assert ends["<|im_end|>"]["token_ids"] == [151645] and ends["<|im_end|>"]["occurrences"] == ROWS
    assert ends["<|endoftext|>"]["token_ids"] == [151643] and ends["<|endoftext|>"]["occurrences"] == 0
    warnings = "\n".join(report["warnings"])  # random layers: p ~ 1/vocab, a weak prior with every warning
    assert "loss.full_weight_tokens=[eos,end_of_turn]" in warnings and "never a target" not in warnings
    assert report["verdict"]["position"] == "weak"


def test_faithful_llama_base_official_format(tiny, faithful_tiny, tmp_path):
    model = faithful_tiny("llama-3.2-3b")
    data = tmp_path / "official.parquet"
    write_parquet(examples(tiny.train_records[:ROWS], "official"), str(data), "official")
    report = diagnose(model, data, tmp_path / "report", "data.format=official")
    tokenizer = AutoTokenizer.from_pretrained(model)
    check_numbers(report, float64_targets(model, official_rows(tokenizer, tiny.train_records[:ROWS])), tokenizer)
    ends = structural(report)
    assert list(ends) == ["<|end_of_text|>"] and ends["<|end_of_text|>"]["occurrences"] == ROWS
    assert any(w.startswith("end_of_turn: the tokenizer has none") for w in report["warnings"])
    assert "loss.full_weight_tokens=[eos] " in "\n".join(report["warnings"])  # only the end tokens it has


def test_diagnose_refuses_a_missing_out(tiny):
    result = run_module("diagnose", ["preset=tiny-cpu", f"model.path={tiny.model_dir}",
                                     f"data.train_files={tiny.train_parquet}"])  # fmt: skip
    assert result.returncode == 2 and "error: out is not set" in result.stderr and "Traceback" not in result.stderr


def test_the_verdict_follows_the_prior_and_the_end_token_warning_names_the_fix():
    from dft.report.prior import never_ends, structural_entry, structural_warning, target_statistics, verdict

    def stats(p):
        return target_statistics([np.log(np.asarray(p, dtype=np.float64))])

    assert verdict(stats([0.9] * 9 + [0.05]), [])["position"] == "strong"  # mean 0.815, 10% below 0.1
    assert verdict(stats([0.9] * 7 + [0.05] * 3), [])["position"] == "intermediate"  # 30% below 0.1
    assert verdict(stats([0.2] * 10), [])["position"] == "weak"
    weak_eos = structural_entry("eos", "<eos>", [[[2]]], [np.log([0.5, 0.5, 0.02])])
    assert weak_eos["mean_p"] == pytest.approx(0.02) and weak_eos["occurrences"] == 1
    assert "loss.full_weight_tokens=[eos,end_of_turn]" in structural_warning(weak_eos, end_token=True)
    assert structural_warning({**weak_eos, "mean_p": 0.5}, end_token=True) is None
    assert "no end token is ever a target" in never_ends([{**weak_eos, "occurrences": 0}])
    assert never_ends([{**weak_eos, "occurrences": 0}, weak_eos]) is None


def test_a_marker_is_found_whatever_its_tokenization():
    from dft.report.prior import find_text

    assert find_text(["The", " answer", " \\", "box", "ed{", "2}"], "\\boxed") == [[2, 3, 4]]
    assert find_text(["\\boxed", "{1}", " and ", "\\b", "oxed"], "\\boxed") == [[0], [3, 4]]


def test_the_continuum_table_gives_each_loss_over_seeds_and_the_observed_winner(tmp_path):
    from dft.report.continuum import LOSSES, write_continuum

    report = {"mean_target_prob": 0.8, "statistics": {"share_below": {"0.1": 0.1}}, "verdict": {"position": "strong"}}
    accuracy = {"7|base|0": 0.1, **{f"7|{loss}|{s}": 0.2 + 0.1 * s for loss in LOSSES for s in (0, 1)}}
    accuracy |= {"7|dft|0": 0.5, "7|dft|1": 0.3}  # DFT - SFT: +30 and 0 points
    summary = write_continuum(tmp_path, {7: report}, accuracy, {"n_test": 10, "seeds": 2}, 1.0)
    (point,) = summary["points"]
    assert point["accuracy"]["sft"] == {"mean": pytest.approx(25), "min": pytest.approx(20), "max": pytest.approx(30),
                                        "n": 2}  # fmt: skip
    assert point["dft_minus_sft"]["mean"] == pytest.approx(15) and point["observed"] == "DFT"
    assert point["prediction_held"] and (tmp_path / "continuum.png").is_file()
