"""``python -m dft eval model=... [benchmarks=[...]] [backend=vllm] ...``: evaluate one model (configs/eval.yaml).

Prints one line per benchmark (``aime24: avg@16 8.5% (30 x 16)``) and writes per-response JSONL files,
``fingerprint.json`` and ``summary.json`` to ``out``. Run the same command again after a kill and it
finishes the missing samples only; a different model, prompt or sampling into the same folder is refused.
Everything that can be wrong with the input (prompt, benchmarks, a prompt longer than the context, the folder)
is checked before the model loads.
"""

import sys
from functools import partial
from pathlib import Path

import hydra
from omegaconf import OmegaConf
from tqdm import tqdm

from dft.core.paths import CONFIGS
from dft.eval.backends import SamplingParams, make_backend
from dft.eval.benchmarks import benchmark_names, load_benchmark
from dft.eval.fingerprint import claim, default_output_dir, local_model_dir, make_fingerprint, problems_digest
from dft.eval.graders import DEFAULT_GRADER
from dft.eval.grading import Grader
from dft.eval.runner import run_benchmark, summarize, summary_line, write_summary
from dft.models.checkpoints import resolve_model
from dft.models.generation import ModelFormat
from dft.models.prompts import build_prompt, resolve_template


def backend_section(cfg) -> dict:
    return OmegaConf.to_container(cfg.hf if cfg.backend == "hf" else cfg.vllm, resolve=True)


def load_problems(cfg) -> dict:
    """Every requested benchmark as (all its problems, the first ``limit`` of them), loaded before any model is."""
    problems = {}
    for name in benchmark_names(cfg.benchmarks):
        loaded = load_benchmark(name, data_dir=cfg.data_dir, source=cfg.source)
        problems[name] = (loaded, loaded[: cfg.limit] if cfg.limit else loaded)
    return problems


def prepare(cfg):
    """(output folder, prompt template, sampling, model format, encoded prompts per benchmark, run info); the
    folder is claimed with the run's fingerprint. No weights are loaded yet."""
    template = resolve_template(cfg.prompt, cfg.model)
    params = SamplingParams(**cfg.sampling)
    problems = load_problems(cfg)
    model_dir = local_model_dir(cfg.model)
    fmt = ModelFormat.load(str(model_dir))

    def prompt_of(problem):
        return build_prompt(template, problem.problem, fmt.tokenizer)

    prompts = {name: fmt.encode_all(items, prompt_of, params.max_new_tokens, f"benchmark {name}")
               for name, (_, items) in problems.items()}  # fmt: skip
    section = backend_section(cfg)
    fingerprint = make_fingerprint(
        cfg.model, model_dir, template, build_prompt(template, "{problem}", fmt.tokenizer), params, fmt.describe(),
        cfg.backend, section.get("dtype", ""), {name: problems_digest(full) for name, (full, _) in problems.items()},
    )  # fmt: skip
    if cfg.grader != DEFAULT_GRADER:  # verdicts of two graders never share a folder; older folders keep their digest
        fingerprint["grader"] = cfg.grader
    out_dir = Path(cfg.out) if cfg.out else default_output_dir(cfg.model)
    claim(out_dir, fingerprint)
    run_info = {"model": cfg.model, "backend": cfg.backend, "prompt_template": template, "grader": cfg.grader,
                "sampling": OmegaConf.to_container(cfg.sampling), **fmt.describe(), "fingerprint": fingerprint,
                "config": OmegaConf.to_container(cfg)}  # fmt: skip
    return out_dir, params, fmt, prompts, run_info


def grade_benchmark(grader: Grader, benchmark: str, pairs: list) -> list:
    """``grader.grade_many`` with the benchmark named (the paper's grader's rules depend on it)."""
    return grader.grade_many([(response, gold, benchmark) for response, gold in pairs])


def evaluate(cfg) -> dict:
    """Generate, grade and summarise every benchmark of ``cfg``; return the summary."""
    out_dir, params, fmt, prompts, run_info = prepare(cfg)
    backend = make_backend(cfg.backend, cfg.model, fmt.context, cfg.data_parallel, cfg.gpus_per_replica,
                           **backend_section(cfg))  # fmt: skip
    results = {}
    with Grader(cfg.grading.workers, cfg.grading.timeout_s, cfg.grader) as grader:
        for name, items in prompts.items():
            with tqdm(total=len(items) * params.n, desc=name, unit="sample") as bar:
                rows = run_benchmark(items, out_dir / f"{name}.jsonl", backend.generate, params, fmt.stops,
                                     partial(grade_benchmark, grader, name), chunk_size=cfg.chunk_size,
                                     on_samples=bar.update)  # fmt: skip
            results[name] = summarize(items, rows, params, grader.equivalent)
    return write_summary(out_dir, run_info, results)


@hydra.main(config_path=str(CONFIGS), config_name="eval", version_base=None)
def main(cfg) -> None:
    cfg.model = resolve_model(cfg.model)
    try:
        summary = evaluate(cfg)
    except (ValueError, FileNotFoundError) as exc:  # bad input: the message says what and where
        sys.exit(f"error: {exc}")
    for name, metrics in summary["benchmarks"].items():
        print(summary_line(name, metrics))
