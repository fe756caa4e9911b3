"""A Hugging Face rollout for verl's PPO/GRPO trainer: ``actor_rollout_ref.rollout.name=hf``, for CPU machines.

verl 0.9.1's ``main_ppo`` generates only through rollout servers (vLLM, SGLang, TensorRT-LLM), and none of them
steps on a CPU: vLLM's CPU backend repacks linear weights after loading and leaves empty parameters, so verl's
in-place weight update fails. This module plugs a Hugging Face model into verl's own rollout seams instead
(registered by :func:`register` when verl imports this module as a plugin, entry point ``dft_hf_rollout``):

- :class:`HFRolloutServer`, a Ray actor holding the model. It answers ``generate(prompt_ids, sampling_params,
  request_id)`` with a ``TokenOutput`` (response token ids, their log-probs) as verl's vLLM server does, batching
  concurrent requests into one ``model.generate``, and ``load_weights(named tensors)`` after each actor update.
- :class:`HFReplica` (``RolloutReplicaRegistry`` name ``hf``): launches one server per replica.
- :class:`HFServerAdapter` (``_ROLLOUT_REGISTRY[("hf", "async")]``): lives in every training worker. verl's sync
  trainer hands it the actor's weights after every step; each replica's first worker sends them to its server.

Log-probs are those of ``log_softmax(logits / temperature)`` (temperature 1 for greedy requests), which is what the
actor computes for ``old_log_probs``, so verl's ``training/rollout_probs_diff_*`` metrics compare like with like.
"""

from __future__ import annotations

import asyncio
import logging
import os
import threading
from dataclasses import dataclass
from typing import Any

import ray
import torch
from verl.workers.rollout.base import BaseRollout
from verl.workers.rollout.replica import RolloutReplica, TokenOutput

logger = logging.getLogger(__name__)

NAME = "hf"
BATCH_WINDOW_S = 0.02  # how long the server waits for concurrent requests to join a batch


@dataclass(frozen=True)
class GenParams:
    """One request's sampling parameters, as verl's agent loop sends them (requests sharing them share a batch)."""

    max_new_tokens: int
    temperature: float = 1.0
    top_p: float = 1.0
    top_k: int = -1
    repetition_penalty: float = 1.0
    logprobs: bool = False

    @classmethod
    def from_request(cls, sampling_params: dict, prompt_len: int, prompt_length: int, response_length: int):
        """verl's vLLM server rules: ``max_tokens`` if given, else what fits prompt_length + response_length."""
        params = dict(sampling_params)
        max_tokens = params.pop("max_tokens", params.pop("max_new_tokens", None))
        if max_tokens is None:
            max_tokens = min(response_length, prompt_length + response_length - prompt_len)
        known = {k: params[k] for k in ("temperature", "top_p", "top_k", "repetition_penalty") if k in params}
        return cls(max_new_tokens=max(1, int(max_tokens)), logprobs=bool(params.get("logprobs")), **known)

    def generation_config(self, eos_ids: list[int], pad_id: int):
        """A fresh GenerationConfig: the model's own sampling defaults must not leak into verl's requests."""
        from transformers import GenerationConfig

        sample = self.temperature > 0
        return GenerationConfig(
            max_new_tokens=self.max_new_tokens,
            do_sample=sample,
            temperature=self.temperature if sample else None,
            top_p=self.top_p if sample else None,
            top_k=(self.top_k if self.top_k > 0 else 0) if sample else None,
            repetition_penalty=self.repetition_penalty,
            eos_token_id=eos_ids,
            pad_token_id=pad_id,
        )


def _eos_ids(model) -> list[int]:
    eos = model.generation_config.eos_token_id
    if eos is None:
        eos = model.config.eos_token_id
    return [eos] if isinstance(eos, int) else list(eos or [])


