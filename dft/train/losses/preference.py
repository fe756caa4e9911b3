"""Direct Preference Optimization (Rafailov et al. 2023) on (chosen, rejected) rows, the offline RL baseline.

Both rows of a pair sit next to each other in the micro-batch (verl's ``force_group_size``; the trainer sets it):
``-log sigmoid(beta * ((S_c - R_c) - (S_r - R_r)))`` per pair, with ``S`` and ``R`` the policy's and the
reference's summed log-probabilities of the response, averaged over the global batch of pairs.
"""

from dft.train.columns import PAIR_COLUMNS
from dft.train.losses.registry import LossConfig, register_loss


@register_loss("dpo", data="pairs", columns=PAIR_COLUMNS, unit="pair")
def dpo_loss(config: LossConfig, model_output: dict, data, dp_group=None):
    """DPO over adjacent (chosen, rejected) rows; metrics: implicit rewards, their margin, preference accuracy."""
    import torch
    from verl.utils.metric import AggregationType, Metric

    from dft.train.losses.tokens import (
        global_pair_mean,
        nll_metric,
        normalize,
        per_sequence_sum,
        reference_log_probs,
        target_log_probs_and_mask,
    )

    log_probs, mask = target_log_probs_and_mask(model_output, data)
    policy = per_sequence_sum(log_probs, mask, model_output)
    reference = per_sequence_sum(reference_log_probs(data).to(log_probs.dtype), mask, model_output)
    if len(policy) % 2:
        raise ValueError(f"dpo needs (chosen, rejected) rows in pairs; this micro-batch has {len(policy)} rows")
    rewards = config.dpo_beta * (policy - reference)
    chosen, rejected = rewards[0::2], rewards[1::2]
    margin = chosen - rejected
    losses = -torch.nn.functional.logsigmoid(margin)
    loss = normalize(losses.sum(), len(losses), data, config, unit="pair")
    shares = {
        "dpo/reward_margin": margin,
        "dpo/accuracy": (margin > 0).to(margin.dtype),
        "dpo/chosen_reward": chosen,
        "dpo/rejected_reward": rejected,
    }
    metrics = {key: Metric(AggregationType.SUM, global_pair_mean(v.detach(), data)) for key, v in shares.items()}
    metrics.update(nll_metric(log_probs, mask, data))
    return loss, metrics
