"""CPU support for verl 0.9.1, loaded by verl itself through its ``verl.plugins`` entry point.

verl has no CPU platform. This plugin adds one through verl's own seams, so that the real engine trainer
(FSDP2, checkpoints, resume) runs on 1 or 2 gloo processes on a laptop or in CI:

1. ``PlatformRegistry.register(platform="cpu")``: a platform whose ``device_module`` answers what verl asks of
   ``torch.cuda``. It is registered after verl's built-in platforms, so auto-detection only reaches it where no
   NVIDIA, Ascend or ROCm device is found; ``VERL_PLATFORM=cpu`` selects it explicitly.
2. ``EngineRegistry.register(..., device="cpu")``: verl registers its FSDP language-model engine for ``cuda``
   and ``npu`` only. Done only when the CPU platform is the active one.
3. Process groups. Missing seam: ``verl.utils.distributed`` builds the backend string
   ``f"cpu:gloo,{device}:{backend}"``, which torch rejects when the device is the CPU ("Duplicate device type
   cpu"), and no platform hook changes it. When the CPU platform is active, and only then, the two init
   functions are wrapped to pass plain ``gloo``; they are otherwise untouched, so CUDA machines see no change.
4. PPO/GRPO (``verl.trainer.main_ppo``), CPU platform only, two more missing seams: FSDP2's forward-only engines
   (the reference model) offload with ``CPUOffloadPolicy(pin_memory=True)``, and pinning needs an accelerator;
   verl's value-model loader (the PPO critic) hard-codes ``attn_implementation="flash_attention_2"``. The first
   is given an unpinned policy, the second loads with the model config's attention (``override_config``), as
   verl's language-model loader does.
5. The Hugging Face rollout (``rollout.name=hf``) is :mod:`dft.rl.hf_rollout`, a plugin of its own (the
   ``dft_hf_rollout`` entry point), registered on every platform.
"""

import os
import resource
import shutil
from contextlib import contextmanager
from typing import Any, Optional

import torch
from torch.distributed.fsdp import CPUOffloadPolicy
from verl.plugin.platform.platform_base import PlatformBase
from verl.plugin.platform.platform_manager import PlatformRegistry, get_platform

CPU = "cpu"


def _peak_rss_bytes() -> int:
    # ru_maxrss is in KiB on Linux: the process's peak resident memory, the closest CPU analogue of the
    # CUDA allocator's peak statistics that verl logs as perf/max_memory_*.
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * 1024


class CPUDeviceModule:
    """The subset of the ``torch.cuda`` API that verl calls through ``get_torch_device()``, for the CPU."""

    is_available = staticmethod(lambda: True)
    device_count = staticmethod(lambda: 1)
    current_device = staticmethod(lambda: CPU)
    set_device = staticmethod(lambda device=None: None)
    synchronize = staticmethod(lambda device=None: None)
    empty_cache = staticmethod(lambda: None)
    ipc_collect = staticmethod(lambda: None)
    manual_seed = staticmethod(torch.manual_seed)
    manual_seed_all = staticmethod(torch.manual_seed)
    get_device_name = staticmethod(lambda device=None: "CPU")
    get_device_capability = staticmethod(lambda device=None: (None, None))
    reset_peak_memory_stats = staticmethod(lambda device=None: None)
    memory_allocated = staticmethod(lambda device=None: 0)
    memory_reserved = staticmethod(lambda device=None: 0)
    max_memory_allocated = staticmethod(lambda device=None: _peak_rss_bytes())
    max_memory_reserved = staticmethod(lambda device=None: _peak_rss_bytes())

    @staticmethod
    def mem_get_info(device=None) -> tuple[int, int]:
        total = os.sysconf("SC_PAGE_SIZE") * os.sysconf("SC_PHYS_PAGES")
        free = os.sysconf("SC_PAGE_SIZE") * os.sysconf("SC_AVPHYS_PAGES")
        return free, total

    @staticmethod
    def memory_stats(device=None) -> dict:
        return {}

    @staticmethod
    def get_rng_state(device=None) -> torch.Tensor:
        return torch.get_rng_state()

    @staticmethod
    def set_rng_state(state: torch.Tensor, device=None) -> None:
        torch.set_rng_state(state)


