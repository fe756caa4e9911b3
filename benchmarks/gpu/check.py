"""GPU check: DFT vs SFT training steps on a Qwen2.5-Math-1.5B-shaped model, and the LM-head loss paths at 16k and
32k tokens (original / unfused / fused torch / fused Triton), on one GPU; a markdown table to ``--out``.

    bash benchmarks/gpu/prepare.sh                       # here: wheels + the real config.json -> benchmarks/gpu/assets
    bash benchmarks/gpu/run.sh                           # on the GPU machine (the device tool carries assets/)
    python benchmarks/gpu/check.py --dry-run --out DIR   # CPU, tiny shapes (tests/test_gpu_check_on_cpu.py)

Training steps (``step_worker``, one fresh process per log-prob path, since verl's fused patch replaces the model
class's forward): the model is built as verl's FSDP engine builds it for ``dft train preset=qwen2.5-math-1.5b``:
random weights from the real ``config.json`` in fp32, SDPA attention, verl's ``apply_monkey_patch`` (remove-padding,
fused kernels and backend as configured), gradient checkpointing, FSDP2 through verl's ``apply_fsdp2`` with bf16
parameters and fp32 reductions; AdamW (lr 5e-5, betas 0.9/0.95, weight decay 0.01), gradient clipping at 1.0.
A step is ``--micro-batches`` packed micro-batches of ``--seqs`` sequences x 2,048 tokens (``max_token_len_per_gpu``
8192), log-probs as verl's engine gets them, then our ``sft_loss`` / ``dft_loss`` (``dft.train.losses.registry``)
normalised over
the step's target tokens; steps alternate SFT and DFT so both see the same load. What differs from ``dft train``:
verl's ``TrainingWorker``/``SFTTrainer`` and data loader are not run (their imports need Ray, pandas, pyarrow and
datasets, more than the 64 MiB the machine can be sent), one process instead of a data-parallel group, random
token ids instead of tokenised data.

Loss paths (``loss_paths.py``): forward + backward from bf16 hidden states and the LM head weight (1536 x 151,936),
peak allocated bytes beyond the inputs (``torch.cuda.max_memory_allocated``), median of ``--reps`` interleaved
passes after a warm-up. ``unfused`` here is verl's ``logprobs_from_logits`` without flash-attn (its row loop), as on
a machine without flash-attn.

verl is imported with a stand-in module for Ray where Ray is missing (``ray_stub``): these code paths never call
Ray, and the report says whether anything called the stand-in after the imports.
"""

import argparse
import json
import os
import statistics
import subprocess
import sys
import time
from pathlib import Path

HERE = Path(__file__).resolve().parent
sys.path[:0] = [str(HERE.parent), str(HERE.parents[1])]  # benchmarks/ (loss_paths) and the repository (dft)

PATHS = {"unfused": None, "fused-torch": "torch", "fused-triton": "triton"}
DRY_SHAPE = {"hidden_size": 64, "intermediate_size": 128, "num_hidden_layers": 2, "num_attention_heads": 2,
             "num_key_value_heads": 1, "vocab_size": 1024}  # fmt: skip


def ray_stub(force: bool = False):
    """Make ``import ray`` give a permissive stand-in (verl imports Ray at module level); return it, or None.

    Only where Ray is missing, or with ``force`` (the dry run imports verl as the GPU machine must, without Ray).
    """
    import importlib.abc
    import importlib.machinery
    import importlib.util
    from unittest.mock import MagicMock

    if not force and importlib.util.find_spec("ray") is not None:
        return None
    stub = MagicMock(name="ray")

    class Finder(importlib.abc.MetaPathFinder, importlib.abc.Loader):
        def find_spec(self, name, path, target=None):
            if name == "ray" or name.startswith("ray."):
                return importlib.machinery.ModuleSpec(name, self, is_package=True)

        def create_module(self, spec):
            module = stub if spec.name == "ray" else getattr(stub, spec.name.split(".", 1)[1])
            module.__path__, module.__spec__, module.__name__ = [], spec, spec.name
            return module

        def exec_module(self, module):
            pass

    sys.meta_path.insert(0, Finder())
    return stub