class HFRolloutServer:
    """Ray actor: a Hugging Face causal LM answering verl's token-in, token-out ``generate`` calls."""

    def __init__(self, config, model_config, replica_rank: int = 0):
        from transformers import AutoModelForCausalLM
        from verl.utils.config import omega_conf_to_dataclass
        from verl.utils.torch_dtypes import PrecisionType
        from verl.workers.config import HFModelConfig, RolloutConfig

        self.config = omega_conf_to_dataclass(config, dataclass_type=RolloutConfig)
        model_config = omega_conf_to_dataclass(model_config, dataclass_type=HFModelConfig)
        dtype = PrecisionType.to_dtype(self.config.dtype)
        self.model = AutoModelForCausalLM.from_pretrained(model_config.local_path, dtype=dtype).eval()
        self.eos_ids = _eos_ids(self.model)
        pad = self.model.generation_config.pad_token_id
        self.pad_id = pad if pad is not None else self.eos_ids[0]
        torch.manual_seed(self.config.seed + replica_rank)
        self.global_steps = None
        self._lock = threading.Lock()  # one model.generate or load_weights at a time
        self._pending: list[tuple[list[int], GenParams, asyncio.Future]] = []
        self._wake: asyncio.Event | None = None

    def ready(self) -> bool:
        return True

    async def generate(self, prompt_ids, sampling_params: dict, request_id: str, **unused: Any) -> TokenOutput:
        """Response token ids (EOS included, as vLLM returns them) and their log-probs when asked for."""
        prompt_ids = [int(t) for t in prompt_ids]
        params = GenParams.from_request(
            sampling_params, len(prompt_ids), self.config.prompt_length, self.config.response_length
        )
        future = asyncio.get_running_loop().create_future()
        self._pending.append((prompt_ids, params, future))
        if self._wake is None:
            self._wake = asyncio.Event()
            asyncio.get_running_loop().create_task(self._serve())
        self._wake.set()
        token_ids, log_probs = await future
        return TokenOutput(
            token_ids=token_ids,
            log_probs=log_probs if params.logprobs else None,
            stop_reason="completed",
            extra_fields={"global_steps": self.global_steps},
        )

    async def _serve(self) -> None:
        """Forever: wait for requests, let concurrent ones arrive, generate them in batches of equal parameters."""
        while True:
            await self._wake.wait()
            self._wake.clear()
            await asyncio.sleep(BATCH_WINDOW_S)
            while self._pending:
                params = self._pending[0][1]
                batch = [r for r in self._pending if r[1] == params][: self.config.max_num_seqs]
                self._pending = [r for r in self._pending if all(r is not b for b in batch)]
                try:
                    results = await asyncio.to_thread(self._generate_batch, [r[0] for r in batch], params)
                except Exception as exc:  # hand the error to every waiting request, keep serving
                    results = [exc] * len(batch)
                for (_, _, future), result in zip(batch, results):
                    if isinstance(result, Exception):
                        future.set_exception(result)
                    else:
                        future.set_result(result)

    @torch.no_grad()
    def _generate_batch(self, prompts: list[list[int]], params: GenParams) -> list[tuple[list[int], list[float]]]:
        width = max(map(len, prompts))
        input_ids = torch.full((len(prompts), width), self.pad_id, dtype=torch.long)
        attention_mask = torch.zeros_like(input_ids)
        for row, ids in enumerate(prompts):  # left padding: every response starts at column `width`
            input_ids[row, width - len(ids) :] = torch.tensor(ids)
            attention_mask[row, width - len(ids) :] = 1
        with self._lock:
            out = self.model.generate(
                input_ids=input_ids,
                attention_mask=attention_mask,
                generation_config=params.generation_config(self.eos_ids, self.pad_id),
                output_logits=params.logprobs,
                return_dict_in_generate=True,
            )
        new = out.sequences[:, width:]
        log_probs = None
        if params.logprobs:
            scale = params.temperature if params.temperature > 0 else 1.0
            logits = torch.stack(out.logits, dim=1).float() / scale
            log_probs = torch.log_softmax(logits, dim=-1).gather(-1, new.unsqueeze(-1)).squeeze(-1)
        results = []
        for row in range(len(prompts)):
            ids = new[row].tolist()
            stop = next((i + 1 for i, t in enumerate(ids) if t in self.eos_ids), len(ids))
            results.append((ids[:stop], log_probs[row, :stop].tolist() if log_probs is not None else []))
        return results

    def load_weights(self, weights: dict[str, torch.Tensor], global_steps: int | None = None) -> int:
        """Copy the actor's weights (Hugging Face names) into the model; every parameter must be covered."""
        targets = self.model.state_dict()
        unknown = sorted(set(weights) - set(targets))
        if unknown:
            raise KeyError(f"HF rollout: the actor sent weights the rollout model does not have: {unknown[:5]}")
        with self._lock, torch.no_grad():
            for name, tensor in weights.items():
                targets[name].copy_(tensor.to(targets[name].dtype))
        covered = {targets[name].data_ptr() for name in weights}
        missing = sorted(name for name, t in targets.items() if t.data_ptr() not in covered)
        if missing:
            raise KeyError(f"HF rollout: the actor's weights did not cover {missing[:5]}; the rollout would be stale")
        self.global_steps = global_steps
        return len(weights)

    # verl's replica and trainer call these on every server; a Hugging Face model has nothing to free or resume.
    async def set_global_steps(self, global_steps: int) -> None:
        self.global_steps = global_steps

    async def _noop(self, *args, **kwargs) -> None:
        return None

    wake_up = sleep = clear_kv_cache = release_kv_cache = resume_kv_cache = _noop
    resume_generation = resume_engine_generation = open_submission_gate = wait_for_requests_to_drain = _noop
    start_profile = stop_profile = _noop

    async def abort_all_requests(self, reset_prefix_cache: bool = True, reject_request: bool = False) -> dict:
        return {"aborted_count": 0, "request_ids": []}


