"""prob_power's per-token weight in float32: the gradient w.r.t. ``log p`` is ``-p^a``, correctly rounded down to
the smallest normal float32 ``p^a``, against float64. Through ``expm1``'s own backward every weight below ~6e-8
was 0 (``a = 10``: every ``p < 0.19``) and weights near 1e-6 were off by up to 6%."""

import pytest
import torch

from dft.train.losses.beyond import prob_power_values


def float32_weights(log_probs: torch.Tensor, alpha: float) -> torch.Tensor:
    """``-d/d log p`` of the project's per-token prob_power values, in float32."""
    x = log_probs.clone().requires_grad_(True)
    (grad,) = torch.autograd.grad(prob_power_values(x, alpha).sum(), x)
    return -grad


@pytest.mark.parametrize("alpha", [2.0, 10.0])
def test_prob_power_weights_are_exact_in_float32_down_to_the_smallest_normal(alpha):
    tiniest = torch.finfo(torch.float32).tiny
    # log p from where p^a is float32's smallest normal (~1.2e-38) up to p = 1
    log_probs = torch.linspace(torch.log(torch.tensor(tiniest, dtype=torch.float64)).item() / alpha, 0.0, 20001)
    log_probs = log_probs.float()
    exact = torch.exp(alpha * log_probs.double())  # the weight of these float32 inputs, in float64
    weights = float32_weights(log_probs, alpha)
    assert weights.dtype == torch.float32
    assert (weights > 0).all()  # none lost to 0
    relative = ((weights.double() - exact) / exact).abs()
    assert relative.max() < 1.2e-7, relative.max()  # float32 rounding of one value: 2^-24 ~ 6e-8
    # the value is still (1 - p^a) / a, without cancellation
    values = prob_power_values(log_probs, alpha).double()
    torch.testing.assert_close(values, -torch.expm1(alpha * log_probs.double()) / alpha, rtol=1.2e-7, atol=0)


def test_prob_power_weights_of_a_float64_batch_stay_float64():
    log_probs = torch.tensor([-300.0, -1.0, -1e-9], dtype=torch.float64)
    weights = float32_weights(log_probs, 0.5)
    assert weights.dtype == torch.float64
    torch.testing.assert_close(weights, torch.exp(0.5 * log_probs), rtol=1e-15, atol=0)
