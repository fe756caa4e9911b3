"""The official run's micro-batches on any number of ranks, for ``loss.normalization=official``.

The official trainer (yongliang-wu/DFT, 8 GPUs) drew each step's rows with a ``DistributedSampler`` over its
``O = data.train_batch_size / (data.micro_batch_size_per_gpu x loss.official_micro_batches)`` ranks (8): rank
``o`` takes every ``O``-th row of the shuffled data, and its micro-batches are consecutive runs of
``micro_batch_size_per_gpu`` of its rows. verl's sampler deals rows the same way over *this* run's ``R`` ranks, so
on another ``R`` other rows share a micro-batch, and the official normalisation (a mean per micro-batch) weighs
them otherwise. :class:`OfficialLayoutSampler` orders each step's rows as the official ranks held them, official
rank after official rank, and gives this rank its contiguous share: whole official micro-batches, the same ones
for any ``R`` that divides their count. verl's torchrun trainer splits each rank's rows into consecutive
micro-batches; its Ray trainer (one sampler, ``R = 1`` here) dispatches contiguous shares of the batch to ranks,
then does the same (with ``trainer.balance_batch=False``).
"""

from torch.utils.data import DistributedSampler


def official_ranks(batch: int, micro_batch: int, official_micro_batches: int, ranks: int) -> int | None:
    """``O``, the official run's ranks for this batch, when the official layout can be laid on ``ranks`` ranks
    and differs from verl's own (``O != ranks``); else None (verl's sampler is used)."""
    per_official_rank = micro_batch * official_micro_batches
    if batch % per_official_rank or (batch // micro_batch) % ranks:
        return None
    official = batch // per_official_rank
    return official if official != ranks else None


class OfficialLayoutSampler(DistributedSampler):
    """This rank's rows, step by step, as whole micro-batches of the official layout over ``official`` ranks."""

    def __init__(self, dataset, ranks: int, rank: int, official: int, batch: int, seed: int = 0):
        super().__init__(dataset, num_replicas=official, rank=0, shuffle=True, seed=seed, drop_last=True)
        self.ranks, self.our_rank, self.batch = ranks, rank, batch

    def _official_rows(self) -> list[list[int]]:
        """Each official rank's rows for the epoch, as its ``DistributedSampler`` yields them."""
        rows = []
        for rank in range(self.num_replicas):
            self.rank = rank
            rows.append(list(super().__iter__()))
        self.rank = 0
        return rows

    def _steps(self) -> int:
        return self.num_samples // (self.batch // self.num_replicas)

    def __iter__(self):
        rows, per_official = self._official_rows(), self.batch // self.num_replicas
        share = self.batch // self.ranks
        for step in range(self._steps()):
            ordered = [i for ranked in rows for i in ranked[step * per_official : (step + 1) * per_official]]
            yield from ordered[self.our_rank * share : (self.our_rank + 1) * share]

    def __len__(self) -> int:
        return self._steps() * (self.batch // self.ranks)


def use_official_layout(trainer, ranks: int, rank: int) -> bool:
    """Under ``loss.normalization=official``, swap the trainer's training sampler for :class:`OfficialLayoutSampler`
    (and rebuild its loader the same way) where the official layout differs from verl's; return whether it did."""
    from torchdata.stateful_dataloader import StatefulDataLoader

    config, loss = trainer.config, trainer.loss_config
    if loss.normalization != "official":
        return False
    batch, micro = config.data.train_batch_size, config.data.micro_batch_size_per_gpu
    official = official_ranks(batch, micro, loss.official_micro_batches, ranks)
    if official is None:
        return False
    old = trainer.train_dataloader
    trainer.train_sampler = OfficialLayoutSampler(trainer.train_dataset, ranks, rank, official, batch)
    trainer.train_dataloader = StatefulDataLoader(
        dataset=trainer.train_dataset, batch_size=old.batch_size, sampler=trainer.train_sampler,
        collate_fn=old.collate_fn, num_workers=old.num_workers, pin_memory=False, drop_last=True,
    )  # fmt: skip
    return True
