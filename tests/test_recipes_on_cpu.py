"""Every recipe dry-runs, prints the commands it would run, and each of them composes (dft.cli.recipe_check)."""

import os
import shlex
import subprocess
from collections import Counter
from pathlib import Path

import pytest
from conftest import REPO

from dft.cli.recipe_check import CommandError, check_command, check_lines
from dft.models.checkpoints import resolve_model

RECIPES = sorted(p.parent.name for p in (REPO / "recipes").glob("*/run.sh"))
FIVE = 5


def dry_run(recipe, *overrides, **env):
    result = subprocess.run(
        ["bash", f"recipes/{recipe}/run.sh", *overrides], cwd=REPO, capture_output=True, text=True,
        env=dict(os.environ, DRY_RUN="1", **env), timeout=60,
    )  # fmt: skip
    assert result.returncode == 0, result.stderr
    return [line for line in result.stdout.splitlines() if line.strip()]


def programs(lines):
    return Counter(check_lines(lines)[0])


def test_there_is_a_recipe_for_every_table_and_figure_with_a_readme():
    """The paper's three tables and three figures each have a recipe; every recipe folder (found, not listed) has a
    README that gives its GPU-hours and its dry run."""
    assert {"table1", "table2", "table3"} <= set(RECIPES)
    assert {name.split("_")[0] for name in RECIPES if name.startswith("fig")} == {"fig1", "fig2", "fig3"}
    for recipe in RECIPES:
        readme = (REPO / "recipes" / recipe / "README.md").read_text()
        assert "GPU-hours" in readme and "DRY_RUN=1" in readme, recipe


@pytest.mark.parametrize("recipe", RECIPES)
def test_every_printed_command_composes(recipe):
    lines = dry_run(recipe)
    composed, errors = check_lines(lines)
    assert not errors, "\n".join(errors)
    assert len(composed) == len(lines)


def test_table_recipes_run_what_the_tables_need():
    assert programs(dry_run("table1")) == Counter(
        {
            "dft data numina": 1,
            "dft train": 2 * FIVE,
            "dft eval": 3 * FIVE,
            "dft regrade": 3 * FIVE,
            "dft tables": 2,
        }
    )
    assert programs(dry_run("table2")) == Counter(
        {
            "dft data numina": 1,
            "dft ref_logprobs": FIVE,
            "dft train": 2 * FIVE,
            "dft eval": 2 * FIVE,
            "dft regrade": 2 * FIVE,
            "dft tables": 2,
        }  # fmt: skip
    )
    table3 = programs(dry_run("table3"))
    assert table3["dft train"] == 4 and table3["verl.trainer.main_ppo"] == 2 and table3["dft eval"] == 7
    assert table3["dft ref_logprobs"] == 2 and table3["dft data rft"] == 1 and table3["dft data rl"] == 1


def test_hydra_overrides_reach_every_training_run_and_win():
    lines = dry_run("table1", "optim.lr=1e-5", "data.max_length=1024", MODELS="llama-3.1-8b", LOSSES="dft")
    trainings = [line for line in lines if " -m dft train " in line]
    assert len(trainings) == 1
    argv = shlex.split(trainings[0])
    assert argv[-2:] == ["optim.lr=1e-5", "data.max_length=1024"] and "preset=llama-3.1-8b" in argv
    table = next(line for line in lines if "dft tables" in line)
    assert "LLaMA-3.1-8B/DFT=runs/eval/llama-3.1-8b-dft/summary.json" in shlex.split(table)


def test_knobs_change_the_commands():
    lines = dry_run("fig3_lr_bs", LRS="1e-4 5e-5", BATCH_SIZES="64 256", LOSSES="dft", NPROC_PER_NODE="4")
    trainings = [shlex.split(line) for line in lines if " -m dft train " in line]
    # lr 5e-5 at batch 256 is shared by both sweeps: 2 + 2 - 1 runs
    assert len(trainings) == 3
    settings = {(next(x for x in a if x.startswith("optim.lr=")), next(x for x in a if "train_batch_size" in x))
                for a in trainings}  # fmt: skip
    assert settings == {
        ("optim.lr=1e-4", "data.train_batch_size=256"),
        ("optim.lr=5e-5", "data.train_batch_size=256"),
        ("optim.lr=5e-5", "data.train_batch_size=64"),
    }
    assert all("--nproc_per_node=4" in a for a in trainings)