def device_of(args) -> str:
    return "cpu" if args.dry_run else "cuda"


def model_config(args):
    """The real config.json (Qwen2.5-Math-1.5B); in a dry run shrunk to a tiny model of the same architecture."""
    from transformers import AutoConfig

    config = AutoConfig.from_pretrained(str(Path(args.config).parent))
    for key, value in (DRY_SHAPE if args.dry_run else {}).items():
        setattr(config, key, value)
    config._attn_implementation = "sdpa"
    return config


def init_single_process_group(device: str) -> None:
    import torch.distributed as dist

    for name, value in (("MASTER_ADDR", "127.0.0.1"), ("MASTER_PORT", "29541"), ("RANK", "0"), ("WORLD_SIZE", "1")):
        os.environ.setdefault(name, value)
    if not dist.is_initialized():
        dist.init_process_group("nccl" if device == "cuda" else "gloo", rank=0, world_size=1)


def build_model(args, backend):
    """verl's engine build: HF model in fp32, verl's monkey patch, gradient checkpointing, FSDP2 with bf16 compute."""
    import torch
    from torch.distributed.device_mesh import init_device_mesh
    from torch.distributed.fsdp import MixedPrecisionPolicy
    from transformers import AutoModelForCausalLM
    from verl.models.transformers.monkey_patch import apply_monkey_patch
    from verl.utils.fsdp_utils import apply_fsdp2

    device = device_of(args)
    torch.manual_seed(0)
    with torch.device(device):
        model = AutoModelForCausalLM.from_config(model_config(args), dtype=torch.float32)
    apply_monkey_patch(model, use_remove_padding=True, use_fused_kernels=backend is not None,
                       fused_kernels_backend=backend)  # fmt: skip
    model.gradient_checkpointing_enable(gradient_checkpointing_kwargs={"use_reentrant": False})
    compute = torch.float32 if args.dry_run else torch.bfloat16
    policy = MixedPrecisionPolicy(param_dtype=compute, reduce_dtype=torch.float32, cast_forward_inputs=True)
    apply_fsdp2(model, {"mesh": init_device_mesh(device, (1,)), "mp_policy": policy}, {})
    return model


def micro_batches(args, vocab: int) -> list[dict]:
    """Packed micro-batches in verl's no-padding layout, each target token counted once over the whole step."""
    import torch
    from loss_paths import make_batch
    from verl.utils import tensordict_utils as tu

    n_tokens = args.seqs * args.seq_len
    batches = [make_batch(n_tokens, torch.float32, vocab, seed=i, with_logits=False, seq_len=args.seq_len)
               for i in range(args.micro_batches)]  # fmt: skip
    total = sum(b["data"]["batch_num_tokens"] for b in batches)
    for batch in batches:
        tu.assign_non_tensor(batch["data"], batch_num_tokens=total)
        lengths = batch["offsets"].diff().tolist()
        batch["position_ids"] = torch.cat([torch.arange(n) for n in lengths])
        for key in ("ids", "position_ids", "offsets", "data"):
            batch[key] = batch[key].to(device_of(args))
    return batches


def step_log_probs(model, batch: dict, backend):
    """Per-token log-probs as verl's engine gets them with remove-padding: one packed row, labels rolled by one."""
    import torch
    from verl.utils.torch_functional import logprobs_from_logits

    ids, positions = batch["ids"].unsqueeze(0), batch["position_ids"].unsqueeze(0)
    labels = torch.roll(batch["ids"], shifts=-1)
    if backend is None:
        logits = model(input_ids=ids, position_ids=positions, attention_mask=None).logits.squeeze(0)
        return logprobs_from_logits(logits=logits.float(), labels=labels)
    output = model(input_ids=ids, position_ids=positions, attention_mask=None, shift_labels=labels.unsqueeze(0),
                   temperature=1.0, return_dict=True)  # fmt: skip
    return output.log_probs.squeeze(0)


