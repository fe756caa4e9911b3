"""CPU tests for dft.data: each preparation on small local inputs (GSM8K's real train file, the MATH test file as a
stand-in, synthetic NuminaMath and CFT rows), selection reproducibility, the bad-row policy and its report, the
token-length limit against verl's own SFT dataset, atomic writes, the hub path with a fake loader, and the written
GSM8K parquet training 2 steps through dft.train."""

import json
import math
import os
from pathlib import Path

import datasets
import pandas as pd
import pytest
from conftest import check_ok, read_log, run_module, tiny_overrides

from dft.data import cft, gsm8k, numina
from dft.data import math as math_prep
from dft.data import prep as common
from dft.data.prep import DataPrepError, PrepOptions, prepare
from dft.data.problems import gsm8k_gold, last_boxed, read_problems
from dft.data.select import token_lengths
from dft.models.prompts import INSTRUCTION, build_prompt

DATA_DIR = Path(os.environ.get("DFT_DATA_DIR") or Path(__file__).resolve().parents[1].parent / "shared" / "data")
GSM8K_TRAIN = DATA_DIR / "gsm8k" / "train.jsonl"
MATH_TEST = DATA_DIR / "math_full_test" / "test.jsonl"
needs_data = pytest.mark.skipif(not GSM8K_TRAIN.is_file(), reason=f"shared data not found at {DATA_DIR}")


def write_jsonl(path, rows):
    """Rows as jsonl; a str row is written as the raw line (to make broken lines)."""
    lines = [row if isinstance(row, str) else json.dumps(row) for row in rows]
    path.write_text("".join(line + "\n" for line in lines))
    return path


def numina_rows(n):
    return [
        {"problem": f"What is {i} + {i}?", "solution": f"{i} + {i} = {2 * i}, so $\\boxed{{{2 * i}}}$.", "source": "x"}
        for i in range(n)
    ]


def read(out, split="train"):
    return pd.read_parquet(Path(out) / f"{split}.parquet")


def report(out):
    return json.loads((Path(out) / "report.json").read_text())


@needs_data
def test_gsm8k_from_the_real_train_file_matches_the_evaluation_prompt_and_gold(tiny, tmp_path):
    from transformers import AutoTokenizer

    got = gsm8k.main(["--input", str(GSM8K_TRAIN), "--limit", "200", "--val-size", "20", "--out", str(tmp_path / "g")])
    assert (got["input_rows"], got["train_rows"], got["val_rows"], got["skipped_rows"]) == (200, 180, 20, 0)
    train, val = read(tmp_path / "g"), read(tmp_path / "g", "val")
    assert list(train.columns) == ["messages", "id", "gold", "source"]
    assert not set(train.id) & set(val.id) and len(set(train.id) | set(val.id)) == 200
    raw = [json.loads(line) for line in GSM8K_TRAIN.read_text().splitlines()[:200]]
    tokenizer = AutoTokenizer.from_pretrained(tiny.model_dir)
    for row in pd.concat([train, val]).itertuples():
        source = raw[int(row.id.split("-")[1])]
        user, assistant = row.messages
        assert (user["role"], assistant["role"]) == ("user", "assistant")
        # the training user turn is the evaluation's chat-cot user turn, token for token
        prompt = tokenizer.apply_chat_template([dict(user)], tokenize=False, add_generation_prompt=True)
        assert prompt == build_prompt("chat-cot", source["question"], tokenizer)
        assert row.gold == gsm8k_gold(source["answer"]) == last_boxed(assistant["content"])
        assert assistant["content"].endswith(f"The final answer is \\boxed{{{row.gold}}}.")
        assert "<<" not in assistant["content"] and "####" not in assistant["content"]
    # calculator annotations are stripped by default, kept with --keep-annotations
    assert "48/2 = 24 clips" in gsm8k.convert(raw[0], {}).assistant  # "48/2 = <<48/2=24>>24 clips" in the file
    gsm8k.main(["--input", str(GSM8K_TRAIN), "--limit", "3", "--out", str(tmp_path / "k"), "--keep-annotations"])
    kept = {row.id: row.messages[1]["content"] for row in read(tmp_path / "k").itertuples()}["gsm8k-0"]
    assert kept.startswith(raw[0]["answer"].split("####")[0].strip()) and "<<48/2=24>>24" in kept