def test_a_command_that_would_fail_at_start_up_is_reported_with_the_reason():
    good = "torchrun --standalone --nproc_per_node=8 -m dft train preset=qwen2.5-math-1.5b loss.name=dft"
    assert check_command(good) == "dft train"
    bad = {
        good + " loss.nmae=dft": "loss.nmae",
        good.replace("loss.name=dft", "loss.name=dtf"): "not a known loss",
        "torchrun --nproc_per_node=8 -m dft ref_logprobs preset=llama-3.2-3b": "ref.output: give the parquet",
        "python -m dft eval model=x sampling.n=4 backend=tgi": "not one of hf, vllm",
        "python -m dft data numina --n 10": "--out",
        "python -m dft tables table9": "invalid choice",
        f"python -m verl.trainer.main_ppo --config-path {REPO}/configs --config-name grpo_trainer "
        "actor_rollout_ref.actor.use_dynamic_bsz=false": "ppo_micro_batch_size",
        # without --config-path, main_ppo looks for the config among verl's own
        "python -m verl.trainer.main_ppo --config-name grpo_trainer": "Cannot find primary config 'grpo_trainer'",
        "python -m somewhere.else": "no check for this program",
    }
    for line, reason in bad.items():
        with pytest.raises(CommandError, match=reason):
            check_command(line)


def test_a_new_entry_point_is_checked_by_what_its_source_declares(tmp_path, monkeypatch):
    """No list to extend: a new data preparation (a SPEC) and a new Hydra command are found and checked."""
    (tmp_path / "new_prep.py").write_text(
        "from dataclasses import replace\nfrom dft.data import math\nSPEC = replace(math.SPEC, name='new_prep')\n"
    )
    (tmp_path / "new_sampler.py").write_text(
        f"import hydra\n@hydra.main(config_path={str(REPO / 'configs')!r}, config_name='eval', version_base=None)\n"
        "def main(cfg):\n    pass\n"
    )
    monkeypatch.syspath_prepend(str(tmp_path))
    assert check_command("python -m new_prep --out data/new --n 5") == "new_prep"
    assert check_command("python -m new_sampler model=m sampling.n=4") == "new_sampler"
    bad = {
        "python -m new_prep --out data/new --n five": "new_prep: .*argument --n: 'five' is not an integer",
        "python -m new_sampler sampling.n=4": r"new_sampler: no value for \['model'\]",
        "python -m new_sampler model=m backend=tgi": "new_sampler: backend=tgi is not one of hf, vllm",
    }
    for line, reason in bad.items():
        with pytest.raises(CommandError, match=reason):
            check_command(line)


def fake_checkpoint(root: Path, step: int, sub: str, weights: bool = True) -> Path:
    (root / "latest_checkpointed_iteration.txt").parent.mkdir(parents=True, exist_ok=True)
    (root / "latest_checkpointed_iteration.txt").write_text(f"{step}\n")
    hf = root / f"global_step_{step}" / sub
    hf.mkdir(parents=True)
    if weights:
        (hf / "model.safetensors").write_bytes(b"")
    return hf


def test_a_run_folder_resolves_to_its_latest_hugging_face_weights(tmp_path):
    assert resolve_model("Qwen/Qwen2.5-Math-1.5B") == "Qwen/Qwen2.5-Math-1.5B"
    assert resolve_model(str(tmp_path)) == str(tmp_path)  # a plain folder is a model folder
    fake_checkpoint(tmp_path / "sft", 390, "huggingface")
    assert resolve_model(str(tmp_path / "sft")) == str(tmp_path / "sft" / "global_step_390" / "huggingface")
    ppo = fake_checkpoint(tmp_path / "ppo", 39, "actor/huggingface")
    assert resolve_model(str(tmp_path / "ppo")) == str(ppo)
    fake_checkpoint(tmp_path / "sharded", 7, "huggingface", weights=False)
    with pytest.raises(FileNotFoundError, match=r"global_step_7: no Hugging Face weights.*dft checkpoints merge"):
        resolve_model(str(tmp_path / "sharded"))