def step_worker(args, path: str) -> dict:
    """Train ``--steps`` steps alternating SFT and DFT on the ``path`` log-prob path; per step time, peak, loss."""
    import torch
    from loss_paths import loss_from_log_probs
    from verl.utils.fsdp_utils import fsdp2_clip_grad_norm_

    device, backend = device_of(args), PATHS[path]
    init_single_process_group(device)
    model = build_model(args, backend)
    optimizer = torch.optim.AdamW(model.parameters(), lr=5e-5, betas=(0.9, 0.95), weight_decay=0.01)
    batches, steps = micro_batches(args, model.config.vocab_size), []
    for step in range(args.steps):
        loss_name = ("sft", "dft")[step % 2]
        peak = reset_peak(device)
        start = time.perf_counter()
        total = 0.0
        for batch in batches:
            loss = loss_from_log_probs(loss_name, step_log_probs(model, batch, backend), batch)
            loss.backward()
            total += float(loss.detach())
        grad_norm = fsdp2_clip_grad_norm_(model.parameters(), max_norm=1.0)
        optimizer.step()
        optimizer.zero_grad(set_to_none=True)
        synchronize(device)
        steps.append({"loss_name": loss_name, "seconds": time.perf_counter() - start, "peak": peak(),
                      "loss": total, "grad_norm": float(grad_norm)})  # fmt: skip
    return {"path": path, "steps": steps}


def reset_peak(device: str):
    """Reset the device's peak statistics; return a function that reads the peak allocated bytes since then."""
    import torch

    if device == "cuda":
        torch.cuda.synchronize()
        torch.cuda.reset_peak_memory_stats()
        return torch.cuda.max_memory_allocated
    import resource

    return lambda: resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * 1024  # CPU: peak RSS, never reset


def synchronize(device: str) -> None:
    import torch

    if device == "cuda":
        torch.cuda.synchronize()


LOSS_PATHS = ("head-original", "head-dft", "fused-dft", "triton-dft")


def loss_path_rows(args) -> list[dict]:
    """Peak bytes beyond the inputs and median time of each loss path, forward + backward, at each size."""
    import torch
    from live_bytes import LiveBytes
    from loss_paths import forward, leaves, make_batch

    device, rows = device_of(args), []
    vocab, hidden = (DRY_SHAPE["vocab_size"], DRY_SHAPE["hidden_size"]) if args.dry_run else (None, None)
    for n_tokens in args.tokens:
        config = model_config(args)
        vocab, hidden = config.vocab_size, config.hidden_size
        batch = make_batch(n_tokens, torch.bfloat16, vocab, with_logits=False, hidden=hidden, device=device)
        for name in LOSS_PATHS:
            row = {"tokens": n_tokens, "path": name, "logits_bytes": n_tokens * vocab * 2}
            if name.startswith("triton") and device != "cuda":
                rows.append(dict(row, error="not run: Triton needs CUDA"))
                continue
            try:
                row.update(measure_path(lambda: forward(name, batch), leaves(batch), device, args.reps, LiveBytes))
            except torch.OutOfMemoryError:
                row["error"] = "out of memory"
            except Exception as err:  # a path that cannot run here is reported, the others still run
                row["error"] = f"{type(err).__name__}: {err}"[:200]
            rows.append(row)
            torch.cuda.empty_cache() if device == "cuda" else None
    return rows


