"""Rejection sampling (the paper's offline setting, sec. 4.2): sample, verify, keep the correct responses.

    python -m dft data rft model=Qwen/Qwen2.5-Math-1.5B input=data/numina/train.parquet limit=10000 \\
        backend=vllm data_parallel=8 gpus_per_replica=1 out=data/rft

Samples ``n`` responses per problem (paper: 4 at temperature 1.0 on 10,000 problems) with the evaluation
harness's backends, grades each with math-verify against the gold answer, and writes, atomically:

- ``rft.parquet``: the correct responses as SFT conversations (``messages``, ``id``, ``gold``, ``sample``),
  which ``dft train`` trains on (RFT = SFT or DFT on this file), in the data format ``format`` names
  (``dft.data.training_format``: ``chat``, the default, or ``official`` for ``setting=paper``);
- ``pairs.parquet``: DPO preference pairs (see ``dft.rl.pairs``);
- ``report.json``: problems, samples, acceptance overall and per problem, problems with no correct sample,
  grading errors (left out of both files: an ungraded response is neither verified right nor wrong).

Sampling goes through ``dft.eval.runner.run_benchmark``, so ``samples.jsonl`` is resumable exactly as an
evaluation is: a killed job started again generates only the missing samples.
"""

from collections import Counter
from pathlib import Path

import hydra
import pandas as pd
from omegaconf import OmegaConf
from tqdm import tqdm

from dft.core.paths import CONFIGS
from dft.data.problems import Problem, read_problems
from dft.data.training_format import user_turn, with_format
from dft.eval.backends import SamplingParams, make_backend
from dft.eval.fingerprint import claim, local_model_dir, make_fingerprint, problems_digest
from dft.eval.grading import Grader
from dft.eval.runner import run_benchmark
from dft.models.checkpoints import resolve_model
from dft.models.generation import ModelFormat
from dft.models.prompts import build_prompt
from dft.rl.pairs import build_pairs, write_parquet_atomic

# Samples are drawn in the chat format the RFT data trains on: the SFT user turn in the model's chat template.
PROMPT = "chat-cot"


def sft_rows(problems: list[Problem], rows: dict, n: int, fmt: str = "chat") -> list[dict]:
    """The verified-correct samples as SFT conversations in data format ``fmt``, in problem and sample order."""
    out = []
    for p in problems:
        for i in range(n):
            row = rows[(p.id, i)]
            if row["correct"] and not row["error"]:
                user = user_turn(p.problem, fmt)
                messages = [{"role": "user", "content": user}, {"role": "assistant", "content": row["response"]}]
                out.append({"messages": messages, "id": p.id, "gold": p.gold, "sample": i})
    return out


def acceptance_report(problems: list[Problem], rows: dict, n: int, pairs: int) -> dict:
    """Counts that add up: samples = accepted + rejected + grading errors; a histogram of correct per problem."""
    per_problem = [sum(rows[(p.id, i)]["correct"] and not rows[(p.id, i)]["error"] for i in range(n)) for p in problems]
    errors = sum(bool(rows[(p.id, i)]["error"]) for p in problems for i in range(n))
    accepted = sum(per_problem)
    samples = len(problems) * n
    return {
        "problems": len(problems),
        "samples_per_problem": n,
        "samples": samples,
        "accepted": accepted,
        "rejected": samples - accepted - errors,
        "grading_errors": errors,
        "acceptance_rate": accepted / samples if samples else 0.0,
        "problems_by_correct_samples": {str(k): v for k, v in sorted(Counter(per_problem).items())},
        "problems_without_a_correct_sample": per_problem.count(0),
        "dpo_pairs": pairs,
    }


def sample_and_verify(cfg, problems: list[Problem], out: Path, input_digest: str) -> dict:
    """Generate and grade every sample into ``out/samples.jsonl`` (resumable, fingerprinted like an evaluation
    folder, ``input_digest`` standing for the benchmark); return the rows."""
    params = SamplingParams(**cfg.sampling)
    section = OmegaConf.to_container(cfg.hf if cfg.backend == "hf" else cfg.vllm, resolve=True)
    model_dir = local_model_dir(cfg.model)
    fmt = ModelFormat.load(str(model_dir))
    prompts = fmt.encode_all(problems, lambda p: build_prompt(PROMPT, p.problem, fmt.tokenizer),
                             params.max_new_tokens, f"input {cfg.input}")  # fmt: skip
    sample = build_prompt(PROMPT, "{problem}", fmt.tokenizer)
    claim(out, make_fingerprint(cfg.model, model_dir, PROMPT, sample, params, fmt.describe(), cfg.backend,
                                section.get("dtype", ""), {"input": input_digest}))  # fmt: skip
    backend = make_backend(cfg.backend, cfg.model, fmt.context, cfg.data_parallel, cfg.gpus_per_replica, **section)
    with Grader(cfg.grading.workers, cfg.grading.timeout_s, cfg.grader) as grader:
        with tqdm(total=len(problems) * params.n, desc="sample + verify", unit="sample") as bar:
            return run_benchmark(prompts, out / "samples.jsonl", backend.generate, params, fmt.stops,
                                 grader.grade_many, chunk_size=cfg.chunk_size, on_samples=bar.update)  # fmt: skip


def write_sft_parquet(rows: list[dict], fmt: str, out: Path) -> None:
    """``rft.parquet``, its schema recording the data format (so training refuses it under another one)."""
    import pyarrow as pa
    import pyarrow.parquet as pq

    from dft.core.io import atomic_write

    table = with_format(pa.Table.from_pandas(pd.DataFrame(rows), preserve_index=False), fmt)
    atomic_write(out / "rft.parquet", lambda tmp: pq.write_table(table, tmp))


def run(cfg) -> dict:
    cfg.model = resolve_model(cfg.model)  # a verl run folder: its latest checkpoint, as dft eval takes it
    out = Path(cfg.out)
    problems = read_problems(cfg.input)
    digest = problems_digest(problems)
    problems = problems[: cfg.limit] if cfg.limit else problems
    rows = sample_and_verify(cfg, problems, out, digest)
    n = cfg.sampling.n
    write_sft_parquet(sft_rows(problems, rows, n, cfg.get("format", "chat")), cfg.get("format", "chat"), out)
    pairs = build_pairs(problems, rows, n, cfg.pairs.per_problem, cfg.pairs.seed)
    write_parquet_atomic(pd.DataFrame(pairs), out / "pairs.parquet")
    report = acceptance_report(problems, rows, n, len(pairs))
    report.update(model=cfg.model, input=str(cfg.input), sampling=OmegaConf.to_container(cfg.sampling))
    (out / "report.json").write_text(pd.Series(report).to_json(indent=2))
    return report


@hydra.main(config_path=str(CONFIGS), config_name="rft", version_base=None)
def main(cfg) -> None:
    report = run(cfg)
    print(f"{report['problems']} problems x {report['samples_per_problem']}: {report['accepted']} accepted "
          f"({100 * report['acceptance_rate']:.1f}%), {report['problems_without_a_correct_sample']} problems "
          f"without a correct sample, {report['grading_errors']} grading errors, {report['dpo_pairs']} DPO pairs "
          f"-> {cfg.out}")  # fmt: skip
