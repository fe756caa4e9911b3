"""``python -m dft.eval model=... [benchmarks=[...]] [backend=vllm] ...``: evaluate one model (configs/eval.yaml).

Prints one line per benchmark (``aime24: avg@16 8.5% (30 x 16)``) and writes per-response JSONL files and
``summary.json`` to ``output_dir``. Run the same command again after a kill and it finishes the missing
samples only.
"""

from pathlib import Path

import hydra
from omegaconf import OmegaConf
from tqdm import tqdm

from dft.checkpoints import resolve_model
from dft.eval.backends import SamplingParams, make_backend
from dft.eval.benchmarks import load_benchmark
from dft.eval.grading import Grader
from dft.eval.prompts import build_prompt
from dft.eval.runner import run_benchmark, summarize, summary_line, write_summary


def default_output_dir(model: str) -> Path:
    return Path("runs/eval") / "_".join(Path(model).parts[-2:])


def backend_kwargs(cfg) -> dict:
    section = cfg.hf if cfg.backend == "hf" else cfg.vllm
    return OmegaConf.to_container(section, resolve=True)


def load_problems(cfg) -> dict:
    """Every requested benchmark's problems (first ``limit`` of each), loaded before any model is."""
    problems = {}
    for name in cfg.benchmarks:
        loaded = load_benchmark(name, data_dir=cfg.data_dir, source=cfg.source)
        problems[name] = loaded[: cfg.limit] if cfg.limit else loaded
    return problems


def evaluate(cfg) -> dict:
    """Generate, grade and summarise every benchmark of ``cfg``; return the summary."""
    out_dir = Path(cfg.output_dir) if cfg.output_dir else default_output_dir(cfg.model)
    problems = load_problems(cfg)
    params = SamplingParams(**cfg.sampling)
    backend = make_backend(cfg.backend, cfg.model, cfg.data_parallel, cfg.gpus_per_replica, **backend_kwargs(cfg))
    tokenizer = getattr(backend, "tokenizer", None) or _tokenizer(cfg.model)
    results = {}
    with Grader(workers=cfg.grading.workers, timeout_s=cfg.grading.timeout_s) as grader:
        for name, items in problems.items():
            with tqdm(total=len(items) * params.n, desc=name, unit="sample") as bar:
                rows = run_benchmark(
                    items, out_dir / f"{name}.jsonl", backend.generate,
                    lambda p: build_prompt(cfg.prompt, p.problem, tokenizer), params, grader.grade_many,
                    chunk_size=cfg.chunk_size, on_rows=bar.update,
                )  # fmt: skip
            results[name] = summarize(items, rows, params.n, grader.equivalent)
    run_info = {"model": cfg.model, "backend": cfg.backend, "prompt_template": cfg.prompt,
                "sampling": OmegaConf.to_container(cfg.sampling), "config": OmegaConf.to_container(cfg)}  # fmt: skip
    return write_summary(out_dir, run_info, results)


def _tokenizer(model: str):
    from transformers import AutoTokenizer

    return AutoTokenizer.from_pretrained(model)


@hydra.main(config_path="../../configs", config_name="eval", version_base=None)
def main(cfg) -> None:
    cfg.model = resolve_model(cfg.model)
    summary = evaluate(cfg)
    for name, metrics in summary["benchmarks"].items():
        print(summary_line(name, metrics))


if __name__ == "__main__":
    main()
