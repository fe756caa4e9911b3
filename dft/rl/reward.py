r"""The reward of the PPO and GRPO baselines: 1.0 when the response's last ``\boxed{}`` answer equals the gold answer
(math-verify, through the evaluation's grader :func:`dft.eval.grading.grade`), else 0.0.

verl finds it through ``reward.custom_reward_function`` (``path: pkg://dft.rl.reward``, ``name: compute_score``;
configs/ppo_gae_trainer.yaml, configs/grpo_trainer.yaml) and calls it from a thread pool of each reward worker
(verl 0.9.1, ``experimental/reward_loop/reward_manager/naive.py``, ``NaiveRewardManager.run_single``)::

    self.compute_score(data_source=data_source, solution_str=response_str, ground_truth=ground_truth,
                       extra_info=extra_info, **extra_reward_kwargs)

with ``ground_truth`` from the row's ``reward_model["ground_truth"]`` and the decoded response; the signature is
that of verl's ``verl.utils.reward_score.default_compute_score``. Grading is the evaluation's, with one rule stricter:
only a ``\boxed{}`` answer earns the reward. The evaluation, as the paper's harness does, also reads unboxed
answers ("the final answer is ...", the last number); a reward that did the same would pay a policy for answers it
never commits to in the format every prompt asks for, and the last-number rule can be met by listing numbers. So a
rewarded response is one the evaluation counts correct, not always the converse: a response without a final boxed
answer (or a truncated one) scores 0.0, and a grading failure (timeout, worker death, unparsable gold) scores 0.0
and never raises into the trainer. math-verify's own timeout uses ``signal.alarm``, which fails in these threads;
the grader's worker processes do not need it.
"""

from __future__ import annotations

import logging

from dft.eval.grading import DEFAULT_TIMEOUT_S, grade

BOXED = "boxed"  # the extraction rule of dft.eval.answers that reads the last \boxed{}

logger = logging.getLogger(__name__)


def compute_score(
    data_source, solution_str, ground_truth, extra_info=None, timeout_s: float = DEFAULT_TIMEOUT_S, **kwargs
) -> float:
    """1.0 if ``solution_str``'s last boxed answer is ``ground_truth`` by math-verify, 0.0 otherwise (never raises);
    an answer found by any other extraction rule scores 0.0.

    ``timeout_s`` bounds the grading of one response (``reward.custom_reward_function.reward_kwargs.timeout_s``).
    """
    try:
        verdict = grade(solution_str, ground_truth, timeout_s=timeout_s)
    except Exception as exc:  # a bad gold or a grader that cannot start must not kill a training step
        logger.warning("reward: grading failed (%s: %s); scored 0.0", type(exc).__name__, exc)
        return 0.0
    return 1.0 if verdict.correct and verdict.error is None and verdict.rule == BOXED else 0.0
