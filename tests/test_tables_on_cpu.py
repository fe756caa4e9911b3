"""The paper's published numbers and the tables built from evaluation summaries."""

import json

import pytest

from dft.tables import build_table, load_paper_tables, main

PAPER = load_paper_tables()
BENCHMARKS = PAPER["benchmarks"]


@pytest.mark.parametrize("table", ["table1", "table2", "table3"])
def test_published_rows_agree_with_their_own_averages(table):
    # typed once from the paper: every row's Avg. is the mean of its five benchmarks, to the paper's rounding
    for model, methods in PAPER[table]["rows"].items():
        for method, row in methods.items():
            assert sum(row[b] for b in BENCHMARKS) / 5 == pytest.approx(row["avg"], abs=0.006), (table, model, method)


def test_tables_share_the_rows_the_paper_repeats():
    # Table 2's DFT rows are Table 1's; Table 3's base row is Table 1's Qwen2.5-Math-1.5B base
    for model, methods in PAPER["table2"]["rows"].items():
        assert methods["DFT"] == PAPER["table1"]["rows"][model]["DFT"]
    assert PAPER["table3"]["rows"]["Qwen2.5-Math-1.5B"]["Base"] == PAPER["table1"]["rows"]["Qwen2.5-Math-1.5B"]["Base"]


def summary(scores: dict[str, float]) -> dict:
    """A summary.json as dft.eval writes it, with avg@16 fractions."""
    return {
        "benchmarks": {b: {"avg@16": s / 100, "problems": 10, "samples_per_problem": 16} for b, s in scores.items()}
    }


def test_table1_puts_ours_beside_the_paper_with_differences_and_bold_best():
    base = dict(zip(BENCHMARKS, [30.0, 10.0, 15.0, 5.0, 20.0]))  # mean 16.0
    dft = dict(zip(BENCHMARKS, [60.0, 20.0, 25.0, 10.0, 35.0]))  # mean 30.0
    text = build_table("table1", {"Qwen2.5-Math-1.5B/Base": summary(base), "Qwen2.5-Math-1.5B/DFT": summary(dft)})
    rows = {line.split(" | ")[1]: line for line in text.splitlines() if line.startswith("| Qwen2.5-Math-1.5B")}
    assert "| 30.00 / 31.66 (-1.66) |" in rows["Base"]
    assert rows["Base"].endswith("| 16.00 / 15.92 (+0.08) |")
    assert rows["DFT"].endswith("| **30.00** / 31.58 (-1.58) |")
    assert "| – / 43.76 |" in rows["SFT"]
    # groups without runs show the paper's numbers, its best bold
    llama = [line for line in text.splitlines() if line.startswith("| LLaMA-3.1-8B | DFT")][0]
    assert llama.endswith("| – / **11.02** |")


def test_a_run_for_a_model_the_table_does_not_have_is_an_error():
    with pytest.raises(ValueError, match=r"name no model of table2"):
        build_table("table2", {"Qwen2.5-Math-72B/DFT": summary({})})


def test_cli_reads_summary_files(tmp_path, capsys):
    path = tmp_path / "summary.json"
    path.write_text(json.dumps(summary(dict(zip(BENCHMARKS, [64.0, 25.0, 31.0, 8.0, 48.0])))))
    main(["table3", "--run", f"Qwen2.5-Math-1.5B/DFT (offline)={path}", "--out", str(tmp_path / "t3.md")])
    out = capsys.readouterr().out
    assert "| Qwen2.5-Math-1.5B | DFT (offline) | **64.00** / 64.71 (-0.71) |" in out
    assert (tmp_path / "t3.md").read_text().strip() == out.strip()


def test_a_run_for_a_method_the_table_does_not_have_is_an_error():
    with pytest.raises(
        ValueError, match=r"name no method of table1; methods: \{'Qwen2.5-Math-1.5B': \['Base', 'SFT', 'DFT'\]"
    ):
        build_table("table1", {"Qwen2.5-Math-1.5B/IWSFT": {"benchmarks": {}}})
