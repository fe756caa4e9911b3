"""Model presets (``configs/preset/<name>.yaml``): the one place for what the project knows about each model.

Training composes a preset through Hydra (``preset=qwen2.5-math-1.5b``); everything else reads it here: the
model's hub id (``model.path``), its name in the paper's tables, its card in ``../shared/models`` and the prompt
the paper evaluated it with (the ``paper`` section). ``preset_for_model`` finds the preset of a hub id, a
local copy or a fine-tuned checkpoint, by the model family its ``config.json`` declares (architecture and
vocabulary), so a fine-tuned run is evaluated like its base model.

CLI: ``python -m dft presets [NAME] [--field paper_name ...]`` prints the presets, or fields of one, a line each
(for shell: ``recipes/common.sh`` reads a model's hub id and paper name from here).
"""

from __future__ import annotations

import argparse
import dataclasses
import json
from dataclasses import dataclass
from functools import cache
from pathlib import Path

from dft.core.args import DefaultsHelpFormatter
from dft.core.paths import CONFIGS

PRESET_DIR = CONFIGS / "preset"
# a config.json key naming the preset of a model built by code (and of its fine-tunes, whose configs keep it)
PRESET_KEY = "dft_preset"


@dataclass(frozen=True)
class Preset:
    """One model preset: file stem, hub id, learning rate and the ``paper`` section."""

    name: str
    hub_id: str | None
    lr: float
    paper_name: str
    card: str | None
    eval_prompt: str

    @property
    def family(self) -> tuple[str, int] | None:
        """(model_type, vocab_size) from the card's ``config.json``: shared by the model and its fine-tunes."""
        if self.card is None:
            return None
        from dft.models.cards import load_card

        return model_family(load_card(self.card).config)


def model_family(config: dict) -> tuple[str, int]:
    return str(config.get("model_type")), int(config.get("vocab_size", 0))


def _read(path: Path) -> Preset:
    from omegaconf import OmegaConf

    cfg = OmegaConf.load(path)
    paper = cfg.get("paper")
    if paper is None:
        raise ValueError(f"{path}: no `paper` section (name, card, eval_prompt)")
    hub_id = OmegaConf.select(cfg, "model.path", throw_on_missing=False)  # None for tiny-cpu (built by code)
    lr = float(OmegaConf.select(cfg, "optim.lr"))
    return Preset(path.stem, hub_id, lr, str(paper.name), paper.card, paper.eval_prompt)


@cache
def presets() -> dict[str, Preset]:
    """Every preset, by name."""
    return {p.name: p for p in map(_read, sorted(PRESET_DIR.glob("*.yaml")))}


def paper_presets() -> list[Preset]:
    """The paper's models: every preset with a model card (``paper.card``), by name. A new paper model is its preset
    and its card; the recipes, the download script and the tests read this list."""
    return [p for p in presets().values() if p.card is not None]


def get_preset(name: str) -> Preset:
    """The preset called ``name``; an unknown name is an error listing the valid ones."""
    try:
        return presets()[name]
    except KeyError:
        raise ValueError(f"unknown preset {name!r}; valid: {', '.join(presets())}") from None


def preset_for_model(model: str) -> Preset | None:
    """The preset of ``model``: a hub id of a preset, or a local folder whose ``config.json`` has the family of a
    preset's card (the same within a family such as Qwen2.5-Math 1.5B/7B, whose presets agree on the fields read
    here). None if nothing matches."""
    for preset in presets().values():
        if preset.hub_id is not None and preset.hub_id == model:
            return preset
    config = Path(model) / "config.json"
    if not config.is_file():
        return None
    fields = json.loads(config.read_text())
    if fields.get(PRESET_KEY) in presets():  # a model built by code names its preset (dft.models.tiny)
        return presets()[fields[PRESET_KEY]]
    family = model_family(fields)
    return next((p for p in presets().values() if p.family == family), None)


FIELDS = [f.name for f in dataclasses.fields(Preset)]


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(prog="python -m dft presets", description="Print model presets, or fields of one.",
                                     formatter_class=DefaultsHelpFormatter)  # fmt: skip
    parser.add_argument("name", nargs="?", help="a preset name (default: all)")
    parser.add_argument("--field", action="append", choices=FIELDS, help="print this field (repeatable: a line each)")
    parser.add_argument("--paper", action="store_true", help="only the paper's models (the presets with a card)")
    args = parser.parse_args(argv)
    try:
        chosen = [get_preset(args.name)] if args.name else paper_presets() if args.paper else list(presets().values())
    except ValueError as err:
        parser.exit(2, f"error: {err}\n")
    for preset in chosen:
        values = ("" if getattr(preset, f) is None else str(getattr(preset, f)) for f in args.field or ())
        print("\n".join(values) if args.field else preset)  # a field with no value is an empty line


if __name__ == "__main__":
    main()
