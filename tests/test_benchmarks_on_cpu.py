"""CPU tests for dft.eval.benchmarks: every benchmark loads from the real files in ../shared/data with the right
count and known golds; wrong files (the 5,000-problem MATH test set named math500, missing fields, duplicate
ids) are refused with messages that say where; the hub path with a fake loader. Reading rows, fields and golds
is dft.data.problems' (tests/test_problems_on_cpu.py)."""

import json
import os
from pathlib import Path

import datasets
import pytest

from dft.data.problems import Problem
from dft.eval.benchmarks import BENCHMARKS, PAPER_BENCHMARKS, BenchmarkDataError, default_data_dir, load_benchmark

DATA_DIR = Path(os.environ.get("DFT_DATA_DIR") or Path(__file__).resolve().parents[1].parent / "shared" / "data")
needs_data = pytest.mark.skipif(not DATA_DIR.is_dir(), reason=f"benchmark data not found at {DATA_DIR}")

COUNTS = {
    "math500": 500,
    "minerva_math": 272,
    "olympiadbench": 675,
    "aime24": 30,
    "amc23": 40,
    "aime25": 30,
    "gsm8k": 1319,
    "math_full_test": 5000,
}

# (benchmark, id, gold), read off the files by hand: first records, last records, and golds that exercise the
# extraction (nested braces in \boxed{}, scientific notation, $-stripping, float -> int, thousands separators).
KNOWN_GOLDS = [
    ("math500", "test/precalculus/807.json", r"\left( 3, \frac{\pi}{2} \right)"),
    ("math500", "test/intermediate_algebra/1994.json", "p - q"),
    ("math500", "test/geometry/615.json", r"106^\circ"),
    ("minerva_math", "0", "1.6"),
    ("minerva_math", "1", "4.5e33"),
    ("minerva_math", "271", "10.1"),
    ("olympiadbench", "1606", "2"),
    ("olympiadbench", "1610", r"\frac{1}{2 n+2}"),
    ("olympiadbench", "1612", "2^{1009}"),
    ("aime24", "60", "204"),
    ("aime24", "61", "113"),
    ("aime24", "89", "902"),
    ("amc23", "0", "27"),
    ("amc23", "1", "36"),
    ("amc23", "49", "8"),
    ("aime25", "0", "468"),
    ("aime25", "1", "49"),
    ("aime25", "29", "735"),
    ("gsm8k", "0", "18"),
    ("gsm8k", "2", "70000"),
    ("gsm8k", "1318", "14"),
    ("math_full_test", "0", "2"),
    ("math_full_test", "2", r"\dfrac{9}{7}"),
    ("math_full_test", "4999", r"\begin{pmatrix} 1 \\ -2 \\ -1 \end{pmatrix}"),
]


@pytest.fixture(scope="module")
def loaded():
    """Every benchmark, loaded once from the real files (skips the tests that use it where the data is absent)."""
    if not DATA_DIR.is_dir():
        pytest.skip(f"benchmark data not found at {DATA_DIR}")
    return {name: load_benchmark(name, data_dir=DATA_DIR) for name in COUNTS}


def _write_jsonl(path: Path, rows: list[dict]) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text("".join(json.dumps(row) + "\n" for row in rows), encoding="utf-8")
    return path


def test_registry_covers_the_paper_and_extras():
    # tiny_math is made by code, of any size (the toy scale's held-out word problems)
    assert {name: spec.count for name, spec in BENCHMARKS.items()} == {**COUNTS, "tiny_math": None}
    assert set(PAPER_BENCHMARKS) <= set(COUNTS)


def test_a_benchmark_made_by_code_loads_at_any_size(tmp_path):
    rows = [{"id": f"tiny-{i}", "problem": f"What is {i} + 1?", "gold": str(i + 1)} for i in range(7)]
    _write_jsonl(tmp_path / "tiny_math" / "test.jsonl", rows)
    problems = load_benchmark("tiny_math", data_dir=tmp_path)
    assert [(p.id, p.gold) for p in problems] == [(r["id"], r["gold"]) for r in rows]


def test_default_data_dir_is_shared_data_or_env(monkeypatch):
    monkeypatch.delenv("DFT_DATA_DIR", raising=False)
    assert default_data_dir() == Path(__file__).resolve().parents[1].parent / "shared" / "data"
    monkeypatch.setenv("DFT_DATA_DIR", "/somewhere/else")
    assert default_data_dir() == Path("/somewhere/else")