def server_name(replica_rank: int, is_reward_model=False, is_teacher_model=False, name_suffix: str = "") -> str:
    role = "reward_" if is_reward_model else "teacher_" if is_teacher_model else ""
    return f"{NAME}_server_{role}{replica_rank}_0{name_suffix}"


class HFReplica(RolloutReplica):
    """One :class:`HFRolloutServer` per replica, on the node of the replica's first worker."""

    async def launch_servers(self) -> None:
        node_id = await self.workers[0].__ray_call__.remote(lambda worker: ray.get_runtime_context().get_node_id())
        name = server_name(self.replica_rank, self.is_reward_model, self.is_teacher_model, self.name_suffix)
        affinity = ray.util.scheduling_strategies.NodeAffinitySchedulingStrategy(node_id=node_id, soft=False)
        server = (
            ray.remote(HFRolloutServer)
            .options(name=name, scheduling_strategy=affinity, max_concurrency=self.max_concurrency)
            .remote(self.config, self.model_config, self.replica_rank)
        )
        await server.ready.remote()
        self.servers = [server]
        self._server_handle = server
        self._server_address = f"{NAME}://{name}"  # a key for verl's load balancer; there is no HTTP endpoint


class HFServerAdapter(BaseRollout):
    """In each training worker: passes the actor's weights to the replica's server after every update."""

    def __init__(self, config, model_config, device_mesh, replica_rank: int = -1):
        super().__init__(config, model_config, device_mesh)
        per_replica = (
            self.config.tensor_model_parallel_size
            * self.config.data_parallel_size
            * self.config.pipeline_model_parallel_size
        )
        rank = int(os.environ["RANK"])
        self.replica_rank = rank // per_replica if replica_rank == -1 else replica_rank
        self.sends = rank % per_replica == 0
        self._server = None

    async def resume(self, tags: list[str]) -> None:
        return None

    async def release(self) -> None:
        return None

    async def update_weights(self, weights, wire_format: str = "named_tensors", global_steps=None, **kwargs) -> None:
        """Every rank walks the weights (FSDP gathers each full tensor collectively); the sender ships them."""
        if wire_format != "named_tensors":
            raise NotImplementedError(f"HF rollout takes wire_format='named_tensors', not {wire_format!r}")
        state = {}
        for name, tensor in weights:
            if self.sends:
                state[name] = tensor.detach().to("cpu", copy=True)
        if self.sends:
            if self._server is None:
                self._server = ray.get_actor(server_name(self.replica_rank))
            await self._server.load_weights.remote(state, global_steps)


def _load_replica() -> type[RolloutReplica]:
    return HFReplica


def register() -> None:
    """Make ``rollout.name=hf`` known to verl's replica registry and to its worker-side rollout registry."""
    from verl.workers.rollout.base import _ROLLOUT_REGISTRY
    from verl.workers.rollout.replica import RolloutReplicaRegistry

    RolloutReplicaRegistry.register(NAME, _load_replica)
    _ROLLOUT_REGISTRY[(NAME, "async")] = f"{__name__}.HFServerAdapter"


register()  # on import: verl's plugin loader imports this module (setup.py, entry point dft_hf_rollout)
