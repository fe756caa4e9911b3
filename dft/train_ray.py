"""Train with verl's Ray engine SFT trainer (single controller; one or several nodes).

    ray start --head            # on the head node; `ray start --address=HEAD:6379` on the others
    python -m dft.train_ray trainer.nnodes=2 trainer.n_gpus_per_node=8 loss.name=dft model.path=...

Without a running cluster, ``ray.init()`` starts a local one. Same config as ``dft.train``.
"""

import os

import hydra

from dft.cli import preflight


@hydra.main(config_path="../configs", config_name="dft_trainer", version_base=None)
def main(config) -> None:
    import ray

    import dft.cpu_platform  # noqa: F401  (registers the CPU platform before verl's trainer is imported)
    from dft.cpu_platform import on_cpu
    from dft.trainer import _ray_trainer_cls, prepare_config

    config = prepare_config(config)  # first: it sets the run's log paths, which the workers inherit
    if not ray.is_initialized():
        # Workers of a local cluster import verl afresh; make them pick the same platform as this driver.
        env = {"VERL_PLATFORM": "cpu"} if on_cpu() else {}
        env.update({k: os.environ[k] for k in ("VERL_FILE_LOGGER_PATH",) if k in os.environ})
        ray.init(runtime_env={"env_vars": env} if env else None)
    _ray_trainer_cls()(config=config).fit()


if __name__ == "__main__":
    preflight("dft.train_ray")  # --help, and bad overrides, answered before verl is imported
    main()
