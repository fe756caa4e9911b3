"""Generation backends: one interface, ``generate(prompts, params, seeds) -> n completions per prompt``.

- ``VLLMBackend``: vLLM on GPUs (tensor parallel inside one engine). Not installable on a CPU-only machine, so
  it is a thin adapter over ``vllm.LLM.generate`` with per-request seeds.
- ``HFBackend``: Hugging Face ``generate`` on CPU, for tests and the quickstart.
- ``RayDataParallel``: replicas of either backend as Ray actors, one per GPU group or node, each taking an
  even share of the prompts. Tests run it on CPU with the HF backend, so the cluster path is the same code.
"""

import math
from dataclasses import dataclass


@dataclass(frozen=True)
class SamplingParams:
    """The paper's protocol by default: 16 samples, temperature 1.0, top-p 1.0, up to 4096 new tokens."""

    n: int = 16
    temperature: float = 1.0
    top_p: float = 1.0
    max_new_tokens: int = 4096
    seed: int = 0


class HFBackend:
    """Hugging Face transformers generation (CPU or one GPU); seeds each batch with its first prompt's seed."""

    def __init__(self, model_path: str, batch_size: int = 16, dtype: str = "float32", device: str = "cpu"):
        import torch
        from transformers import AutoModelForCausalLM, AutoTokenizer

        self.tokenizer = AutoTokenizer.from_pretrained(model_path, padding_side="left")
        if self.tokenizer.pad_token is None:
            self.tokenizer.pad_token = self.tokenizer.eos_token
        dtype = getattr(torch, dtype)
        self.model = AutoModelForCausalLM.from_pretrained(model_path, dtype=dtype).to(device).eval()
        self.batch_size, self.device = batch_size, device

    def generate(self, prompts: list[str], params: SamplingParams, seeds: list[int]) -> list[list[str]]:
        completions = []
        for start in range(0, len(prompts), self.batch_size):
            batch = prompts[start : start + self.batch_size]
            completions += self._generate_batch(batch, params, seeds[start])
        return completions

    def _generate_batch(self, prompts: list[str], params: SamplingParams, seed: int) -> list[list[str]]:
        import torch

        torch.manual_seed(seed)
        inputs = self.tokenizer(prompts, return_tensors="pt", padding=True, add_special_tokens=False).to(self.device)
        sampling = {"do_sample": True, "temperature": params.temperature, "top_p": params.top_p}
        with torch.no_grad():
            out = self.model.generate(
                **inputs,
                max_new_tokens=params.max_new_tokens,
                num_return_sequences=params.n,
                pad_token_id=self.tokenizer.pad_token_id,
                **(sampling if params.temperature > 0 else {"do_sample": False}),
            )
        texts = self.tokenizer.batch_decode(out[:, inputs["input_ids"].shape[1] :], skip_special_tokens=True)
        return [texts[i * params.n : (i + 1) * params.n] for i in range(len(prompts))]


class VLLMBackend:
    """vLLM engine; ``tensor_parallel_size`` GPUs per engine, one sampling request (with its seed) per prompt."""

    def __init__(self, model_path: str, tensor_parallel_size: int = 1, **engine_kwargs):
        from vllm import LLM

        self.llm = LLM(model=model_path, tensor_parallel_size=tensor_parallel_size, **engine_kwargs)

    def generate(self, prompts: list[str], params: SamplingParams, seeds: list[int]) -> list[list[str]]:
        from vllm import SamplingParams as VLLMSamplingParams

        requests = [
            VLLMSamplingParams(
                n=params.n,
                temperature=params.temperature,
                top_p=params.top_p,
                max_tokens=params.max_new_tokens,
                seed=seed,
            )
            for seed in seeds
        ]
        outputs = self.llm.generate(prompts, requests, use_tqdm=False)
        return [[choice.text for choice in out.outputs] for out in outputs]


class RayDataParallel:
    """``replicas`` copies of a backend as Ray actors; each call splits the prompts evenly among them."""

    def __init__(self, backend_cls, replicas: int, gpus_per_replica: float = 0, **backend_kwargs):
        import ray

        if not ray.is_initialized():
            ray.init()
        resources = {"num_gpus": gpus_per_replica} if gpus_per_replica else {"num_cpus": 1}
        actor_cls = ray.remote(**resources)(backend_cls)
        self.replicas = [actor_cls.remote(**backend_kwargs) for _ in range(replicas)]

    def generate(self, prompts: list[str], params: SamplingParams, seeds: list[int]) -> list[list[str]]:
        import ray

        size = math.ceil(len(prompts) / len(self.replicas)) or 1
        shards = [(prompts[i : i + size], seeds[i : i + size]) for i in range(0, len(prompts), size)]
        futures = [r.generate.remote(p, params, s) for r, (p, s) in zip(self.replicas, shards)]
        return [completions for shard in ray.get(futures) for completions in shard]


def make_backend(kind: str, model_path: str, data_parallel: int = 1, gpus_per_replica: float = 0, **kwargs):
    """``hf`` or ``vllm``, wrapped in RayDataParallel when ``data_parallel`` > 1."""
    backends = {"hf": HFBackend, "vllm": VLLMBackend}
    if kind not in backends:
        raise ValueError(f"backend={kind!r} is not known; valid backends: {sorted(backends)}")
    if data_parallel > 1:
        return RayDataParallel(backends[kind], data_parallel, gpus_per_replica, model_path=model_path, **kwargs)
    return backends[kind](model_path, **kwargs)
