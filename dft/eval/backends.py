"""Generation backends: one interface, ``generate(requests, params, stops) -> n Completions per request``.

Every request carries the prompt's token ids (``ModelFormat.encode``: one BOS where the model wants one), its
own new-token budget and seed; both backends take the ids as they are, so HF and vLLM see the same tokens.
Both stop on ``stops`` (token ids and strings) and return the text before the stop, with why it ended.

- ``VLLMBackend``: vLLM on GPUs (tensor parallel inside one engine); ``max_model_len`` is the model's context.
  Its arguments are built by ``vllm_inputs``, a plain function that tests check without starting vLLM; vLLM's
  CPU build runs it on the tiny model (tests/test_vllm_on_cpu.py).
- ``HFBackend``: Hugging Face ``generate`` on CPU, for tests and the quickstart.
- ``RayDataParallel``: replicas of either backend as Ray actors, one per GPU group or node, each taking an
  even share of the requests. Tests run it on CPU with the HF backend, so the cluster path is the same code.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

# the generation backends, by the name the configs use (``backend=``)
BACKENDS = ("hf", "vllm")

STOP, LENGTH = "stop", "length"


@dataclass(frozen=True)
class SamplingParams:
    """The paper's protocol by default: 16 samples, temperature 1.0, top-p 1.0, up to 4096 new tokens."""

    n: int = 16
    temperature: float = 1.0
    top_p: float = 1.0
    max_new_tokens: int = 4096
    seed: int = 0


@dataclass(frozen=True)
class Request:
    """``n`` samples of one prompt (token ids), each with at most ``max_new_tokens`` new tokens."""

    prompt_ids: tuple[int, ...]
    n: int
    max_new_tokens: int
    seed: int


@dataclass(frozen=True)
class Completion:
    """One sample: the text before the stop; ``finish`` is ``stop`` or ``length`` (the budget ran out); ``stop``
    names the stop token or string that ended it."""

    text: str
    finish: str
    stop: str | None = None


def vllm_inputs(requests: list[Request], params: SamplingParams, stops) -> tuple[list[dict], list[dict]]:
    """vLLM's token-id prompts and one ``SamplingParams`` keyword dict per request (plain data, no vLLM needed).

    ``top_k=-1`` (no top-k), stop ids and strings from ``stops``, the stop text left out of the output, special
    tokens skipped in the text (vLLM's defaults, written out so the protocol reads in one place).
    """
    prompts = [{"prompt_token_ids": list(r.prompt_ids)} for r in requests]
    sampling = [
        {"n": r.n, "temperature": params.temperature, "top_p": params.top_p, "top_k": -1,
         "max_tokens": r.max_new_tokens, "seed": r.seed, "stop": list(stops.strings),
         "stop_token_ids": list(stops.token_ids), "include_stop_str_in_output": False,
         "skip_special_tokens": True}
        for r in requests
    ]  # fmt: skip
    return prompts, sampling


def vllm_completion(choice, stops) -> Completion:
    """A vLLM ``CompletionOutput`` as a Completion; its ``stop_reason`` is a stop id, a stop string, or None for
    the tokenizer's eos (the first of ``stops.tokens``)."""
    text, found = stops.cut(choice.text)
    if choice.finish_reason not in (STOP, LENGTH):
        raise RuntimeError(f"vLLM ended a sample with finish_reason={choice.finish_reason!r}")
    if choice.finish_reason == LENGTH and found is None:
        return Completion(text, LENGTH)
    reason = choice.stop_reason
    if isinstance(reason, int):
        reason = stops.token_name(reason) if reason in stops.token_ids else str(reason)
    return Completion(text, STOP, found or reason or stops.tokens[0])


