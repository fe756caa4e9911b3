"""Stops, context and one BOS with the real model cards: model-faithful tiny models, HF generation, and vLLM's
arguments as built (vLLM itself is not installable here; a stand-in module records what the backend hands it)."""

import shutil
import sys
import types

import pytest
import torch

from dft.data.problems import Problem
from dft.eval.backends import Completion, HFBackend, Request, SamplingParams, VLLMBackend, vllm_completion, vllm_inputs
from dft.models.cards import build_faithful_tiny, default_models_dir
from dft.models.generation import HARNESS_STOP_STRINGS, ModelFormat, StopSet
from dft.models.presets import paper_presets
from dft.models.prompts import build_prompt

PAPER_CARDS = [p.card for p in paper_presets()]

CONTEXT = {"qwen2.5-math-1.5b": 4096, "qwen2.5-math-7b": 4096, "llama-3.2-3b": 131072, "llama-3.1-8b": 131072,
           "deepseek-math-7b": 4096}  # fmt: skip
ANSWER = "So the answer is $\\boxed{4}$."
AFTER = " Wrong: 7 instead"  # what an unstopped model would go on to write


def script(model_dir, chain: list[int]) -> None:
    """Rewrite a tiny model's weights so that it is a bigram chain: after ``chain[k]`` it always writes
    ``chain[k + 1]`` (attention and MLP outputs zeroed, so the last token alone decides; one-hot embeddings; an
    untied head whose logit for the successor is 800 and for every other token 0)."""
    from transformers import AutoModelForCausalLM

    assert len(set(chain[:-1])) == len(chain) - 1 <= 64, "each token needs its own successor and dimension"
    model = AutoModelForCausalLM.from_pretrained(model_dir)
    with torch.no_grad():
        for layer in model.model.layers:
            layer.self_attn.o_proj.weight.zero_()
            layer.mlp.down_proj.weight.zero_()
        model.model.embed_tokens.weight.zero_()
        model.lm_head.weight.zero_()
        model.model.norm.weight.fill_(1.0)
        for k, (token, successor) in enumerate(zip(chain, chain[1:])):
            model.model.embed_tokens.weight[token, k] = 1.0
            model.lm_head.weight[successor, k] = 100.0
    model.save_pretrained(model_dir)


@pytest.fixture(scope="module")
def qwen_fmt():
    return ModelFormat.load(str(default_models_dir() / "qwen2.5-math-1.5b"))


@pytest.fixture(scope="module")
def untied_qwen(tmp_path_factory):
    """A faithful tiny Qwen2.5-Math with an untied head (the 7B's layout), built once."""
    return build_faithful_tiny("qwen2.5-math-1.5b", tmp_path_factory.mktemp("untied"), tie_word_embeddings=False)


def scripted_qwen(tmp_path, fmt, base, *pieces) -> str:
    """A copy of ``base`` that answers the qwen-boxed prompt with ``pieces`` in order (strings are tokenised,
    ints are token ids)."""
    out = shutil.copytree(base, tmp_path / "model")
    chain = [fmt.encode(build_prompt("qwen-boxed", "Q"))[-1]]
    for piece in pieces:
        chain += [piece] if isinstance(piece, int) else fmt.tokenizer(piece, add_special_tokens=False)["input_ids"]
    script(out, chain)
    return str(out)


def generate(model, fmt, stops, max_new_tokens=40):
    prompt = fmt.encode_all([Problem("p1", "Q", "4")], lambda p: build_prompt("qwen-boxed", p.problem),
                            max_new_tokens, "benchmark test")[0]  # fmt: skip
    backend = HFBackend(model)
    return backend.generate([Request(prompt.ids, 2, prompt.budget, 0)], SamplingParams(n=2), stops)[0]