@needs_data
def test_math_prep_on_the_math_test_file_as_a_stand_in(tmp_path):
    got = math_prep.main(["--input", str(MATH_TEST), "--limit", "100", "--out", str(tmp_path / "m")])
    assert (got["train_rows"], got["val_rows"], got["skipped_rows"]) == (100, 0, 0)
    assert not (tmp_path / "m" / "val.parquet").exists()
    raw = [json.loads(line) for line in MATH_TEST.read_text().splitlines()[:100]]
    for row in read(tmp_path / "m").itertuples():
        source = raw[int(row.id.split("-")[1])]
        assert row.messages[0]["content"] == source["problem"] + "\n" + INSTRUCTION
        assert row.messages[1]["content"] == source["solution"] and row.gold == last_boxed(source["solution"])
        assert row.source == "math"
    # dft.rl.rft samples from a prepared parquet: it gets back the problem text and gold the evaluation would use
    problems = {p.id: p for p in read_problems(tmp_path / "m" / "train.parquet")}
    assert problems["math-7"].problem == raw[7]["problem"].strip()
    assert problems["math-7"].gold == last_boxed(raw[7]["solution"])


def test_numina_selection_is_reproducible_first_and_random_differ_and_val_does_not_move_train(tmp_path):
    path = write_jsonl(tmp_path / "numina.jsonl", numina_rows(60))

    def ids(name, *args):
        numina.main(["--input", str(path), "--out", str(tmp_path / name), "--n", "20", *args])
        return list(read(tmp_path / name).id), report(tmp_path / name)

    first, rep = ids("first", "--selection", "first", "--val-size", "5")
    assert first == [f"numina-{i}" for i in range(20)] and rep["unselected_rows"] == 35
    assert not set(read(tmp_path / "first", "val").id) & set(first)
    random_a, rep = ids("a", "--selection", "random", "--seed", "0")
    assert ids("b", "--selection", "random", "--seed", "0")[0] == random_a
    assert ids("c", "--selection", "random", "--seed", "0", "--val-size", "10")[0] == random_a
    assert ids("d", "--selection", "random", "--seed", "1")[0] != random_a
    assert sorted(random_a) != sorted(first) and rep["selection"] == "random" and rep["seed"] == 0
    assert read(tmp_path / "a").source.iloc[0] == "numina_cot/x" and read(tmp_path / "a").gold.iloc[0].isdigit()
    with pytest.raises(DataPrepError, match="--n: asked for 100 rows, found only 60"):
        prepare(numina.SPEC, PrepOptions(out=tmp_path / "e", source="local", input=path, n=100))


def test_cft_is_one_instruction_plus_input_turn_and_the_critique_with_no_gold(tmp_path):
    rows = [
        {"instruction": "Critique the solution.", "input": f"Q{i}: 1+1?\nSolution: 3", "output": "Wrong: 2."}
        for i in range(4)
    ]
    path = write_jsonl(tmp_path / "cft.jsonl", rows)
    cft.main(["--input", str(path), "--out", str(tmp_path / "c"), "--selection", "first"])
    row = read(tmp_path / "c").iloc[0]
    user, assistant = row.messages
    assert user["content"] == "Critique the solution.\nQ0: 1+1?\nSolution: 3" and assistant["content"] == "Wrong: 2."
    assert row.gold == "" and row.source == "webinstruct_cft"
    # the same rows as a parquet input give the same data; positions there are 0-based rows
    pd.DataFrame(rows).to_parquet(tmp_path / "cft.parquet")
    cft.main(["--input", str(tmp_path / "cft.parquet"), "--out", str(tmp_path / "p"), "--selection", "first"])
    assert read(tmp_path / "p").equals(read(tmp_path / "c"))
    pd.DataFrame([*rows, {**rows[0], "output": ""}]).to_parquet(tmp_path / "bad.parquet")
    with pytest.raises(DataPrepError, match="bad.parquet: row 4: field 'output' is empty"):
        prepare(cft.SPEC, PrepOptions(tmp_path / "b", "local", tmp_path / "bad.parquet"))


