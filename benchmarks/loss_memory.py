"""Time and peak memory of the loss path, forward + backward from the logits, at Qwen2.5's vocabulary.

Formulations (``FORMULATIONS``):

- ``sft``: verl's path: ``verl.utils.torch_functional.logprobs_from_logits(logits, labels)`` on the flat
  (tokens, vocab) logits, as verl's FSDP engine calls it, then our ``sft_loss`` on verl's jagged batch.
- ``dft`` (ours): the same log-probs, then our ``dft_loss`` (weight ``exp(log p)``, detached).
- ``original``: the original DFT code's formulation (``fsdp_dft_trainer._compute_loss_and_backward``):
  ``F.cross_entropy(..., reduction="none")``, a full ``torch.softmax(logits)``, the target probability
  gathered and detached as the weight, the masked token mean. ``backward`` runs while ``probs`` is alive, as
  there (``probs`` is a local of the function that calls ``loss.backward()``).
- ``ce``: the same code without the weight (plain CE, as verl's legacy SFT trainer computed it), so that
  ``original - ce`` is the memory the original's softmax weight costs, as ``dft - sft`` is ours.

Why: DFT's weight is the probability of the target token. Read from the log-probs verl already returns it costs
O(tokens); read from a full-vocabulary softmax it costs a (tokens x vocab) tensor, as large as the logits.

Memory method: each (formulation, tokens, dtype) runs one pass in a fresh child process. Once the logits and the
batch exist, the child resets its peak RSS (``/proc/self/clear_refs`` = 5, Linux >= 4.0) and reads ``VmRSS``;
"extra" is ``VmHWM`` minus that, after the forward and after the backward: every byte the loss path touches
beyond the logits, the logits' gradient included. Children run with ``MALLOC_MMAP_THRESHOLD_=65536`` so that
every buffer of 64 KiB or more is its own mapping and leaves RSS when freed: RSS then follows live tensor bytes
(as the CUDA allocator's allocated bytes do) instead of glibc's heap reuse, which depends on allocation order.
A calibration child checks that a 1 GiB tensor reads as 1 GiB. ``RLIMIT_AS`` makes a case that does not fit
fail with an allocation error (reported) rather than wake the OOM killer.

Time: one more child per row runs sft, dft and original (those that fit) in interleaved rounds on the same logits
(a warm-up round, then ``--reps`` rounds, order reversed every other round), with glibc's default malloc;
DFT/SFT is the median of the per-round ratios, so load drift common to a round cancels. Rows above
``--time-max-tokens`` are not timed end to end (a 16k-token pass takes from 20 s to minutes on 2 shared cores).
Because the two paths differ only in the loss function, the child also times ``sft_loss`` and ``dft_loss`` alone
(forward + backward from the log-probs, 200 interleaved reps), which bounds what DFT adds with little noise.

Second part, from hidden states at the Qwen2.5-Math-1.5B head (``loss_paths.HEAD_PATHS``: unfused, original and
verl's fused ``FusedLinearForPPO``): memory counted on shape-only tensors (``live_bytes.py``) for every row, 1k to
32k tokens; RSS and time only for ``--head-real`` rows (a real 16k bf16 pass is hours of CPU matmuls here).

    python benchmarks/loss_memory.py                          # rows 1k fp32; 1k, 4k, 16k bf16; head rows 1k-32k
    python benchmarks/loss_memory.py --rows 4096:float32 --reps 3 --time-max-tokens 16384
"""

import argparse
import json
import os
import re
import resource
import statistics
import subprocess
import sys
import time

from live_bytes import live_peak
from loss_paths import HEAD_PATHS, HIDDEN, LOGIT_PATHS, VOCAB, batch_for, forward, leaves, logits_bytes

FORMULATIONS = LOGIT_PATHS
DEFAULT_ROWS = ("1024:float32", "1024:bfloat16", "4096:bfloat16", "16384:bfloat16")  # fp32 16k does not fit
TIMED = ("sft", "dft", "original")  # ce is a memory reference only
# From hidden states at the Qwen2.5-Math-1.5B head: every row counted on shape-only tensors (live bytes); the
# HEAD_REAL rows also run for real (RSS and time). A real 16k bf16 pass is hours of CPU matmuls here.
DEFAULT_HEAD_ROWS = ("1024:float32", "1024:bfloat16", "4096:bfloat16", "16384:bfloat16", "32768:bfloat16")
DEFAULT_HEAD_REAL = ("1024:float32",)
TIMED_HEAD = ("head-dft", "fused-dft")
# logit rows up to this size are also counted on shape-only tensors, to check the two methods agree
LIVE_CHECK_MAX_TOKENS = 4096
MEMORY_ENV = {"MALLOC_MMAP_THRESHOLD_": "65536"}  # RSS follows live tensors (see the module docstring)
# Timing keeps glibc's default: with the 64 KiB threshold every per-row temporary of verl's row loop is a fresh
# mapping, whose page faults made that loop about 2x slower here, which would dilute any DFT/SFT difference.
TIMING_ENV: dict = {}
GIB = 2**30


