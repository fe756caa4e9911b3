"""The two training commands: verl's torchrun trainer (``dft train``) and its Ray trainer (``dft train_ray``).

    torchrun --nproc_per_node=8 -m dft train model.path=Qwen/Qwen2.5-Math-1.5B loss.name=dft \\
        data.train_files=data/numina/train.parquet

    ray start --head            # on the head node; `ray start --address=HEAD:6379` on the others
    python -m dft train_ray trainer.nnodes=2 trainer.n_gpus_per_node=8 loss.name=dft model.path=...

Both read ``configs/dft_trainer.yaml``; every field of it and of verl's ``sft_trainer_engine`` is a Hydra
override. Without a running cluster, ``ray.init()`` starts a local one. ``python -m dft`` answers ``--help`` and
refuses bad overrides (``dft.cli.preflight``) before these functions import verl.
"""

import os

import hydra

from dft.core.paths import CONFIGS


@hydra.main(config_path=str(CONFIGS), config_name="dft_trainer", version_base=None)
def train(config) -> None:
    """Train with verl's torchrun engine SFT trainer and the loss from loss.name (one process per GPU)."""
    from verl.utils.distributed import destroy_global_process_group, initialize_global_process_group

    from dft.train.config import prepare_config
    from dft.train.run_record import claim_run
    from dft.train.trainer import DFTTrainer

    claim_run(config)  # a folder another config or other data made is never resumed
    config = prepare_config(config)
    initialize_global_process_group()
    DFTTrainer(config=config).fit()
    destroy_global_process_group()


@hydra.main(config_path=str(CONFIGS), config_name="dft_trainer", version_base=None)
def train_ray(config) -> None:
    """Train with verl's Ray engine SFT trainer (single controller; one or several nodes)."""
    from dft.core.ray_cluster import init_ray, require_nodes
    from dft.train.config import prepare_config
    from dft.train.cpu_platform import on_cpu
    from dft.train.run_record import claim_run

    claim_run(config)
    config = prepare_config(config)  # first: it sets the run's log paths, which the workers inherit
    # Workers of a local cluster import verl afresh; make them pick the same platform as this driver.
    env = {"VERL_PLATFORM": "cpu"} if on_cpu() else {}
    env.update({k: os.environ[k] for k in ("VERL_FILE_LOGGER_PATH",) if k in os.environ})
    init_ray(runtime_env={"env_vars": env} if env else None)
    require_nodes(config.trainer.nnodes)  # bounded: names the nodes present when some never join
    fit_watching_nodes(config)


def fit_watching_nodes(config) -> None:
    """Run the Ray trainer; a node lost during the run ends it with ``NodeLost`` naming the node (bounded time)."""
    from dft.core.ray_cluster import NodeWatch
    from dft.train.trainer import DFTRayTrainer

    with NodeWatch() as watch:
        try:
            DFTRayTrainer(config=config).fit()
        except (Exception, KeyboardInterrupt) as error:
            hint = (f"The same command resumes from the last checkpoint in {config.trainer.default_local_dir} once "
                    "the cluster has its nodes again.")  # fmt: skip
            lost = watch.explain(error, hint)
            if lost is None:
                raise
            raise lost from error