class VLLMBackend:
    """vLLM engine; ``tensor_parallel_size`` GPUs per engine, ``max_model_len`` = the model's context."""

    def __init__(self, model_path: str, context: int, tensor_parallel_size: int = 1, **engine_kwargs):
        from vllm import LLM

        self.llm = LLM(model=model_path, tensor_parallel_size=tensor_parallel_size, max_model_len=context,
                       **engine_kwargs)  # fmt: skip

    def generate(self, requests: list[Request], params: SamplingParams, stops, progress=None) -> list[list[Completion]]:
        from vllm import SamplingParams as VLLMSamplingParams

        prompts, sampling = vllm_inputs(requests, params, stops)
        outputs = self.llm.generate(prompts, [VLLMSamplingParams(**kw) for kw in sampling], use_tqdm=False)
        if progress is not None:
            progress(sum(r.n for r in requests))
        return [[vllm_completion(choice, stops) for choice in out.outputs] for out in outputs]


class HFBackend:
    """Hugging Face transformers generation (CPU or one GPU); seeds each batch with its first request's seed."""

    def __init__(self, model_path: str, context: int | None = None, batch_size: int = 16, dtype: str = "float32",
                 device: str = "cpu"):  # fmt: skip
        import torch
        from transformers import AutoModelForCausalLM, AutoTokenizer

        self.tokenizer = AutoTokenizer.from_pretrained(model_path)
        self.model = AutoModelForCausalLM.from_pretrained(model_path, dtype=getattr(torch, dtype)).to(device).eval()
        self.batch_size, self.device = batch_size, device

    def generate(self, requests: list[Request], params: SamplingParams, stops, progress=None) -> list[list[Completion]]:
        """Completions per request, ``batch_size`` requests at a time; ``progress(samples)`` after each batch."""
        completions = []
        for start in range(0, len(requests), self.batch_size):
            batch = requests[start : start + self.batch_size]
            completions += self._generate_batch(batch, params, stops)
            if progress is not None:
                progress(sum(r.n for r in batch))
        return completions

    def _generate_batch(self, requests: list[Request], params: SamplingParams, stops) -> list[list[Completion]]:
        import torch

        n = max(r.n for r in requests)
        pad = stops.token_ids[0]
        input_ids, attention_mask = _left_padded([r.prompt_ids for r in requests], pad, self.device)
        torch.manual_seed(requests[0].seed)
        with torch.no_grad():
            out = self.model.generate(
                input_ids=input_ids, attention_mask=attention_mask,
                max_new_tokens=max(r.max_new_tokens for r in requests), num_return_sequences=n,
                eos_token_id=list(stops.token_ids), pad_token_id=pad,
                stopping_criteria=[_stop_strings(self.tokenizer, stops.strings, input_ids.shape[1])] if stops.strings
                else [],
                **_hf_sampling(params),
            )  # fmt: skip
        new = out[:, input_ids.shape[1] :].tolist()
        return [[self._completion(new[i * n + j][: r.max_new_tokens], stops) for j in range(r.n)]
                for i, r in enumerate(requests)]  # fmt: skip

    def _completion(self, ids: list[int], stops) -> Completion:
        """The text of ``ids`` up to the first stop id or stop string (``length`` when neither came)."""
        stop_at = next((k for k, token in enumerate(ids) if token in stops.token_ids), None)
        kept = ids if stop_at is None else ids[:stop_at]
        text, found = stops.cut(self.tokenizer.decode(kept, skip_special_tokens=True))
        if found is not None:
            return Completion(text, STOP, found)
        if stop_at is not None:
            return Completion(text, STOP, stops.token_name(ids[stop_at]))
        return Completion(text, LENGTH)


def _hf_sampling(params: SamplingParams) -> dict:
    """HF ``generate`` arguments for the protocol's sampling. Written out because HF fills unset ones from the
    model's generation_config and its own defaults (``top_k=50``), which vLLM does not apply."""
    if params.temperature == 0:
        return {"do_sample": False}
    return {"do_sample": True, "temperature": params.temperature, "top_p": params.top_p, "top_k": 0,
            "typical_p": 1.0, "min_p": None, "repetition_penalty": 1.0, "no_repeat_ngram_size": 0}  # fmt: skip