def proc_status_bytes(field: str) -> int:
    """A ``Vm*`` field of /proc/self/status (reported in kB) in bytes."""
    text = open("/proc/self/status").read()
    return int(re.search(rf"^{field}:\s+(\d+) kB", text, re.M).group(1)) * 1024


def reset_peak_rss() -> int:
    """Reset this process's peak RSS (VmHWM) to its current RSS and return that RSS in bytes."""
    with open("/proc/self/clear_refs", "w") as f:
        f.write("5")
    return proc_status_bytes("VmRSS")


def limit_address_space(budget_bytes: int) -> None:
    """Let this process map at most ``budget_bytes`` more, so a case that does not fit raises, not OOM-kills."""
    limit = proc_status_bytes("VmSize") + budget_bytes
    resource.setrlimit(resource.RLIMIT_AS, (limit, limit))


def memory_child(name: str, n_tokens: int, dtype_name: str, budget_gib: float) -> dict:
    """One pass of one formulation in this fresh process: extra peak RSS after the forward and after the backward.

    An allocation refused by ``RLIMIT_AS`` is reported with the phase it happened in (the forward's number is
    kept when only the backward did not fit).
    """
    import torch

    limit_address_space(int(budget_gib * GIB))
    batch = batch_for([name], n_tokens, getattr(torch, dtype_name))
    result = {"logits_bytes": logits_bytes(n_tokens, dtype_name)}
    base = reset_peak_rss()
    try:
        loss, kept = forward(name, batch)
        result.update(loss=loss.item(), fwd_extra=proc_status_bytes("VmHWM") - base)
        loss.backward()
        result["extra"] = proc_status_bytes("VmHWM") - base
    except RuntimeError as err:  # "DefaultCPUAllocator: not enough memory", from RLIMIT_AS
        if "memory" not in str(err).lower():
            raise
        phase = "backward" if "fwd_extra" in result else "forward"
        result["error"] = f"does not fit in {budget_gib:g} GiB ({phase})"
    return result


def live_row(names, n_tokens: int, dtype_name: str) -> dict:
    """``{name: {"live_fwd", "live"}}``: peak live-tensor bytes of each path on shape-only tensors (``live_bytes``)."""
    import torch

    row = {}
    for name in names:
        batch = batch_for([name], n_tokens, getattr(torch, dtype_name), device="meta")
        peak = live_peak(lambda b: forward(name, b), batch)
        row[name] = {"live_fwd": peak["fwd_extra"], "live": peak["extra"]}
        row[name]["logits_bytes"] = logits_bytes(n_tokens, dtype_name)
        print(f"[live {name} {n_tokens}:{dtype_name}] {json.dumps(row[name])}", file=sys.stderr, flush=True)
    return row


def timing_child(names: list[str], n_tokens: int, dtype_name: str, reps: int, budget_gib: float) -> dict:
    """Time ``names`` end to end (``interleaved_times``) and the loss functions alone (``loss_only_times``).

    Returns ``{"times": {name: [seconds per round]}, "loss_only": {...}}``, or ``{"error": ...}`` if the end-to-end
    timing does not fit. With no ``names`` the logits are not even built: only the loss functions are timed.
    """
    import torch

    limit_address_space(int(budget_gib * GIB))
    dtype = getattr(torch, dtype_name)
    try:
        batch = batch_for(names, n_tokens, dtype)
        times = interleaved_times(names, batch, reps)
    except RuntimeError as err:
        if "memory" not in str(err).lower():
            raise
        return {"error": f"does not fit in {budget_gib:g} GiB"}
    return {"times": times, "loss_only": loss_only_times(batch, dtype)}