class PlatformCPU(PlatformBase):
    """verl platform for machines without an accelerator: gloo collectives, host memory, CPU Ray resources."""

    @property
    def device_name(self) -> str:
        return CPU

    @property
    def vendor_name(self) -> str:
        return CPU

    @property
    def device_module(self):
        return CPUDeviceModule

    def is_available(self) -> bool:
        return True

    def is_platform_available(self, use_smi_check=False) -> bool:
        # Reached only after verl's own platforms declined; stay out of the way of any GPU the node may have.
        return not torch.cuda.is_available() and shutil.which("nvidia-smi") is None

    def current_device(self) -> str:
        # FSDP2 moves modules with .to(get_device_id()); the integer 0 would mean cuda:0.
        return CPU

    def device_count(self) -> int:
        return 1

    def set_device(self, device_index: int) -> None:
        return None

    def synchronize(self, device_index: Optional[int] = None) -> None:
        return None

    def manual_seed(self, seed: int) -> None:
        torch.manual_seed(seed)

    def manual_seed_all(self, seed: int) -> None:
        torch.manual_seed(seed)

    def set_allocator_settings(self, settings: str) -> None:
        return None

    def empty_cache(self) -> None:
        return None

    def get_device_capability(self, device_index: int = 0) -> tuple[Optional[int], Optional[int]]:
        return None, None

    def communication_backend_name(self) -> str:
        return "gloo"

    def visible_devices_envvar(self) -> str:
        return "CUDA_VISIBLE_DEVICES"

    @contextmanager
    def nvtx_range(self, msg: str):
        yield

    def profiler_start(self) -> None:
        return None

    def profiler_stop(self) -> None:
        return None

    def ray_resource_name(self) -> str:
        return "CPU"

    def ray_noset_envvars(self) -> list[str]:
        return []

    def ray_resource_options(self, num_gpus: float) -> dict[str, Any]:
        # Ray refuses "CPU" inside `resources`; each training process takes one CPU slot of its bundle.
        return {"num_cpus": num_gpus}

    def is_ipc_supported(self) -> bool:
        return False

    def cudart(self) -> Any:
        return None


def _gloo_when_cpu(init_fn):
    """Wrap a verl process-group init so that on the CPU platform it defaults to plain ``gloo``."""

    def init(*args, **kwargs):
        if get_platform().device_name == CPU and kwargs.get("backend") is None:
            import torch.distributed as dist

            if not dist.is_initialized():
                # verl reads LOCAL_RANK etc. after init; set defaults for single-process runs without torchrun.
                for name, default in (("RANK", "0"), ("LOCAL_RANK", "0"), ("WORLD_SIZE", "1")):
                    os.environ.setdefault(name, default)
                os.environ.setdefault("MASTER_ADDR", "127.0.0.1")
                os.environ.setdefault("MASTER_PORT", "29511")
            kwargs["backend"] = "gloo"
            if init_fn.__name__ == "initialize_global_process_group":
                return _init_spmd_gloo(**kwargs)
        return init_fn(*args, **kwargs)

    init.__name__ = init_fn.__name__
    init.__wrapped__ = init_fn
    return init


def _init_spmd_gloo(backend: str, timeout_second: int = 36000):
    """``initialize_global_process_group`` with an explicit backend (verl's takes none)."""
    from datetime import timedelta

    import torch.distributed as dist

    if not dist.is_initialized():
        dist.init_process_group(backend=backend, timeout=timedelta(seconds=timeout_second))
    return int(os.environ["LOCAL_RANK"]), int(os.environ["RANK"]), int(os.environ["WORLD_SIZE"])


def _patch_process_group_init() -> None:
    import verl.utils.distributed as dist_utils

    for name in ("initialize_global_process_group", "initialize_global_process_group_ray"):
        fn = getattr(dist_utils, name)
        if not hasattr(fn, "__wrapped__"):
            setattr(dist_utils, name, _gloo_when_cpu(fn))


def _register_cpu_engines() -> None:
    from verl.workers.engine.base import EngineRegistry
    from verl.workers.engine.fsdp.transformer_impl import FSDPEngineWithLMHead, FSDPEngineWithValueHead

    for model_type, engine_cls in (("language_model", FSDPEngineWithLMHead), ("value_model", FSDPEngineWithValueHead)):
        for backend in ("fsdp", "fsdp2"):
            if CPU not in EngineRegistry._engines.get(model_type, {}).get(backend, {}):
                EngineRegistry.register(model_type=model_type, backend=backend, device=CPU)(engine_cls)


class _UnpinnedCPUOffloadPolicy(CPUOffloadPolicy):
    """FSDP2's CPU offload without pinned memory, whatever verl asks for: pinning needs an accelerator."""

    def __init__(self, pin_memory: bool = False):
        super().__init__(pin_memory=False)


def _patch_reference_offload() -> None:
    import verl.workers.engine.fsdp.transformer_impl as impl

    impl.CPUOffloadPolicy = _UnpinnedCPUOffloadPolicy


def _load_value_model(local_path, torch_dtype, model_config, trust_remote_code):
    """verl's ``load_valuehead_model`` with the config's attention implementation instead of flash-attn 2."""
    from transformers import AutoModelForTokenClassification

    return AutoModelForTokenClassification.from_pretrained(
        local_path,
        torch_dtype=torch_dtype,
        config=model_config,
        attn_implementation=getattr(model_config, "_attn_implementation", None) or "sdpa",
        trust_remote_code=trust_remote_code,
    )


def _patch_value_model_loader() -> None:
    import verl.utils.model as model_utils

    model_utils.load_valuehead_model = _load_value_model


def register() -> None:
    """Register the CPU platform, and where it is the active one, the CPU engine and gloo process groups.

    Runs when this module is imported: verl's plugin loader imports the module named in setup.py under
    ``verl.plugins`` on ``import verl`` (and swallows its errors, so dft's entry points import it again).
    """
    PlatformRegistry.register(platform=CPU)(PlatformCPU)
    if get_platform().device_name != CPU:
        return
    _patch_process_group_init()
    _register_cpu_engines()
    _patch_reference_offload()
    _patch_value_model_loader()


def on_cpu() -> bool:
    """True when verl's active platform is this CPU platform."""
    return get_platform().device_name == CPU


register()
