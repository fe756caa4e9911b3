"""The paper's published numbers and the tables built from evaluation summaries, checked against the protocol."""

import json

import pytest

from dft.eval.benchmarks import BENCHMARKS as SPECS
from dft.report.tables import build_table, load_paper_tables, main

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


def summary(scores: dict[str, float], prompt="qwen-boxed", n=16, problems=None, **sampling) -> dict:
    """A summary.json as dft eval writes it under the paper's protocol (unless told otherwise), avg@n fractions."""
    return {
        "prompt_template": prompt,
        "sampling": {"n": n, "temperature": 1.0, "top_p": 1.0, "max_new_tokens": 4096, "seed": 0, **sampling},
        "benchmarks": {b: {f"avg@{n}": s / 100, "problems": problems or SPECS[b].count, "samples_per_problem": n}
                       for b, s in scores.items()},
    }  # fmt: skip


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


SCORES = dict(zip(BENCHMARKS, [40.0, 10.0, 15.0, 5.0, 20.0]))


def test_a_smoke_summary_is_refused_naming_the_file_and_each_deviation(tmp_path, capsys):
    path = tmp_path / "smoke.json"
    path.write_text(json.dumps(summary(SCORES, n=2, problems=3, temperature=0.7)))
    with pytest.raises(SystemExit) as exit_info:
        main(["table1", "--run", f"Qwen2.5-Math-1.5B/DFT={path}"])
    message = capsys.readouterr().err
    assert exit_info.value.code == 2 and message.startswith("error: ")
    assert f"{path} (Qwen2.5-Math-1.5B/DFT)" in message and "--allow-deviations" in message
    assert "math500: 3 of 500 problems" in message and "aime24: 2 samples per problem, not 16" in message
    assert "sampling.temperature 0.7, not 1.0" in message


def test_a_wrong_prompt_or_a_missing_benchmark_is_a_deviation():
    llama = {"LLaMA-3.1-8B/DFT": summary(SCORES, prompt="chat-cot")}
    with pytest.raises(ValueError, match=r"prompt 'chat-cot', not LLaMA-3.1-8B's 'llama-base-boxed'"):
        build_table("table1", llama)
    partial = {"Qwen2.5-Math-7B/SFT": summary({"math500": 60.0})}
    with pytest.raises(ValueError, match=r"minerva_math: not evaluated"):
        build_table("table1", partial)


def test_allowed_deviations_are_marked_never_bold_and_listed():
    runs = {"Qwen2.5-Math-1.5B/SFT": summary(SCORES), "Qwen2.5-Math-1.5B/DFT": summary({"math500": 90.0}, n=2)}
    text = build_table("table1", runs, allow_deviations=True)
    rows = {line.split(" | ")[1]: line for line in text.splitlines() if line.startswith("| Qwen2.5-Math-1.5B")}
    assert "| 90.00† / " in rows["DFT"] and "| – / " in rows["DFT"]  # marked; missing benchmarks show as –
    assert "| **40.00** / " in rows["SFT"]  # the protocol run is the best shown, not the marked 90
    assert "- Qwen2.5-Math-1.5B/DFT: math500: 2 samples per problem, not 16; minerva_math: not evaluated" in text


@pytest.mark.parametrize("content, message", [
    ("{not json", "not valid JSON"),
    ("[1, 2]", "not an evaluation summary"),
    ('{"benchmarks": {"math500": {"avg@16": 0.5}}}', "benchmark 'math500' lacks samples_per_problem"),
])  # fmt: skip
def test_malformed_summaries_are_messages_naming_the_file(tmp_path, capsys, content, message):
    path = tmp_path / "summary.json"
    path.write_text(content)
    with pytest.raises(SystemExit) as exit_info:
        main(["table1", "--run", f"Qwen2.5-Math-1.5B/DFT={path}"])
    assert exit_info.value.code == 2 and capsys.readouterr().err.startswith(f"error: {path}: {message}")
    with pytest.raises(SystemExit):
        main(["table1", "--run", f"Qwen2.5-Math-1.5B/DFT={tmp_path / 'absent.json'}"])
    assert f"{tmp_path / 'absent.json'}: no such evaluation summary" in capsys.readouterr().err


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