def measure_path(run, grads: list, device: str, reps: int, live_bytes_cls) -> dict:
    """One pass for the peak (allocated bytes on CUDA, live tensor bytes on a CPU), then timed passes."""
    import torch

    def one_pass():
        for leaf in grads:
            leaf.grad = None
        loss, kept = run()
        loss.backward()
        return loss.detach()

    if device == "cuda":
        peak = reset_peak(device)
        base = torch.cuda.memory_allocated()
        loss = one_pass()
        extra = peak() - base
    else:
        with live_bytes_cls(grads) as live:
            loss = one_pass()
        extra = live.peak
    loss = float(loss)  # read outside the counting mode, which stands in 0 for every .item()
    times = []
    for _ in range(reps):
        synchronize(device)
        start = time.perf_counter()
        one_pass()
        synchronize(device)
        times.append(time.perf_counter() - start)
    return {"extra": extra, "median_s": statistics.median(times), "loss": loss}


def run_step_workers(args) -> list[dict]:
    """Each log-prob path's training steps in a fresh process (verl's fused patch is per model class)."""
    results = []
    for path in PATHS:
        if path == "fused-triton" and args.dry_run:
            results.append({"path": path, "error": "not run: Triton needs CUDA"})
            continue
        out = Path(args.out) / f"steps-{path}.json"
        cmd = [sys.executable, __file__, "--step-worker", path, "--json", str(out), *args.passthrough]
        proc = subprocess.run(cmd, capture_output=True, text=True, timeout=args.worker_timeout)
        if proc.returncode != 0:
            results.append({"path": path, "error": proc.stderr.strip().splitlines()[-1:]})
            continue
        results.append(json.loads(out.read_text()))
    return results


def gib(n_bytes: float) -> str:
    return f"{n_bytes / 2**30:.2f}"


def markdown(args, env: dict, loss_rows: list[dict], step_runs: list[dict]) -> str:
    """The report: environment, loss-path table, training-step table and ratios."""
    lines = [f"# GPU check ({'dry run, CPU, tiny shapes' if args.dry_run else 'Qwen2.5-Math-1.5B shape'})", ""]
    lines += [f"- {key}: {value}" for key, value in env.items()] + [""]
    lines += ["## Loss paths from bf16 hidden states (forward + backward)", ""]
    lines += ["| tokens | path | logits GiB | extra peak GiB | median s | loss |", "|---:|---|---:|---:|---:|---:|"]
    for r in loss_rows:
        cells = (
            (gib(r["extra"]), f"{r['median_s']:.3f}", f"{r['loss']:.4g}") if "extra" in r else (r["error"], "-", "-")
        )
        lines.append(f"| {r['tokens']} | {r['path']} | {gib(r['logits_bytes'])} | " + " | ".join(cells) + " |")
    by = {(r["tokens"], r["path"]): r for r in loss_rows if "extra" in r}
    for n in args.tokens:
        for fused in ("fused-dft", "triton-dft"):
            o, u, f = by.get((n, "head-original")), by.get((n, "head-dft")), by.get((n, fused))
            if o and u and f:
                lines.append(f"\n{n} tokens, {fused}: original / fused extra peak {o['extra'] / f['extra']:.1f}x, "
                             f"unfused / fused {u['extra'] / f['extra']:.1f}x, fused / unfused time "
                             f"{f['median_s'] / u['median_s']:.2f}")  # fmt: skip
    lines += ["", f"## Training steps ({args.micro_batches} x {args.seqs} x {args.seq_len} tokens per step)", ""]
    lines += ["| log-prob path | DFT/SFT step time | DFT/SFT peak | SFT step s | DFT step s | SFT peak GiB "
              "| DFT peak GiB | step-1 SFT loss | step-2 DFT loss |"]  # fmt: skip
    lines += ["|---|---:|---:|---:|---:|---:|---:|---:|---:|"]
    for run in step_runs:
        if "error" in run:
            lines.append(f"| {run['path']} | {run['error']} | | | | | | | |")
            continue
        kept = run["steps"][args.warmup :]
        med = {name: statistics.median(s["seconds"] for s in kept if s["loss_name"] == name) for name in ("sft", "dft")}
        peak = {name: max(s["peak"] for s in kept if s["loss_name"] == name) for name in ("sft", "dft")}
        first = run["steps"]
        lines.append(f"| {run['path']} | {med['dft'] / med['sft']:.3f} | {peak['dft'] / peak['sft']:.3f} "
                     f"| {med['sft']:.3f} | {med['dft']:.3f} | {gib(peak['sft'])} | {gib(peak['dft'])} "
                     f"| {first[0]['loss']:.6g} | {first[1]['loss']:.6g} |")  # fmt: skip
    return "\n".join(lines) + "\n"


