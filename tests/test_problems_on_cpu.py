"""CPU tests for dft.data.problems: one reader of rows, fields and golds for training data and evaluation.

The same raw row gives the same gold through a data preparation and through a benchmark loader (GSM8K, MATH);
a problem is read back from a stored row by one rule (chat-cot user turn in the chat format, the bare problem
in the official format, anything else refused); positions name the file and line."""

import json

import pyarrow as pa
import pyarrow.parquet as pq
import pytest

from dft.data import gsm8k
from dft.data import math as math_prep
from dft.data.prep import Example, write_parquet
from dft.data.problems import (
    BadRow,
    Problem,
    SourceError,
    gsm8k_gold,
    last_boxed,
    problem_of_row,
    read_jsonl,
    read_problems,
)
from dft.data.training_format import user_turn
from dft.eval.benchmarks import BENCHMARKS

GSM8K_ANSWER = "Natalia sold 48/2 = <<48/2=24>>24 clips in May.\n#### 1,072"


def write_jsonl(path, rows):
    path.write_text("".join((r if isinstance(r, str) else json.dumps(r)) + "\n" for r in rows), encoding="utf-8")
    return path


def test_gsm8k_gold_is_the_same_for_training_and_evaluation():
    row = {"question": "How many clips?", "answer": GSM8K_ANSWER}
    trained = gsm8k.convert(row, {})
    evaluated = BENCHMARKS["gsm8k"].local.problem({**row, "idx": 3}, 0)
    assert trained.gold == evaluated.gold == gsm8k_gold(GSM8K_ANSWER) == "1072"
    assert last_boxed(trained.assistant) == "1072"


def test_math_gold_is_the_same_for_training_and_evaluation():
    row = {"problem": "P", "solution": r"So $x = \boxed{\frac{1}{2}}$."}
    assert math_prep.convert(row, {}).gold == BENCHMARKS["math_full_test"].local.problem({**row, "idx": 0}, 0).gold
    with pytest.raises(BadRow, match=r"field 'solution' has no \\boxed\{\} answer") as bad:
        math_prep.convert({"problem": "P", "solution": "no box"}, {})
    assert bad.value.key == "field 'solution' has no \\boxed{} answer"


def chat_row(problem: str, gold: str, fmt: str) -> Example:
    return Example(user_turn(problem, fmt), "solution \\boxed{" + gold + "}", gold, "x", f"id-{problem}")


@pytest.mark.parametrize("fmt", ["chat", "official"])
def test_a_problem_is_read_back_from_a_prepared_parquet_in_its_format(tmp_path, fmt):
    path = tmp_path / "train.parquet"
    write_parquet([chat_row("What is 1+1?", "2", fmt), chat_row("And 2+2?", "4", fmt)], path, fmt)
    expected = [Problem("id-What is 1+1?", "What is 1+1?", "2"), Problem("id-And 2+2?", "And 2+2?", "4")]
    assert read_problems(path) == expected


def test_a_chat_user_turn_that_is_not_chat_cot_is_refused_naming_the_row(tmp_path):
    path = tmp_path / "train.parquet"
    rows = [chat_row("What is 1+1?", "2", "chat"), chat_row("bare problem", "4", "official")]
    write_parquet(rows, path, "chat")  # the second row's user turn lacks the CoT instruction
    with pytest.raises(SourceError, match=r"train.parquet: row 1: field 'messages' has a user turn that is not"):
        read_problems(path)
    # a file made elsewhere (no recorded format) is read as chat: the same refusal
    pq.write_table(pq.read_table(path).replace_schema_metadata({}), path)
    with pytest.raises(SourceError, match="row 1: field 'messages'"):
        read_problems(path)


def test_the_gold_is_gold_else_answer_else_the_boxed_solution():
    assert problem_of_row({"problem": "p", "gold": "1", "answer": "2"})[1:] == ("1", ("problem", "gold"))
    assert problem_of_row({"problem": "p", "answer": 2})[1:] == ("2", ("problem", "answer"))
    assert problem_of_row({"problem": "p", "solution": r"\boxed{3}"})[1:] == ("3", ("problem", "solution"))
    with pytest.raises(BadRow, match="'gold' is missing"):
        problem_of_row({"problem": "p"})


def test_a_problems_jsonl_names_file_and_line(tmp_path):
    path = write_jsonl(tmp_path / "p.jsonl", [{"id": "a", "problem": " Tom has 2. ", "answer": "5"}, "",
                                              {"id": 7, "problem": "Anna has 3.", "answer": 3}])  # fmt: skip
    assert read_problems(path) == [Problem("a", "Tom has 2.", "5"), Problem("7", "Anna has 3.", "3")]
    write_jsonl(path, [{"id": 7, "problem": "x", "answer": "1"}, {"id": 7, "problem": "again", "answer": "1"}])
    with pytest.raises(SourceError, match=r"p.jsonl: line 2: duplicate id '7' \(first at line 1\)"):
        read_problems(path)
    write_jsonl(path, ['{"id": 1, "problem": "p", "answer": "1"}', '{"id": 2,'])
    with pytest.raises(SourceError, match=r"p.jsonl: line 2: the line is not valid JSON"):
        read_problems(path)
    with pytest.raises(SourceError, match="nothing.jsonl: no such file"):
        read_problems(tmp_path / "nothing.jsonl")


def test_rows_keep_positions_and_unreadable_lines():
    import tempfile
    from pathlib import Path

    with tempfile.TemporaryDirectory() as tmp:
        path = write_jsonl(Path(tmp) / "r.jsonl", [{"a": 1}, "", "[1, 2]", "{bad"])
        rows = read_jsonl(path)
        assert [rows.label(i) for i in range(len(rows))] == [f"{path}: line {n}" for n in (1, 3, 4)]
        assert rows.rows[0] == {"a": 1} and all(isinstance(r, BadRow) for r in rows.rows[1:])
        assert rows.rows[1].key == "not a JSON object" and rows.rows[2].key == "invalid JSON"


def test_parquet_rows_are_read_lazily_with_a_limit(tmp_path):
    path = tmp_path / "t.parquet"
    pq.write_table(pa.table({"problem": ["a", "b", "c"], "gold": ["1", "2", "3"]}), path)
    assert [p.problem for p in read_problems(path, limit=2)] == ["a", "b"]