BAD_ROWS = [
    ({"problem": "p"}, 2, "field 'solution' is missing"),
    ({"problem": "  ", "solution": "\\boxed{1}"}, 2, "field 'problem' is empty"),
    ({"problem": "p", "solution": "no answer here"}, 2, "field 'solution' has no \\boxed{} answer"),
    ('{"problem": "p", "solution": ', 2, "the line is not valid JSON"),
]


@pytest.mark.parametrize("bad, line, message", BAD_ROWS)
def test_a_bad_row_is_an_error_naming_file_line_and_field(tmp_path, capsys, bad, line, message):
    path = write_jsonl(tmp_path / "in.jsonl", [numina_rows(1)[0], bad, *numina_rows(2)])
    with pytest.raises(DataPrepError) as err:
        prepare(numina.SPEC, PrepOptions(out=tmp_path / "o", source="local", input=path))
    assert str(err.value).startswith(f"{path}: line {line}: {message}")
    assert not (tmp_path / "o").exists()
    with pytest.raises(SystemExit) as exit_:
        numina.main(["--input", str(path), "--out", str(tmp_path / "o")])
    assert exit_.value.code == 2 and f"line {line}: {message}" in capsys.readouterr().err


def test_skip_mode_counts_bad_rows_by_reason_and_the_counts_add_up(tmp_path):
    rows = numina_rows(30)
    rows[3], rows[7], rows[11] = {"problem": "p"}, {"problem": "p", "solution": "none"}, "not json"
    rows[20] = {"problem": "p", "solution": "still none"}
    path = write_jsonl(tmp_path / "in.jsonl", rows)
    got = numina.main(["--input", str(path), "--out", str(tmp_path / "o"), "--val-size", "6", "--on-bad-row", "skip"])
    assert got["skipped"] == {
        "invalid JSON": 1,
        "missing field 'solution'": 1,
        "field 'solution' has no \\boxed{} answer": 2,
    }
    assert got["input_rows"] == got["train_rows"] + got["val_rows"] + got["skipped_rows"] + got["unselected_rows"]
    assert (got["train_rows"], got["val_rows"], got["skipped_rows"], got["unselected_rows"]) == (20, 6, 4, 0)
    no_boxed = got["skipped_examples"]["field 'solution' has no \\boxed{} answer"]
    assert sorted(no_boxed) == [f"{path}: line {n}: field 'solution' has no \\boxed{{}} answer" for n in (21, 8)]
    assert report(tmp_path / "o") == got and len(read(tmp_path / "o")) == 20


def test_max_length_counts_chat_template_tokens_as_verl_does(tiny, tmp_path):
    from transformers import AutoTokenizer
    from verl.utils.dataset.multiturn_sft_dataset import MultiTurnSFTDataset

    rows = numina_rows(8)
    rows[5]["solution"] = "long " * 300 + "\\boxed{1}"
    path = write_jsonl(tmp_path / "in.jsonl", rows)
    args = ["--input", str(path), "--max-length", "64", "--tokenizer", str(tiny.model_dir)]
    opts = PrepOptions(tmp_path / "e", "local", path, max_length=64, tokenizer=str(tiny.model_dir), over_length="error")
    with pytest.raises(DataPrepError, match=r"line 6: field 'messages' is \d+ tokens in the chat format, more than"):
        prepare(numina.SPEC, opts)
    # by default over-length rows are skipped (even under --on-bad-row error), counted and every one listed
    got = numina.main([*args, "--out", str(tmp_path / "o")])
    assert got["skipped"] == {"longer than max_length": 1} and got["train_rows"] == 7
    assert got["over_length"] == {"policy": "skip", "max_length": 64, "skipped_rows": [f"{path}: line 6"]}
    assert got["token_lengths"]["max"] <= 64
    # verl's dataset, failing on any row longer than max_length, reads every row at the length we measured
    tokenizer = AutoTokenizer.from_pretrained(tiny.model_dir)
    config = {"max_length": 64, "truncation": "error", "pad_mode": "no_padding"}
    dataset = MultiTurnSFTDataset(str(tmp_path / "o" / "train.parquet"), tokenizer, config)
    ours = token_lengths(tokenizer, [list(map(dict, m)) for m in read(tmp_path / "o").messages])
    assert [len(dataset[i]["input_ids"]) for i in range(len(dataset))] == ours
    assert max(ours) == got["token_lengths"]["max"]


