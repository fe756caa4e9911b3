"""Names of the columns the losses read beyond verl's conversation, in one place (no torch, no verl).

Made by ``dft ref_logprobs`` (reference log-probs, the reference's top-K) and ``dft data rft`` (DPO pairs), read
by the datasets (:mod:`dft.train.sft_datasets`), the losses' registry entries and the command-line checks.
"""

REF_LOG_PROBS = "ref_log_probs"
PAIR_SIDES = ("chosen", "rejected")
TOPK_IDS, TOPK_LOG_PROBS, TOPK_REST = "ref_topk_ids", "ref_topk_log_probs", "ref_topk_rest"
TOPK_COLUMNS = (TOPK_IDS, TOPK_LOG_PROBS, TOPK_REST)


def ref_column(side: str | None = None) -> str:
    """The column holding reference log-probs: ``ref_log_probs``, or ``<side>_ref_log_probs`` for a pair side."""
    return f"{side}_{REF_LOG_PROBS}" if side else REF_LOG_PROBS


# a DPO pair: the prompt, both responses and each response's reference log-probs
PAIR_TEXT_COLUMNS = ("prompt", *PAIR_SIDES)
PAIR_COLUMNS = (*PAIR_TEXT_COLUMNS, *(ref_column(side) for side in PAIR_SIDES))