@pytest.mark.parametrize("name", sorted(COUNTS))
def test_every_benchmark_loads_with_its_count(loaded, name):
    problems = loaded[name]
    assert len(problems) == COUNTS[name]
    assert all(isinstance(p, Problem) for p in problems)
    assert len({p.id for p in problems}) == len(problems)
    for p in problems:
        assert p.problem and p.problem == p.problem.strip(), p.id
        assert p.gold and p.gold == p.gold.strip(), p.id


@pytest.mark.parametrize("name,problem_id,gold", KNOWN_GOLDS)
def test_known_golds(loaded, name, problem_id, gold):
    by_id = {p.id: p for p in loaded[name]}
    assert by_id[problem_id].gold == gold


def test_problem_texts_are_the_right_fields(loaded):
    assert loaded["math500"][0].problem.startswith("Convert the point $(0,3)$ in rectangular coordinates")
    assert loaded["olympiadbench"][0].problem.startswith("Xenia and Sergey play the following game.")
    assert loaded["gsm8k"][0].problem.startswith("Janet\u2019s ducks lay 16 eggs per day.")
    assert loaded["aime25"][0].problem.startswith("Six points $ A, B, C, D, E, $ and $ F $ lie in a straight line")


def test_golds_need_no_further_unpacking(loaded):
    """AMC/GSM8K golds are plain integers; OlympiadBench multi-part golds lose every $, not just the outer ones."""
    assert all(p.gold.lstrip("-").isdigit() for p in loaded["amc23"] + loaded["gsm8k"])
    olympiad = {p.id: p.gold for p in loaded["olympiadbench"]}
    assert any(gold == "69,84" for gold in olympiad.values())


def test_math500_is_a_subset_of_the_full_test_with_the_same_golds(loaded):
    full = {p.problem: p.gold for p in loaded["math_full_test"]}
    assert all(full[p.problem] == p.gold for p in loaded["math500"])


@needs_data
def test_full_math_test_named_math500_is_refused(tmp_path):
    (tmp_path / "math500").mkdir()
    (tmp_path / "math500" / "test.jsonl").symlink_to(DATA_DIR / "math_full_test" / "test.jsonl")
    with pytest.raises(BenchmarkDataError) as err:
        load_benchmark("math500", data_dir=tmp_path)
    message = str(err.value)
    assert str(tmp_path / "math500" / "test.jsonl") in message
    assert "5000" in message and "500" in message
    assert "math_full_test" in message


def test_wrong_count_is_refused_naming_file_and_counts(tmp_path):
    rows = [{"id": i, "problem": f"p{i}", "answer": "1", "question": "q", "url": "u"} for i in range(39)]
    path = _write_jsonl(tmp_path / "amc23" / "test.jsonl", rows)
    with pytest.raises(BenchmarkDataError, match=r"has 39 records, but benchmark 'amc23' has 40") as err:
        load_benchmark("amc23", data_dir=tmp_path)
    assert str(path) in str(err.value)


def test_missing_field_names_file_line_and_field(tmp_path):
    rows = [{"id": i, "problem": f"Problem {i}", "answer": str(i)} for i in range(30)]
    del rows[6]["answer"]
    path = _write_jsonl(tmp_path / "aime24" / "test.jsonl", rows)
    with pytest.raises(BenchmarkDataError) as err:
        load_benchmark("aime24", data_dir=tmp_path)
    assert str(err.value) == f"{path}: line 7: field 'answer' is missing"


def test_unboxed_solution_names_file_line_and_field(tmp_path):
    rows = [{"idx": i, "problem": f"P{i}", "solution": f"so \\boxed{{{i}}}"} for i in range(272)]
    rows[3]["solution"] = "no boxed answer here"
    path = _write_jsonl(tmp_path / "minerva_math" / "test.jsonl", rows)
    with pytest.raises(BenchmarkDataError, match=r"line 4: field 'solution' has no \\boxed") as err:
        load_benchmark("minerva_math", data_dir=tmp_path)
    assert str(path) in str(err.value)


def test_duplicate_ids_are_refused(tmp_path):
    rows = [{"id": i, "problem": f"Problem {i}", "answer": str(i)} for i in range(30)]
    rows[20]["id"] = 5
    _write_jsonl(tmp_path / "aime24" / "test.jsonl", rows)
    with pytest.raises(BenchmarkDataError, match=r"line 21: duplicate id '5' \(first at line 6\)"):
        load_benchmark("aime24", data_dir=tmp_path)