def test_an_interrupted_write_leaves_no_parquet_and_keeps_an_earlier_one_whole(tmp_path, monkeypatch):
    path = write_jsonl(tmp_path / "in.jsonl", numina_rows(10))
    out = tmp_path / "o"

    def crash(examples, tmp, fmt="chat"):
        Path(tmp).write_bytes(b"PAR1 half a file")
        raise KeyboardInterrupt

    with monkeypatch.context() as patch:
        patch.setattr(common, "write_parquet", crash)
        with pytest.raises(KeyboardInterrupt):
            numina.main(["--input", str(path), "--out", str(out)])
    assert list(out.iterdir()) == []  # no parquet, no report, no temp file
    numina.main(["--input", str(path), "--out", str(out), "--val-size", "2"])
    before = (out / "train.parquet").read_bytes()
    monkeypatch.setattr(common, "write_parquet", crash)
    with pytest.raises(KeyboardInterrupt):
        numina.main(["--input", str(path), "--out", str(out), "--n", "3"])
    assert (out / "train.parquet").read_bytes() == before and not (out / "report.json").exists()
    assert sorted(p.name for p in out.iterdir()) == ["train.parquet", "val.parquet"]


HUB_CASES = [
    (gsm8k, ("openai/gsm8k", "main"), {"question": "q", "answer": "2 + 2 = <<2+2=4>>4\n#### 1,004"}, "1004"),
    (math_prep, ("DigitalLearningGmbH/MATH-lighteval", None), {"problem": "p", "solution": "$\\boxed{5}$"}, "5"),
    (numina, ("AI-MO/NuminaMath-CoT", None), {"problem": "p", "solution": "\\boxed{x^2}", "source": "amc"}, "x^2"),
    (cft, ("TIGER-Lab/WebInstruct-CFT", "WebInstruct-CFT-50K"), {"instruction": "i", "input": "q", "output": "o"}, ""),
]


@pytest.mark.parametrize("module, hub, row, gold", HUB_CASES, ids=[case[0].SPEC.name for case in HUB_CASES])
def test_the_hub_path_loads_the_recorded_dataset(tmp_path, monkeypatch, module, hub, row, gold):
    calls = []

    def fake_load_dataset(path, name=None, split=None):
        calls.append((path, name, split))
        return datasets.Dataset.from_list([row] * 5 + [{key: None for key in row}])

    monkeypatch.setattr(datasets, "load_dataset", fake_load_dataset)
    got = module.main(["--out", str(tmp_path / "o"), "--limit", "6", "--on-bad-row", "skip"])
    assert calls == [(*hub, "train[:6]")] and got["source"] == "hub"
    assert (got["train_rows"], got["skipped_rows"]) == (5, 1)
    assert set(read(tmp_path / "o").gold) == {gold}
    assert got["skipped_examples"].popitem()[1][0].startswith(f"hub dataset {hub[0]}")
    with pytest.raises(DataPrepError, match=f"hub dataset {hub[0]}.* split train: row 5: field"):
        prepare(module.SPEC, PrepOptions(out=tmp_path / "e"))


@needs_data
def test_written_gsm8k_parquet_trains_two_steps(tiny, tmp_path):
    out = tmp_path / "gsm8k"
    got = gsm8k.main(
        ["--input", str(GSM8K_TRAIN), "--limit", "600", "--out", str(out), "--on-bad-row", "skip"]
        + ["--max-length", "256", "--tokenizer", str(tiny.model_dir)]
    )
    assert got["train_rows"] >= 64, got  # two batches of 32
    overrides = [f"data.train_files={out / 'train.parquet'}", "data.val_files=null", "data.truncation=error"]
    args = tiny_overrides(tiny, tmp_path, steps=2) + overrides
    result = run_module("train", args, tmp_path / "log.jsonl", nproc=2)
    check_ok(result)
    log = read_log(tmp_path / "log.jsonl")
    assert all(math.isfinite(log[step]["train/loss"]) and log[step]["train/loss"] > 0 for step in (1, 2))