@pytest.mark.parametrize("recipe, table", [("table1", "table1"), ("table2", "table2"), ("table3", "table3")])
def test_the_table_renders_from_the_summaries_the_recipe_writes(recipe, table, tmp_path, capsys):
    import json

    from dft.eval.benchmarks import BENCHMARKS
    from dft.report.tables import main as tables_main
    from dft.report.tables import paper_prompt

    lines = dry_run(recipe, RUNS=str(tmp_path))
    argv = shlex.split(next(line for line in lines if " -m dft tables " in line))
    runs = [argv[i + 1] for i, arg in enumerate(argv) if arg == "--run"]
    expected = {}
    for number, run in enumerate(runs):
        key, path = run.split("=", 1)
        # a distinct avg@16 per run, under the paper's protocol (dft tables checks it)
        score = 0.1 + number / 1000
        metrics = {name: {"avg@16": score, "problems": BENCHMARKS[name].count, "samples_per_problem": 16}
                   for name in ("math500", "minerva_math", "olympiadbench", "aime24", "amc23")}  # fmt: skip
        sampling = {"temperature": 1.0, "top_p": 1.0, "max_new_tokens": 4096}
        Path(path).parent.mkdir(parents=True, exist_ok=True)
        Path(path).write_text(json.dumps({"benchmarks": metrics, "sampling": sampling,
                                          "prompt_template": paper_prompt(key.split("/")[0])}))  # fmt: skip
        expected[key] = f"{100 * score:.2f}"
    tables_main(argv[argv.index(table) :])
    printed = [line for line in capsys.readouterr().out.splitlines() if line.startswith("| ") and "Method" not in line]
    rows = {tuple(cell.strip() for cell in line.split("|")[1:3]): line for line in printed}
    for key, value in expected.items():
        model, method = key.split("/", 1)
        assert f"| {value} / " in rows[(model, method)].replace("**", ""), (key, rows[(model, method)])
    assert (tmp_path / f"{table}.md").exists()


def test_the_papers_rows_train_with_setting_paper_on_the_official_rows():
    lines = dry_run("table1", MODELS="qwen2.5-math-1.5b")
    prep = shlex.split(next(line for line in lines if " -m dft data numina " in line))
    assert prep[prep.index("--format") + 1] == "official" and prep[prep.index("--selection") + 1] == "first"
    for line in (line for line in lines if " -m dft train " in line):
        argv = shlex.split(line)
        assert "setting=paper" in argv and "data.train_files=data/numina-paper/train.parquet" in argv
    corrected = [shlex.split(line) for line in dry_run("table1", SETTING="corrected") if " -m dft train " in line]
    assert all("setting=corrected" in argv and "data.train_files=data/numina/train.parquet" in argv
               for argv in corrected)  # fmt: skip


def test_the_normalization_recipe_trains_both_normalisations_and_renders_one_table(tmp_path, capsys):
    import json

    from dft.report.ablations import main as ablations_main

    lines = dry_run("normalization", RUNS=str(tmp_path))
    trainings = [shlex.split(line) for line in lines if " -m dft train " in line]
    runs = {(next(a for a in argv if a.startswith("loss.name=")),
             next((a for a in argv if "normalization=" in a), "setting=paper's")) for argv in trainings}  # fmt: skip
    assert runs == {(f"loss.name={loss}", norm) for loss in ("sft", "dft")
                    for norm in ("setting=paper's", "loss.normalization=token")}  # fmt: skip
    assert all("setting=paper" in argv for argv in trainings)
    # the official runs are Table 1's folders: the same command, or a finished run would be refused as another's
    table1 = {line for line in dry_run("table1", RUNS=str(tmp_path)) if " -m dft train " in line}
    assert {line for line in lines if " -m dft train " in line and "normalization=" not in line} <= table1
    argv = shlex.split(next(line for line in lines if " -m dft ablations " in line))
    for number, run in enumerate(argv[i + 1] for i, arg in enumerate(argv) if arg == "--run"):
        metrics = {name: {"avg@16": 0.1 + number / 100, "samples_per_problem": 16, "problems": 30}
                   for name in ("math500", "minerva_math", "olympiadbench", "aime24", "amc23")}  # fmt: skip
        path = Path(run.split("=", 1)[1])
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(json.dumps({"benchmarks": metrics}))
    ablations_main(argv[argv.index("normalization") :])
    table = capsys.readouterr().out
    # runs 0-3: SFT/official, SFT/token, DFT/official, DFT/token
    assert "| SFT | official | 10.00 |" in table and "| SFT | token | 11.00 |" in table
    assert "| DFT | official - token | -1.00 | -1.00 | -1.00 | -1.00 | -1.00 | -1.00 |" in table
    assert (tmp_path / "normalization.md").exists()
    path.write_text(json.dumps({"benchmarks": {"aime24": {"avg@16": 0.1}}}))  # not what dft eval writes
    with pytest.raises(SystemExit) as exit_info:
        ablations_main(argv[argv.index("normalization") :])
    assert exit_info.value.code == 2
    assert f"{path}: benchmark 'aime24' lacks samples_per_problem" in capsys.readouterr().err