def _left_padded(prompts, pad: int, device):
    """(input_ids, attention_mask) of token-id prompts, padded on the left."""
    import torch

    width = max(map(len, prompts))
    ids = torch.full((len(prompts), width), pad, dtype=torch.long)
    mask = torch.zeros((len(prompts), width), dtype=torch.long)
    for row, prompt in enumerate(prompts):
        ids[row, width - len(prompt) :] = torch.tensor(prompt, dtype=torch.long)
        mask[row, width - len(prompt) :] = 1
    return ids.to(device), mask.to(device)


def _stop_strings(tokenizer, strings, prompt_length: int):
    """A stopping criterion: a sequence is done once its recent generated text holds a stop string.

    HF's own ``stop_strings`` preprocesses the whole vocabulary on every call (seconds for 150k tokens). Here each
    step decodes only the newest token of each sequence, and only when it could end a stop string (it holds a
    stop string's last character, or is part of a multi-byte character) the last few tokens: enough for the
    longest stop string, as a token is at least one byte.
    """
    import torch
    from transformers import StoppingCriteria

    window = 4 * max(map(len, strings))
    last_chars = {s[-1] for s in strings} | {"\ufffd"}

    def ends_a_stop(row) -> bool:
        tail = tokenizer.decode(row[max(prompt_length, len(row) - window) :], skip_special_tokens=False)
        return any(s in tail for s in strings)

    class StopStrings(StoppingCriteria):
        def __call__(self, input_ids, scores, **kwargs):
            newest = tokenizer.batch_decode(input_ids[:, -1:].tolist(), skip_special_tokens=False)
            done = [any(c in text for c in last_chars) and ends_a_stop(input_ids[k].tolist())
                    for k, text in enumerate(newest)]  # fmt: skip
            return torch.tensor(done, device=input_ids.device)

    return StopStrings()


class RayDataParallel:
    """``replicas`` copies of a backend as Ray actors; each call splits the requests evenly among them."""

    def __init__(self, backend_cls, replicas: int, gpus_per_replica: float = 0, **backend_kwargs):
        import ray

        from dft.core.ray_cluster import init_ray

        init_ray()  # ray.init(), or a local Ray when the cluster address Ray would follow is dead
        resources = {"num_gpus": gpus_per_replica} if gpus_per_replica else {"num_cpus": 1}
        actor_cls = ray.remote(**resources)(backend_cls)
        self.replicas = [actor_cls.remote(**backend_kwargs) for _ in range(replicas)]

    def generate(self, requests: list[Request], params: SamplingParams, stops, progress=None) -> list[list[Completion]]:
        """Completions per request, in order; ``progress(samples)`` as each replica finishes its shard."""
        import ray

        size = math.ceil(len(requests) / len(self.replicas)) or 1
        shards = [requests[i : i + size] for i in range(0, len(requests), size)]
        futures = [r.generate.remote(shard, params, stops) for r, shard in zip(self.replicas, shards)]
        pending = list(futures)
        while progress is not None and pending:
            done, pending = ray.wait(pending, num_returns=1)
            progress(sum(r.n for r in shards[futures.index(done[0])]))
        return [completions for shard in ray.get(futures) for completions in shard]


def make_backend(kind: str, model_path: str, context: int, data_parallel: int = 1, gpus_per_replica: float = 0,
                 **kwargs):  # fmt: skip
    """One of ``BACKENDS``, wrapped in RayDataParallel when ``data_parallel`` > 1."""
    backends = {"hf": HFBackend, "vllm": VLLMBackend}
    if kind not in BACKENDS:
        raise ValueError(f"backend={kind!r} is not known; valid backends: {', '.join(BACKENDS)}")
    if data_parallel > 1:
        return RayDataParallel(backends[kind], data_parallel, gpus_per_replica, model_path=model_path,
                               context=context, **kwargs)  # fmt: skip
    return backends[kind](model_path, context=context, **kwargs)