def interleaved_times(names: list[str], batch: dict, reps: int) -> dict:
    """Wall time of forward + backward from the logits, ``reps`` interleaved rounds over ``names``.

    Interleaving (order reversed every other round) spreads the drift of a shared machine's load over all
    formulations alike. Round 0 is a warm-up and is dropped. Returns ``{name: [seconds per round]}``.
    """
    times = {name: [] for name in names}
    for rnd in range(reps + 1 if names else 0):
        for name in names if rnd % 2 else names[::-1]:
            for leaf in leaves(batch):
                leaf.grad = None
            start = time.perf_counter()
            loss, kept = forward(name, batch)
            loss.backward()
            elapsed = time.perf_counter() - start
            del loss, kept
            if rnd:
                times[name].append(elapsed)
    return times


def loss_only_times(batch: dict, dtype, reps: int = 200) -> dict:
    """Median time of the loss function alone, forward + backward from the log-probs, for sft and dft.

    Everything before it (the log-prob path from the logits) is the same code for both, so ``dft - sft`` here
    is all the time DFT adds, measured on a cheap operation that can be repeated until the noise is small.
    """
    import torch

    from dft.train.losses.registry import LossConfig, losses

    log_probs = (-20 * torch.rand(len(batch["ids"]))).to(dtype).requires_grad_(True)
    times = {"sft": [], "dft": []}
    for _ in range(reps):
        for name in times:
            log_probs.grad = None
            start = time.perf_counter()
            model_output = {"log_probs": torch.nested.nested_tensor_from_jagged(log_probs, batch["offsets"])}
            loss, _ = losses()[name](LossConfig(name), model_output, batch["data"])
            loss.backward()
            times[name].append(time.perf_counter() - start)
    return {name: statistics.median(ts) for name, ts in times.items()}