@pytest.mark.parametrize("card", PAPER_CARDS)
def test_context_is_max_position_embeddings_and_vllm_gets_it(card, monkeypatch):
    from dft.models.generation import context_length

    assert context_length(str(default_models_dir() / card)) == CONTEXT[card]
    fake = FakeVLLM()
    monkeypatch.setitem(sys.modules, "vllm", fake.module)
    VLLMBackend("some/model", context=CONTEXT[card], gpu_memory_utilization=0.5)
    assert fake.engine_kwargs == {"model": "some/model", "tensor_parallel_size": 1, "max_model_len": CONTEXT[card],
                                  "gpu_memory_utilization": 0.5}  # fmt: skip


@pytest.mark.parametrize("card, ids, tokens", [
    ("qwen2.5-math-1.5b", (151643, 151645), ("<|endoftext|>", "<|im_end|>")),
    ("llama-3.1-8b", (128001, 128009), ("<|end_of_text|>", "<|eot_id|>")),
])  # fmt: skip
def test_stop_set_of_the_real_tokenizers(card, ids, tokens, qwen_fmt):
    stops = (qwen_fmt if card.startswith("qwen") else ModelFormat.load(str(default_models_dir() / card))).stops
    assert (stops.token_ids, stops.tokens) == (ids, tokens)  # the harness's 151645/151643 for Qwen, by the vocab
    assert set(HARNESS_STOP_STRINGS) <= set(stops.strings)


def test_a_qwen_model_that_ends_its_turn_with_im_end_stops_there(tmp_path, qwen_fmt, untied_qwen):
    model = scripted_qwen(tmp_path, qwen_fmt, untied_qwen, ANSWER, 151645, AFTER)
    stopped = generate(model, qwen_fmt, qwen_fmt.stops)
    assert stopped == [Completion(ANSWER, "stop", "<|im_end|>")] * 2
    # with the base model's eos alone (what generate did before), the turn runs on into invented text
    eos_only = StopSet((151643,), ("<|endoftext|>",), ())
    runaway = generate(model, qwen_fmt, eos_only, max_new_tokens=20)[0]
    assert runaway.finish == "length" and runaway.text.startswith(ANSWER + AFTER)


def test_a_harness_stop_string_ends_generation_and_is_cut(tmp_path, qwen_fmt, untied_qwen):
    # "</s>" is no special token for Qwen: it comes as the text pieces " </", "s", ">"
    model = scripted_qwen(tmp_path, qwen_fmt, untied_qwen, ANSWER + " </s> tail", AFTER)
    assert generate(model, qwen_fmt, qwen_fmt.stops) == [Completion(ANSWER + " ", "stop", "</s>")] * 2


def test_budget_follows_the_context_and_a_prompt_that_cannot_fit_is_refused(tmp_path, qwen_fmt, untied_qwen):
    model = scripted_qwen(tmp_path, qwen_fmt, untied_qwen, ANSWER, AFTER)  # never stops
    frame = len(qwen_fmt.encode(build_prompt("qwen-boxed", "")))
    long = Problem("long-1", " ".join(["word"] * (4096 - frame - 8)), "4")  # " word" is one token
    prompt = qwen_fmt.encode_all([long], lambda p: build_prompt("qwen-boxed", p.problem), 4096, "benchmark x")[0]
    assert len(prompt.ids) + prompt.budget == 4096 and 1 <= prompt.budget < 20
    out = HFBackend(model).generate([Request(prompt.ids, 1, prompt.budget, 0)], SamplingParams(n=1), qwen_fmt.stops)
    assert out[0][0].finish == "length"
    assert len(qwen_fmt.tokenizer(out[0][0].text, add_special_tokens=False)["input_ids"]) == prompt.budget
    with pytest.raises(ValueError, match=r"benchmark aime24: problem 'too-long': the prompt has \d+ tokens and the "
                                         r"model's context is 4096"):  # fmt: skip
        qwen_fmt.encode_all([Problem("too-long", "word " * 5000, "4")], lambda p: p.problem, 4096, "benchmark aime24")