def test_unknown_benchmark_and_source_are_errors():
    with pytest.raises(ValueError, match="known: math500, minerva_math"):
        load_benchmark("math5000")
    with pytest.raises(ValueError, match="expected 'local' or 'hub'"):
        load_benchmark("math500", source="s3")


def test_missing_file_says_where_it_looked(tmp_path):
    with pytest.raises(FileNotFoundError, match="DFT_DATA_DIR"):
        load_benchmark("aime24", data_dir=tmp_path)


# --- hub path, with datasets.load_dataset replaced by a fake (the hub is not reachable here) ---


def _fake_hub(monkeypatch, rows_by_source: dict) -> list:
    """Make datasets.load_dataset return ``rows_by_source[(path, config, split)]``; return the list of calls."""
    calls = []

    def fake_load_dataset(path, name=None, split=None, **kwargs):
        calls.append((path, name, split))
        return rows_by_source[(path, name, split)]

    monkeypatch.setattr(datasets, "load_dataset", fake_load_dataset)
    return calls


def test_hub_math500_maps_fields(monkeypatch):
    rows = [{"problem": f" P{i} ", "solution": "...", "answer": f"{i}", "subject": "x", "level": 1,
             "unique_id": f"test/x/{i}.json"} for i in range(500)]  # fmt: skip
    calls = _fake_hub(monkeypatch, {("HuggingFaceH4/MATH-500", None, "test"): rows})
    problems = load_benchmark("math500", source="hub")
    assert calls == [("HuggingFaceH4/MATH-500", None, "test")]
    assert problems[3] == Problem("test/x/3.json", "P3", "3")


def test_hub_olympiadbench_uses_its_config_and_gold_list(monkeypatch):
    rows = [{"id": 1000 + i, "question": f"Q{i}", "final_answer": [f"${i}$,${i + 1}$"]} for i in range(675)]
    calls = _fake_hub(monkeypatch, {("Hothan/OlympiadBench", "OE_TO_maths_en_COMP", "train"): rows})
    problems = load_benchmark("olympiadbench", source="hub")
    assert calls == [("Hothan/OlympiadBench", "OE_TO_maths_en_COMP", "train")]
    assert problems[2] == Problem("1002", "Q2", "2,3")


def test_hub_gsm8k_and_math_full_test_use_row_positions_as_ids(monkeypatch):
    gsm = [{"question": f"Q{i}", "answer": f"work\n#### 1,{i:03d}"} for i in range(1319)]
    math = [{"problem": f"P{i}", "level": "Level 1", "type": "Algebra", "solution": f"\\boxed{{{i}}}"}
            for i in range(5000)]  # fmt: skip
    _fake_hub(monkeypatch, {("openai/gsm8k", "main", "test"): gsm,
                            ("DigitalLearningGmbH/MATH-lighteval", None, "test"): math})  # fmt: skip
    assert load_benchmark("gsm8k", source="hub")[5] == Problem("5", "Q5", "1005")
    assert load_benchmark("math_full_test", source="hub")[4999] == Problem("4999", "P4999", "4999")


def test_hub_wrong_count_and_missing_field_name_the_dataset(monkeypatch):
    rows = [{"id": i, "problem": f"P{i}", "answer": str(i)} for i in range(29)]
    _fake_hub(monkeypatch, {("HuggingFaceH4/aime_2024", None, "train"): rows})
    with pytest.raises(BenchmarkDataError, match=r"hub dataset HuggingFaceH4/aime_2024 split train has 29 records"):
        load_benchmark("aime24", source="hub")
    rows = [{"question": f"Q{i}", "answer": 27.0} for i in range(40)]
    del rows[12]["answer"]
    _fake_hub(monkeypatch, {("math-ai/amc23", None, "test"): rows})
    with pytest.raises(BenchmarkDataError, match=r"math-ai/amc23 split test: row 12: field 'answer' is missing"):
        load_benchmark("amc23", source="hub")


def test_hub_without_a_recorded_source_is_an_error(monkeypatch):
    _fake_hub(monkeypatch, {})
    with pytest.raises(ValueError, match="aime25.*no hub source.*source='local'"):
        load_benchmark("aime25", source="hub")
