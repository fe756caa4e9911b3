"""Peak bytes of live tensors during a loss path, counted on shape-only (``meta``) tensors: nothing is computed
or allocated, so rows that would need 40 GiB and hours of CPU matmuls are measured in seconds.

``LiveBytes`` is a ``TorchDispatchMode``: every storage an operator returns is counted from its creation until
the storage is freed (a ``weakref.finalize`` on it), views and in-place results included once. That is the
quantity the CUDA caching allocator reports as allocated bytes, less its 512-byte rounding; the RSS method of
``loss_memory.py`` approximates the same on a CPU. Tensors created before the mode (the inputs) are the
baseline and not counted, nor are views of them; gradients the backward creates for them are.
"""

import weakref

import torch
from torch.utils._python_dispatch import TorchDispatchMode
from torch.utils._pytree import tree_flatten


class LiveBytes(TorchDispatchMode):
    """Current and peak bytes of the storages created inside the mode."""

    def __init__(self, inputs=()):
        super().__init__()
        # the inputs' storages count as known and free: a view of an input (a row, a transpose) is not new memory
        self.sizes: dict[int, int] = {t.untyped_storage()._cdata: 0 for t in inputs}
        self.current = self.peak = 0

    def _free(self, key: int) -> None:
        self.current -= self.sizes.pop(key)

    def __torch_dispatch__(self, func, types, args=(), kwargs=None):
        if func is torch.ops.aten._local_scalar_dense.default:
            return 0.0  # .item() of a meta tensor (a logged metric): no value exists, and no memory is involved
        out = func(*args, **(kwargs or {}))
        for tensor in tree_flatten(out)[0]:
            if isinstance(tensor, torch.Tensor) and not tensor.is_nested:
                storage = tensor.untyped_storage()
                if storage._cdata not in self.sizes:
                    self.sizes[storage._cdata] = storage.nbytes()
                    self.current += storage.nbytes()
                    weakref.finalize(storage, self._free, storage._cdata)
        self.peak = max(self.peak, self.current)
        return out


def live_peak(forward, batch: dict) -> dict:
    """``{"fwd_extra", "extra"}``: peak live bytes beyond the inputs after ``forward(batch)`` and after its backward.

    ``forward`` returns ``(loss, kept)``; ``kept`` stays alive through the backward, as in the measured code.
    """
    inputs = [t for t in batch.values() if isinstance(t, torch.Tensor) and not t.is_nested]
    with LiveBytes(inputs) as live:
        loss, kept = forward(batch)
        fwd_extra = live.peak
        loss.backward()
        del loss, kept
    return {"fwd_extra": fwd_extra, "extra": live.peak}
