"""A minimal greedy evaluator for the CPU quickstart: HF generation, last ``\\boxed{}``, math-verify grading.

The evaluation harness replaces it; what the quickstart relies on is ``evaluate(model_dir, records) -> dict``
with records carrying ``id``, ``problem`` and ``answer``.
"""

import torch
from math_verify import parse, verify
from transformers import AutoModelForCausalLM, AutoTokenizer

from dft.tiny import to_messages


def last_boxed(text: str) -> str | None:
    """Content of the last ``\\boxed{...}`` in ``text`` (nested braces balanced), or None."""
    start = text.rfind("\\boxed{")
    if start < 0:
        return None
    depth, begin = 0, start + len("\\boxed{")
    for i in range(begin - 1, len(text)):
        depth += {"{": 1, "}": -1}.get(text[i], 0)
        if depth == 0:
            return text[begin:i]
    return None


def is_correct(response: str, gold: str) -> bool:
    """math-verify equivalence of the response's last boxed answer and the gold answer (both as LaTeX)."""
    answer = last_boxed(response)
    if answer is None:
        return False
    return bool(verify(parse(f"${gold}$"), parse(f"${answer}$")))


def generate_greedy(model_dir, problems: list[dict], max_new_tokens: int, batch_size: int, on_batch=None):
    """Greedy completions of each problem's chat prompt (the training prompt format), in order."""
    tokenizer = AutoTokenizer.from_pretrained(model_dir, padding_side="left")
    model = AutoModelForCausalLM.from_pretrained(model_dir, dtype=torch.float32).eval()
    prompts = [
        tokenizer.apply_chat_template(to_messages(p)[:1], tokenize=False, add_generation_prompt=True) for p in problems
    ]
    responses = []
    for i in range(0, len(prompts), batch_size):
        batch = tokenizer(prompts[i : i + batch_size], return_tensors="pt", padding=True, add_special_tokens=False)
        with torch.no_grad():
            out = model.generate(**batch, max_new_tokens=max_new_tokens, do_sample=False)
        responses += tokenizer.batch_decode(out[:, batch["input_ids"].shape[1] :], skip_special_tokens=True)
        if on_batch:
            on_batch(len(prompts[i : i + batch_size]))
    return responses


def evaluate(model_dir, records: list[dict], max_new_tokens: int = 64, batch_size: int = 16, on_batch=None) -> dict:
    """Accuracy of greedy decoding on ``records``, with every response and verdict."""
    responses = generate_greedy(model_dir, records, max_new_tokens, batch_size, on_batch)
    rows = [
        {
            "id": r["id"],
            "answer": r["answer"],
            "response": resp,
            "extracted": last_boxed(resp),
            "correct": is_correct(resp, r["answer"]),
        }
        for r, resp in zip(records, responses)
    ]
    return {"accuracy": sum(row["correct"] for row in rows) / len(rows), "n": len(rows), "rows": rows}
