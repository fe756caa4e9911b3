"""The package is laid out as the pipeline runs: each stage imports only the stages below it, no module imports
another that imports it back, and an addition (a benchmark, a paper model, a loss: test_losses_on_cpu.py) is one
entry in one place."""

import ast

from conftest import REPO

# bottom to top: a package may import only from the packages before it in this list (and from itself)
STAGES = ["core", "models", "data", "eval", "train", "rl", "report", "cli"]


def module_imports() -> dict[str, set[str]]:
    """Every module of dft/ -> the dft modules it imports (at module level or inside functions)."""
    root = REPO / "dft"
    modules = {".".join(p.relative_to(REPO).with_suffix("").parts).removesuffix(".__init__"): p
               for p in root.rglob("*.py")}  # fmt: skip
    graph = {}
    for name, path in modules.items():
        targets = set()
        for node in ast.walk(ast.parse(path.read_text())):
            names = [node.module] if isinstance(node, ast.ImportFrom) and node.module else []
            names += [a.name for a in node.names] if isinstance(node, ast.Import) else []
            if isinstance(node, ast.ImportFrom) and node.module:
                names += [f"{node.module}.{a.name}" for a in node.names]
            targets |= {n for n in names if n in modules and n != name}
        graph[name] = targets
    return graph


def stage(module: str) -> int | None:
    parts = module.split(".")
    return STAGES.index(parts[1]) if len(parts) > 2 or parts[-1] in STAGES else None


def test_the_top_level_holds_the_stages_and_nothing_else():
    entries = {p.name for p in (REPO / "dft").iterdir() if p.name != "__pycache__"}
    assert entries - {"__init__.py", "__main__.py"} == set(STAGES)


def test_no_stage_imports_a_stage_above_it():
    upward = [(m, t) for m, targets in module_imports().items() for t in targets
              if stage(m) is not None and stage(t) is not None and stage(t) > stage(m)]  # fmt: skip
    assert upward == []


def test_no_import_circles():
    graph = module_imports()
    circles = set()

    def visit(node, path):
        for nxt in graph[node]:
            if nxt in path:
                circles.add(tuple(sorted(path[path.index(nxt) :])))
            elif len(path) < 12:
                visit(nxt, path + [nxt])

    for start in graph:
        visit(start, [start])
    assert circles == set()


def test_a_benchmark_is_one_entry(monkeypatch):
    """A new entry of dft.eval.benchmarks.BENCHMARKS is a choice of `dft eval` (help and checks) and has its title
    in tables: nothing else lists benchmarks."""
    from omegaconf import OmegaConf

    from dft.cli import preflight, validate
    from dft.eval import benchmarks
    from dft.report.tables import title

    spec = benchmarks.BenchmarkSpec("tiny_bench", 3, benchmarks.FieldMap("id", "problem", "answer"), "made here",
                                    title="Tiny Bench")  # fmt: skip
    monkeypatch.setitem(benchmarks.BENCHMARKS, "tiny_bench", spec)
    assert "  tiny_bench" in preflight.hydra_help(preflight.HYDRA_COMMANDS["eval"], "")
    config = OmegaConf.create({"benchmarks": ["tiny_bench"], "source": "local"})
    assert validate.choice(config, "benchmarks", list(benchmarks.BENCHMARKS)) == []
    assert title("tiny_bench") == "Tiny Bench" and "tiny_bench" not in benchmarks.PAPER_BENCHMARKS


def test_a_paper_model_is_its_preset_and_its_card(tmp_path, monkeypatch):
    """A preset with a card is a paper model for the recipes, the download script and the tests: nothing else lists
    them (recipes/common.sh and scripts/download.sh ask `python -m dft presets --paper`)."""
    from dft.models import presets

    for path in (REPO / "configs" / "preset").glob("*.yaml"):
        (tmp_path / path.name).write_text(path.read_text())
    text = (REPO / "configs" / "preset" / "qwen2.5-math-7b.yaml").read_text()
    (tmp_path / "new-model.yaml").write_text(text.replace("Qwen/Qwen2.5-Math-7B", "someone/new-model"))
    monkeypatch.setattr(presets, "PRESET_DIR", tmp_path)
    presets.presets.cache_clear()
    try:
        names = [p.name for p in presets.paper_presets()]
    finally:
        presets.presets.cache_clear()
    assert "new-model" in names and len(names) == 6 and "tiny-cpu" not in names
    for script in ("recipes/common.sh", "scripts/download.sh"):
        source = (REPO / script).read_text()
        code = [line for line in source.splitlines() if not line.lstrip().startswith("#")]
        assert "python -m dft presets --paper" in source
        assert not [line for line in code if any(name in line for name in names)], script