@needs_data
def test_every_prep_writes_parquet_that_verls_sft_dataset_reads_with_loss_on_the_assistant_turn(tiny, tmp_path):
    # dft train reads data through verl's MultiTurnSFTDataset; each prep's output must load there and train on
    # its assistant turn (GSM8K also trains end to end below)
    from transformers import AutoTokenizer
    from verl.utils.dataset.multiturn_sft_dataset import MultiTurnSFTDataset

    cft_rows = [{"instruction": "Critique.", "input": f"Q{i}: 1+1? Solution: 3", "output": "Wrong."} for i in range(4)]
    preps = {
        "numina": (numina, write_jsonl(tmp_path / "n.jsonl", numina_rows(6))),
        "math": (math_prep, MATH_TEST),
        "gsm8k": (gsm8k, GSM8K_TRAIN),
        "cft": (cft, write_jsonl(tmp_path / "c.jsonl", cft_rows)),
    }
    tokenizer = AutoTokenizer.from_pretrained(tiny.model_dir)
    config = {"max_length": 4096, "truncation": "right", "pad_mode": "no_padding"}
    for name, (module, path) in preps.items():
        module.main(["--input", str(path), "--limit", "4", "--out", str(tmp_path / name)])
        dataset = MultiTurnSFTDataset(str(tmp_path / name / "train.parquet"), tokenizer, config)
        assert len(dataset) == 4, name
        assert all(dataset[i]["loss_mask"].sum() > 0 for i in range(4)), name


def test_official_format_takes_exactly_the_first_rows_as_the_official_prep_kept_them(tiny, tmp_path):
    from dft.data.training_format import file_format

    rows = numina_rows(12)
    rows[2]["solution"] = "No box here, the answer is 4.\n"  # the official prep kept rows without \boxed{}
    rows[4]["problem"] = "  Spaced problem?  "  # and strips nothing
    rows[5]["solution"] = "long " * 300 + "\\boxed{1}"  # over max_length: kept, training cuts it on the right
    path = write_jsonl(tmp_path / "in.jsonl", rows)
    args = ["--input", str(path), "--format", "official", "--n", "8", "--selection", "first", "--max-length", "64",
            "--tokenizer", str(tiny.model_dir), "--over-length", "truncate", "--out", str(tmp_path / "o")]  # fmt: skip
    got = numina.main(args)
    assert (got["train_rows"], got["skipped_rows"], got["format"]) == (8, 0, "official")
    train = read(tmp_path / "o")
    assert list(train.id) == [f"numina-{i}" for i in range(8)]
    for i, messages in enumerate(train.messages):
        assert [(m["role"], m["content"]) for m in messages] == [("user", rows[i]["problem"]),
                                                                 ("assistant", rows[i]["solution"])]  # fmt: skip
    assert train.gold[2] == "" and train.gold[3] == "6"
    assert file_format(tmp_path / "o" / "train.parquet") == "official"
    # the chat format needs a box, so the same selection skips row 2 and reaches past row 7
    chat = numina.main([*args[:2], "--n", "8", "--selection", "first", "--on-bad-row", "skip", "--out",
                        str(tmp_path / "c")])  # fmt: skip
    assert list(read(tmp_path / "c").id)[-1] == "numina-8" and chat["skipped_rows"] == 1


def test_a_row_left_without_loss_tokens_by_truncation_is_refused(tiny, tmp_path):
    rows = numina_rows(4)
    rows[1]["problem"] = "very " * 200 + "long problem?"
    path = write_jsonl(tmp_path / "in.jsonl", rows)
    for fmt in ("chat", "official"):
        opts = PrepOptions(tmp_path / fmt, "local", path, max_length=64, tokenizer=str(tiny.model_dir),
                           over_length="truncate", format=fmt)  # fmt: skip
        with pytest.raises(DataPrepError, match=r"line 2: field 'messages' has no loss token within --max-length 64"):
            prepare(numina.SPEC, opts)