def environment(args, stub) -> dict:
    import torch
    import transformers
    import verl

    env = {"torch": torch.__version__, "transformers": transformers.__version__, "verl": verl.__version__,
           "device": torch.cuda.get_device_name() if torch.cuda.is_available() else "CPU",
           "Ray": "a stand-in module (not installed)" if stub is not None else "installed"}  # fmt: skip
    try:
        import triton

        env["triton"] = triton.__version__
    except ImportError:
        env["triton"] = "not installed"
    return env


def parse_args(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--out", default=os.environ.get("OUT", "gpu_check"), help="folder for the report")
    parser.add_argument("--dry-run", action="store_true", help="CPU, tiny shapes, few steps")
    parser.add_argument("--config", default=str(HERE / "assets" / "config.json"), help="the model's config.json")
    parser.add_argument("--tokens", type=int, nargs="+", default=None, help="loss-path sizes (16384 32768)")
    parser.add_argument("--reps", type=int, default=3, help="timed passes per loss path")
    parser.add_argument("--seqs", type=int, default=None, help="sequences per micro-batch (4)")
    parser.add_argument("--seq-len", type=int, default=None, help="tokens per sequence (2048)")
    parser.add_argument("--micro-batches", type=int, default=2, help="micro-batches per step")
    parser.add_argument("--steps", type=int, default=None, help="steps per path, alternating SFT and DFT (12)")
    parser.add_argument("--warmup", type=int, default=2, help="first steps left out of the medians")
    parser.add_argument("--worker-timeout", type=int, default=None, help="seconds one path's steps may take (150)")
    parser.add_argument("--step-worker", help=argparse.SUPPRESS)
    parser.add_argument("--json", help=argparse.SUPPRESS)
    args = parser.parse_args(argv)
    dry = {"tokens": [256, 512], "seqs": 2, "seq_len": 128, "steps": 4, "worker_timeout": 900} if args.dry_run else {}
    full = {"tokens": [16384, 32768], "seqs": 4, "seq_len": 2048, "steps": 12, "worker_timeout": 150}
    for key, value in full.items():
        if getattr(args, key) is None:
            setattr(args, key, dry.get(key, value))
    if args.dry_run:
        args.warmup = min(args.warmup, 2)
    args.passthrough = [a for a in (argv if argv is not None else sys.argv[1:]) if a not in ("--step-worker",)]
    return args


def main(argv=None) -> None:
    args = parse_args(argv)
    stub = ray_stub(force=args.dry_run)
    if args.step_worker:
        result = step_worker(args, args.step_worker)
        return Path(args.json).write_text(json.dumps(result))
    Path(args.out).mkdir(parents=True, exist_ok=True)
    env = environment(args, stub)
    calls_after_import = len(stub.mock_calls) if stub is not None else 0
    loss_rows = loss_path_rows(args)
    step_runs = run_step_workers(args)
    if stub is not None:
        env["Ray calls after import"] = len(stub.mock_calls) - calls_after_import
    report = markdown(args, env, loss_rows, step_runs)
    (Path(args.out) / "gpu_check.md").write_text(report)
    (Path(args.out) / "gpu_check.json").write_text(json.dumps({"loss_paths": loss_rows, "steps": step_runs}))
    print(report)


if __name__ == "__main__":
    main()
