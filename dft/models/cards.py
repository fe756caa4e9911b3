"""Model cards of the paper's five models, and model-faithful tiny models built from them.

A *card* is a folder laid out like a Hugging Face model repository without weights: ``config.json``,
``generation_config.json`` and, where one could be found, ``tokenizer.json`` + ``tokenizer_config.json`` (special
tokens and chat template exactly as shipped). ``../shared/models/`` holds the cards of the paper's models, with
``SOURCES.md`` saying what is verified and what is assumed; ``$DFT_MODELS_DIR`` points elsewhere.

A *model-faithful tiny model* keeps everything of its card that decides formats (the real vocabulary and
tokenizer, special tokens, chat template, generation config, ``max_position_embeddings``, rope settings, BOS/EOS
ids, tied or untied embeddings) and replaces only the shape with a few small random layers. Prompts, stops,
loss masks, BOS handling and context limits then behave as with the real model, on a CPU, in seconds. Heads are
32 wide, the smallest vLLM's CPU attention accepts.

CLI: ``python -m dft model_cards --card qwen2.5-math-1.5b --out DIR [--seed S]`` (``--card`` also takes a path).
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
from dataclasses import dataclass
from pathlib import Path

from dft.core.args import DefaultsHelpFormatter
from dft.core.paths import SHARED

MODELS_DIR_ENV = "DFT_MODELS_DIR"
# The paper's five models, as named in ../shared/models/.
TOKENIZER_FILES = ("tokenizer.json", "tokenizer_config.json")
# A few small random layers; head_dim 32 is the smallest head vLLM's CPU attention takes.
TINY_SHAPE = {
    "hidden_size": 64,
    "intermediate_size": 128,
    "num_hidden_layers": 2,
    "num_attention_heads": 2,
    "num_key_value_heads": 1,
    "head_dim": 32,
}
MARKER = "faithful_tiny.json"


def card_names(models_dir: str | os.PathLike | None = None) -> list[str]:
    """The model cards there are: the folders of ``models_dir`` (default: ../shared/models) with a config.json."""
    root = Path(models_dir) if models_dir is not None else default_models_dir()
    return sorted(p.parent.name for p in root.glob("*/config.json"))


def default_models_dir() -> Path:
    """``$DFT_MODELS_DIR`` if set, else ``../shared/models`` next to the repository root."""
    env = os.environ.get(MODELS_DIR_ENV)
    return Path(env) if env else SHARED / "models"


@dataclass(frozen=True)
class ModelCard:
    """One card folder: its configs read as dicts, and whether it carries a tokenizer."""

    name: str
    path: Path

    def _json(self, file: str) -> dict:
        return json.loads((self.path / file).read_text())

    @property
    def config(self) -> dict:
        return self._json("config.json")

    @property
    def generation_config(self) -> dict:
        return self._json("generation_config.json")

    @property
    def has_tokenizer(self) -> bool:
        return all((self.path / f).is_file() for f in TOKENIZER_FILES)

    @property
    def max_position_embeddings(self) -> int:
        return int(self.config["max_position_embeddings"])


def load_card(name_or_path: str | os.PathLike, models_dir: str | os.PathLike | None = None) -> ModelCard:
    """The card called ``name_or_path`` under ``models_dir`` (default :func:`default_models_dir`), or at that path."""
    path = Path(name_or_path)
    if not path.is_dir():
        path = Path(models_dir or default_models_dir()) / str(name_or_path)
    if not (path / "config.json").is_file():
        raise FileNotFoundError(
            f"no model card {name_or_path!r}: {path}/config.json does not exist (cards: {', '.join(card_names())}; "
            f"folder: ${MODELS_DIR_ENV} or ../shared/models)"
        )
    return ModelCard(path.name, path)


def tiny_config(card: ModelCard, **shape):
    """The card's config with the tiny shape (``TINY_SHAPE``, then ``shape``) and everything else kept."""
    from transformers import AutoConfig

    config = AutoConfig.from_pretrained(card.path)
    for key, value in {**TINY_SHAPE, **shape}.items():
        setattr(config, key, value)
    if getattr(config, "layer_types", None):  # Qwen2 lists one attention type per layer
        config.layer_types = config.layer_types[: config.num_hidden_layers]
    config.dtype = "float32"
    return config


def build_faithful_tiny(card: ModelCard | str, out_dir: str | os.PathLike, seed: int = 0, **shape) -> Path:
    """Write a random tiny model with ``card``'s vocabulary, special tokens and configs to ``out_dir``; return it.

    The tokenizer files and ``generation_config.json`` are copied byte for byte, so the folder loads exactly as
    the real model's would. A marker records the card and shape; a folder already built the same way is reused.
    """
    import torch
    from transformers import AutoModelForCausalLM

    card = card if isinstance(card, ModelCard) else load_card(card)
    out = Path(out_dir)
    recipe = {"card": card.name, "card_path": str(card.path.resolve()), "seed": seed, "shape": {**TINY_SHAPE, **shape}}
    if (out / MARKER).is_file() and json.loads((out / MARKER).read_text()) == recipe:
        return out
    shutil.rmtree(out, ignore_errors=True)
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(seed)
        model = AutoModelForCausalLM.from_config(tiny_config(card, **shape), dtype=torch.float32)
    model.save_pretrained(out)
    for file in ("generation_config.json", *TOKENIZER_FILES):
        if (card.path / file).is_file():
            shutil.copyfile(card.path / file, out / file)
    (out / MARKER).write_text(json.dumps(recipe, indent=1))
    return out


def main(argv: list[str] | None = None) -> Path:
    parser = argparse.ArgumentParser(
        description="Build a model-faithful tiny model: a card's real tokenizer and configs, tiny random layers.",
        formatter_class=DefaultsHelpFormatter,
    )
    parser.add_argument("--card", required=True, help="card name (a folder of ../shared/models) or a card folder")
    parser.add_argument("--out", required=True, help="output model folder")
    parser.add_argument("--seed", type=int, default=0, help="seed of the random weights")
    args = parser.parse_args(argv)
    out = build_faithful_tiny(args.card, args.out, args.seed)
    print(out)
    return out


if __name__ == "__main__":
    main()