def calibrate(size_gib: float) -> dict:
    """Sanity check of the method: a tensor of known size, written in full, must read at its size."""
    import torch

    base = reset_peak_rss()
    known = torch.ones(int(size_gib * GIB) // 4, dtype=torch.float32)
    return {"known": known.numel() * known.element_size(), "measured": proc_status_bytes("VmHWM") - base}


def run_child(args: list[str], extra_env: dict) -> dict:
    """Run this script as a child with ``args`` and ``extra_env`` and parse the JSON line it prints last."""
    script = os.path.abspath(__file__)
    env = dict(os.environ, PYTHONWARNINGS="ignore", **extra_env)
    out = subprocess.run(
        [sys.executable, script, *args],
        capture_output=True,
        text=True,
        env=env,
        cwd=os.path.dirname(os.path.dirname(script)),
    )
    if out.returncode != 0:  # e.g. -9: killed by the OOM killer
        return {"error": f"child exited {out.returncode}: {out.stderr.strip().splitlines()[-1:]}"}
    return json.loads(out.stdout.strip().splitlines()[-1])


def run_row(n_tokens, dtype_name, reps, budget_gib, time_paths: bool, names=FORMULATIONS, timed=TIMED) -> dict:
    """Memory of each path in ``names`` (a fresh child each), then timing: ``timed`` end to end if ``time_paths``,
    and always the loss functions alone.

    Timing uses glibc's default malloc; where that does not fit (its heap keeps freed row buffers), it falls
    back to the memory children's allocator setting and says so in ``timing_note``.
    """
    size = [str(n_tokens), dtype_name, "--budget-gib", str(budget_gib)]
    row = {name: run_child(["--memory", name, *size], MEMORY_ENV) for name in names}
    timed = [name for name in timed if "extra" in row[name]] if time_paths else []
    timing_args = ["--timing", ",".join(timed), *size, "--reps", str(reps)]
    timing = run_child(timing_args, TIMING_ENV)
    if "error" in timing:
        row["timing_note"] = f"default malloc {timing['error']}; timed with MALLOC_MMAP_THRESHOLD_=65536"
        timing = run_child(timing_args, MEMORY_ENV)
    times = timing.get("times", {})
    for name, ts in times.items():
        row[name].update(times=ts, median_s=statistics.median(ts))
    if "sft" in times and "dft" in times:  # paired per round, so common load drift cancels
        row["dft_over_sft"] = [d / s for d, s in zip(times["dft"], times["sft"])]
    if "fused-dft" in times and "head-dft" in times:
        row["fused_over_unfused"] = [f / u for f, u in zip(times["fused-dft"], times["head-dft"])]
    row["loss_only"] = timing.get("loss_only")
    row["timing_error"] = timing.get("error")
    return row


def gib(n_bytes) -> str:
    return f"{n_bytes / GIB:.2f}"


def ratio(a: dict, b: dict, key: str) -> str:
    return f"{a[key] / b[key]:.2f}" if key in a and key in b and b[key] else "n/a"


def mib_difference(a: dict, b: dict) -> str:
    """``a``'s extra peak minus ``b``'s, in MiB."""
    return f"{(a['extra'] - b['extra']) / 2**20:.1f}" if "extra" in a and "extra" in b else "n/a"


def both(r: dict, rss_key: str, live_key: str) -> str:
    """``RSS / live`` GiB for a case, ``-`` for a method that did not run (an RSS error is shown instead)."""
    rss = gib(r[rss_key]) if rss_key in r else r.get("error", "-")
    return f"{rss} / {gib(r[live_key]) if live_key in r else '-'}"


def print_cases(results: dict, names=FORMULATIONS, timed=TIMED) -> None:
    """Markdown table: one line per (tokens, dtype, path)."""
    print(
        "| tokens | dtype | loss path | logits GiB | extra after fwd GiB: RSS / live "
        "| extra peak fwd+bwd GiB: RSS / live | median s (min-max) | loss |"
    )
    print("|---:|---|---|---:|---:|---:|---:|---:|")
    for (n, dtype), row in results.items():
        for name in names:
            r = row[name]
            ts = r.get("times")
            t = f"{r['median_s']:.2f} ({min(ts):.2f}-{max(ts):.2f})" if ts else "-"
            if not ts and name in timed and row.get("timing_error"):
                t = row["timing_error"]
            loss = f"{r['loss']:.4g}" if "loss" in r else "-"
            print(
                f"| {n} | {dtype} | {name} | {gib(r.get('logits_bytes', 0))} | {both(r, 'fwd_extra', 'live_fwd')} "
                f"| {both(r, 'extra', 'live')} | {t} | {loss} |"
            )


def print_head_ratios(results: dict) -> None:
    """Markdown table per head row: what the fused path saves (live-tensor peaks) and costs in time."""
    print(
        "| tokens | dtype | extra peak GiB, live: original / unfused DFT / fused DFT | original / fused DFT "
        "| unfused / fused DFT | fused DFT / SFT | original / fused DFT, RSS | fused / unfused DFT time (paired) |"
    )
    print("|---:|---|---:|---:|---:|---:|---:|---:|")
    for (n, dtype), row in results.items():
        o, u, f, fs = (row.get(k, {}) for k in ("head-original", "head-dft", "fused-dft", "fused-sft"))
        paired = row.get("fused_over_unfused")
        t = f"{statistics.median(paired):.3f} ({min(paired):.3f}-{max(paired):.3f})" if paired else "n/a"
        print(
            f"| {n} | {dtype} | {' / '.join(gib(r['live']) if 'live' in r else '-' for r in (o, u, f))} "
            f"| {ratio(o, f, 'live')} "
            f"| {ratio(u, f, 'live')} | {ratio(f, fs, 'live')} | {ratio(o, f, 'extra')} | {t} |"
        )


def print_ratios(results: dict) -> None:
    """Markdown table per (tokens, dtype): DFT/SFT time and memory, original/ours memory, the weight's own cost."""
    print(
        "| tokens | dtype | DFT/SFT time, paired rounds: median (min-max) | loss fn alone ms: SFT / DFT "
        "| DFT/SFT time from the loss-fn difference | DFT/SFT extra peak | original/ours extra peak "
        "| original/ours extra after fwd | weight's own extra peak MiB: original-ce / dft-sft |"
    )
    print("|---:|---|---:|---:|---:|---:|---:|---:|---:|")
    for (n, dtype), row in results.items():
        s, d, o, c = (row[k] for k in FORMULATIONS)
        paired, lo = row.get("dft_over_sft"), row.get("loss_only")
        t = f"{statistics.median(paired):.3f} ({min(paired):.3f}-{max(paired):.3f})" if paired else "n/a"
        lo_ms = f"{lo['sft'] * 1e3:.2f} / {lo['dft'] * 1e3:.2f}" if lo else "n/a"
        lo_ratio = f"{1 + (lo['dft'] - lo['sft']) / s['median_s']:.4f}" if lo and "median_s" in s else "n/a"
        print(
            f"| {n} | {dtype} | {t} | {lo_ms} | {lo_ratio} | {ratio(d, s, 'extra')} | {ratio(o, d, 'extra')} "
            f"| {ratio(o, d, 'fwd_extra')} | {mib_difference(o, c)} / {mib_difference(d, s)} |"
        )
    for (n, dtype), row in results.items():
        if row.get("timing_note"):
            print(f"\n{n} {dtype}: {row['timing_note']}")


def default_budget_gib() -> float:
    """Address space a child may take: what the machine has available now, less 2 GiB, at most 18 GiB."""
    available = int(re.search(r"MemAvailable:\s+(\d+) kB", open("/proc/meminfo").read()).group(1)) * 1024
    return round(min(18.0, available / GIB - 2.0), 1)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--rows", nargs="*", default=list(DEFAULT_ROWS), help="TOKENS:DTYPE, e.g. 16384:bfloat16")
    parser.add_argument("--reps", type=int, default=5, help="timed rounds after a warm-up round")
    parser.add_argument(
        "--time-max-tokens", type=int, default=4096, help="time the whole path only up to this many tokens"
    )
    parser.add_argument("--head-rows", nargs="*", default=list(DEFAULT_HEAD_ROWS), help="TOKENS:DTYPE from hidden")
    parser.add_argument("--head-real", nargs="*", default=list(DEFAULT_HEAD_REAL), help="head rows also run for real")
    parser.add_argument("--head-reps", type=int, default=2, help="timed rounds of the real head rows")
    parser.add_argument("--head-paths", nargs="+", default=list(HEAD_PATHS), help="paths of the head rows")
    parser.add_argument("--budget-gib", type=float, default=None, help="address space a child may add")
    parser.add_argument("--memory", nargs=3, metavar=("NAME", "TOKENS", "DTYPE"), help=argparse.SUPPRESS)
    parser.add_argument("--timing", nargs=3, metavar=("NAMES", "TOKENS", "DTYPE"), help=argparse.SUPPRESS)
    parser.add_argument("--calibrate", type=float, metavar="GIB", help=argparse.SUPPRESS)
    args = parser.parse_args()
    budget = args.budget_gib or default_budget_gib()
    if args.calibrate:
        return print(json.dumps(calibrate(args.calibrate)))
    if args.memory:
        return print(json.dumps(memory_child(args.memory[0], int(args.memory[1]), args.memory[2], budget)))
    if args.timing:
        names, n, dtype = args.timing
        names = [name for name in names.split(",") if name]
        return print(json.dumps(timing_child(names, int(n), dtype, args.reps, budget)))
    run(args, budget)


def run(args, budget_gib: float) -> None:
    """Calibrate, measure every row, print the tables (and the machine's load, since time is shared)."""
    import torch

    calibration = run_child(["--calibrate", "1"], MEMORY_ENV)
    load_before = os.getloadavg()
    results, head = {}, {}
    for spec in args.rows:
        n, dtype = int(spec.split(":")[0]), spec.split(":")[1]
        results[(n, dtype)] = run_row(n, dtype, args.reps, budget_gib, n <= args.time_max_tokens)
        if n <= LIVE_CHECK_MAX_TOKENS:
            for name, live in live_row(FORMULATIONS, n, dtype).items():
                results[(n, dtype)][name].update(live)
        print(f"[{spec}] {json.dumps(results[(n, dtype)])}", file=sys.stderr, flush=True)
    for spec in args.head_rows:
        n, dtype = int(spec.split(":")[0]), spec.split(":")[1]
        real = spec in args.head_real
        paths = args.head_paths
        head[(n, dtype)] = run_row(n, dtype, args.head_reps, budget_gib, True, paths, TIMED_HEAD) if real else {}
        for name, live in live_row(paths, n, dtype).items():
            head[(n, dtype)].setdefault(name, {}).update(live)
        print(f"[head {spec}] {json.dumps(head[(n, dtype)])}", file=sys.stderr, flush=True)
    print(
        f"torch {torch.__version__}, {os.cpu_count()} CPUs, vocabulary {VOCAB}, LM head {HIDDEN} x {VOCAB}, "
        f"child address-space budget {budget_gib:g} GiB, {args.reps} timed rounds up to {args.time_max_tokens} "
        f"tokens ({args.head_reps} for the real head rows), load average {load_before[0]:.2f} before / "
        f"{os.getloadavg()[0]:.2f} after"
    )
    print(f"calibration: a {gib(calibration['known'])} GiB tensor measured as {gib(calibration['measured'])} GiB\n")
    print_cases(results)
    print()
    print_ratios(results)
    print("\nFrom the last hidden states (LM head included):\n")
    print_cases(head, args.head_paths, TIMED_HEAD)
    print()
    print_head_ratios(head)


if __name__ == "__main__":
    main()