def test_the_beyond_dft_recipe_trains_each_method_and_renders_its_table_and_alpha_figure(tmp_path, capsys):
    import json

    from dft.report.ablations import main as ablations_main
    from dft.report.figures import main as figures_main

    lines = dry_run("beyond_dft", RUNS=str(tmp_path))
    trainings = [shlex.split(line) for line in lines if " -m dft train " in line]
    losses = Counter(next(a for a in argv if a.startswith("loss.name=")) for argv in trainings)
    assert losses == Counter({"loss.name=sft": 1, "loss.name=dft": 2, "loss.name=asft": 1, "loss.name=prob_power": 4})
    alphas = {a for argv in trainings for a in argv if a.startswith("loss.power_alpha=")}
    assert alphas == {f"loss.power_alpha={a}" for a in ("0.1", "0.5", "1", "2")}
    [asft] = [argv for argv in trainings if "loss.name=asft" in argv]
    [score] = [shlex.split(line) for line in lines if " -m dft ref_logprobs " in line]
    scored = next(a for a in score if a.startswith("ref.output=")).split("=", 1)[1]
    assert "ref.topk=64" in score and f"data.train_files={scored}" in asft
    assert "model.use_fused_kernels=False" in asft
    assert any("loss.full_weight_tokens=[eos,end_of_turn]" in argv for argv in trainings)
    assert all("setting=paper" in argv for argv in trainings)
    table = shlex.split(next(line for line in lines if " -m dft ablations " in line))
    runs = [table[i + 1] for i, arg in enumerate(table) if arg == "--run"]
    for number, run in enumerate(runs):
        metrics = {name: {"avg@16": 0.1 + number / 100, "samples_per_problem": 16, "problems": 30}
                   for name in ("math500", "minerva_math", "olympiadbench", "aime24", "amc23")}  # fmt: skip
        path = Path(run.split("=", 1)[1])
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(json.dumps({"benchmarks": metrics, "average": {"avg@16": 0.1 + number / 100}}))
    ablations_main(table[table.index("beyond") :])
    printed = capsys.readouterr().out
    # runs 0-7: SFT, DFT, DFT + end tokens, ASFT, prob_power at 0.1, 0.5, 1, 2
    assert "| SFT | 10.00 | 10.00 | 10.00 | 10.00 | 10.00 | 10.00 | +0.00 |" in printed
    assert "| prob_power (alpha 2) | 17.00 | 17.00 | 17.00 | 17.00 | 17.00 | 17.00 | +7.00 |" in printed
    assert (tmp_path / "beyond_dft.md").exists()
    figure = shlex.split(next(line for line in lines if " -m dft figures " in line))
    figures_main(figure[figure.index("sweep") :])
    numbers = json.loads((tmp_path / "figures" / "beyond_dft_alpha.pdf.json").read_text())
    assert numbers["methods"]["prob_power"]["values"] == [0.1, 0.5, 1.0, 2.0]
    assert numbers["methods"]["prob_power"]["accuracy"] == pytest.approx([14.0, 15.0, 16.0, 17.0])


def test_the_cft_recipe_prepares_cft_data_trains_each_loss_and_renders_its_table(tmp_path, capsys):
    import json

    from dft.report.ablations import main as ablations_main

    lines = dry_run("cft", RUNS=str(tmp_path))
    [prep] = [shlex.split(line) for line in lines if " -m dft data cft " in line]
    trainings = [shlex.split(line) for line in lines if " -m dft train " in line]
    assert all("data.train_files=data/cft/train.parquet" in argv for argv in trainings)
    assert Counter(next(a for a in argv if a.startswith("loss.name=")) for argv in trainings) == Counter(
        {"loss.name=sft": 1, "loss.name=dft": 1}
    )
    assert prep[prep.index("--n") + 1] == "50000"
    table = shlex.split(next(line for line in lines if " -m dft ablations " in line))
    for number, run in enumerate(table[i + 1] for i, arg in enumerate(table) if arg == "--run"):
        metrics = {name: {"avg@16": 0.1 + number / 100, "samples_per_problem": 16, "problems": 30}
                   for name in ("math500", "minerva_math", "olympiadbench", "aime24", "amc23")}  # fmt: skip
        path = Path(run.split("=", 1)[1])
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(json.dumps({"benchmarks": metrics}))
    ablations_main(table[table.index("cft") :])
    printed = capsys.readouterr().out
    # runs 0-1: SFT, DFT on Qwen2.5-Math-1.5B
    assert "| Qwen2.5-Math-1.5B | SFT | 10.00 | 10.00 | 10.00 | 10.00 | 10.00 | 10.00 |" in printed
    assert "| Qwen2.5-Math-1.5B | DFT - SFT | +1.00 | +1.00 | +1.00 | +1.00 | +1.00 | +1.00 |" in printed
    assert "math500: 30 of 500 problems" in printed  # the runs' departures from the protocol, under the table
    assert (tmp_path / "cft.md").exists()
