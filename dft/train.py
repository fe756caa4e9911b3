"""Train with verl's engine SFT trainer and the loss from ``loss.name`` (torchrun / SPMD).

    torchrun --nproc_per_node=8 -m dft.train model.path=Qwen/Qwen2.5-Math-1.5B loss.name=dft \\
        data.train_files=data/numina/train.parquet

Every field of verl's ``sft_trainer_engine`` config and of ``configs/dft_trainer.yaml`` is a Hydra override.
"""

import hydra

from dft.cli import preflight


def run(config) -> None:
    """Initialise the process group, train, tear down: verl's ``run_sft`` with our trainer."""
    from verl.utils.distributed import destroy_global_process_group, initialize_global_process_group

    import dft.cpu_platform  # noqa: F401  (registers the CPU platform before verl's trainer is imported)
    from dft.trainer import _spmd_trainer_cls

    initialize_global_process_group()
    trainer = _spmd_trainer_cls()(config=config)
    trainer.fit()
    destroy_global_process_group()


@hydra.main(config_path="../configs", config_name="dft_trainer", version_base=None)
def main(config) -> None:
    from dft.trainer import prepare_config

    run(prepare_config(config))


if __name__ == "__main__":
    preflight("dft.train")  # --help, and bad overrides, answered before verl is imported
    main()