def test_llama_ids_with_one_bos_reach_hf_generate_unchanged(tmp_path):
    fmt = ModelFormat.load(str(default_models_dir() / "llama-3.2-3b"))
    backend = HFBackend(str(build_faithful_tiny("llama-3.2-3b", tmp_path / "llama")))
    seen = []
    real_generate = backend.model.generate
    backend.model.generate = lambda **kw: seen.append(kw["input_ids"]) or real_generate(**kw)
    ids = [tuple(fmt.encode(build_prompt("llama-base-boxed", q))) for q in ("Q", "A longer question")]
    backend.generate([Request(i, 1, 2, 0) for i in ids], SamplingParams(n=1, max_new_tokens=2), fmt.stops)
    rows = seen[0].tolist()
    for row, expected in zip(rows, ids):
        assert tuple(row[len(row) - len(expected) :]) == expected and row.count(128000) == 1


def test_vllm_arguments_as_built():
    fmt = ModelFormat.load(str(default_models_dir() / "llama-3.1-8b"))
    ids = tuple(fmt.encode(build_prompt("llama-base-boxed", "Q")))
    prompts, sampling = vllm_inputs([Request(ids, 16, 4000, 7)], SamplingParams(), fmt.stops)
    assert prompts == [{"prompt_token_ids": list(ids)}] and ids[0] == 128000 and ids.count(128000) == 1
    assert sampling == [{"n": 16, "temperature": 1.0, "top_p": 1.0, "top_k": -1, "max_tokens": 4000, "seed": 7,
                         "stop": list(fmt.stops.strings), "stop_token_ids": [128001, 128009],
                         "include_stop_str_in_output": False, "skip_special_tokens": True}]  # fmt: skip


def test_vllm_backend_hands_token_ids_and_reads_why_each_sample_ended(qwen_fmt, monkeypatch):
    fake = FakeVLLM([("a\\boxed{1}", "stop", 151645), ("b", "stop", None), ("c </s", "length", None),
                     ("d", "stop", "</s>")])  # fmt: skip
    monkeypatch.setitem(sys.modules, "vllm", fake.module)
    backend = VLLMBackend("m", context=4096)
    out = backend.generate([Request((1, 2, 3), 4, 10, 5)], SamplingParams(n=4), qwen_fmt.stops)
    assert fake.prompts == [{"prompt_token_ids": [1, 2, 3]}] and fake.sampling[0]["stop_token_ids"] == [151643, 151645]
    assert out == [[Completion("a\\boxed{1}", "stop", "<|im_end|>"), Completion("b", "stop", "<|endoftext|>"),
                    Completion("c </s", "length"), Completion("d", "stop", "</s>")]]  # fmt: skip
    assert vllm_completion(types.SimpleNamespace(text="x<|im_end|>y", finish_reason="length", stop_reason=None),
                           qwen_fmt.stops) == Completion("x", "stop", "<|im_end|>")  # fmt: skip


class FakeVLLM:
    """A stand-in ``vllm`` module: records the engine's and each call's arguments, answers with ``outputs``."""

    def __init__(self, outputs=()):
        self.outputs, self.engine_kwargs, self.prompts, self.sampling = list(outputs), None, None, None
        fake = self

        class LLM:
            def __init__(self, **kwargs):
                fake.engine_kwargs = kwargs

            def generate(self, prompts, sampling_params, use_tqdm):
                fake.prompts, fake.sampling = prompts, [s.kwargs for s in sampling_params]
                choices = [types.SimpleNamespace(text=t, finish_reason=f, stop_reason=r) for t, f, r in fake.outputs]
                return [types.SimpleNamespace(outputs=choices) for _ in prompts]

        class VLLMSamplingParams:
            def __init__(self, **kwargs):
                self.kwargs = kwargs

        self.module = types.SimpleNamespace(LLM=LLM, SamplingParams=VLLMSamplingParams)
