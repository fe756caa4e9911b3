"""A recipe's knobs (environment variables: MODELS, SETTING, LOSSES, ...) checked all at once before its first step.

``recipes/common.sh`` runs ``python -m dft recipes knobs`` once when a recipe sources it: a model, setting or loss
that does not exist, or a count that is not one, is refused with one ``error:`` line per knob (exit 2), before any
data is prepared or any model trains. Values are read from the registries (presets, settings, losses), so a new
preset, setting or loss needs nothing here. Knobs left unset take the recipe's own defaults, which are valid.
"""

from __future__ import annotations

import difflib
import os

from dft.cli.preflight import config_names, registered_losses

COUNTS = ("N_TRAIN", "EVAL_SAMPLES", "NPROC_PER_NODE", "EVAL_GPUS", "EVAL_LIMIT", "EVAL_MAX_NEW_TOKENS",
          "TINY_PROBLEMS", "PRETRAIN_STEPS")  # fmt: skip
CHOICES = {"GRADER": ("paper", "ours"), "EVAL_BACKEND": ("hf", "vllm"), "FIGURE_FORMAT": ("pdf", "svg", "png"),
           "DRY_RUN": ("0", "1"), "SCALE": ("cluster", "tiny")}  # fmt: skip


def _unknown(knob: str, values: list[str], valid, what: str) -> list[str]:
    errors = []
    for value in values:
        if value not in valid:
            near = difflib.get_close_matches(value, list(valid), n=1)
            hint = f"; did you mean {near[0]}?" if near else ""
            errors.append(f"{knob}: unknown {what} {value!r}{hint} (valid: {', '.join(valid)})")
    return errors


def _presets(scale: str) -> list[str]:
    """The presets a recipe can run: those with a hub model; at toy scale those with a tiny model to build (a card
    with a tokenizer, or built by code)."""
    from dft.models.cards import load_card
    from dft.models.presets import presets

    if scale != "tiny":
        return [name for name, preset in presets().items() if preset.hub_id]
    return [name for name, p in presets().items() if p.card is None or load_card(p.card).has_tokenizer]


def knob_errors(env) -> list[str]:
    """One message per bad knob of ``env`` (a mapping of environment variables)."""
    errors = []
    for knob in ("MODELS", "MODEL"):
        if env.get(knob, "").strip():
            errors += _unknown(
                knob,
                env[knob].split(),
                _presets(env.get("SCALE", "cluster")),
                "preset (python -m dft presets)" + (" with a tiny model" if env.get("SCALE") == "tiny" else ""),
            )
    if env.get("SETTING"):
        errors += _unknown("SETTING", [env["SETTING"]], config_names("setting"), "setting (configs/setting/)")
    if env.get("LOSSES", "").strip():
        errors += _unknown("LOSSES", env["LOSSES"].split(), list(registered_losses()), "loss (loss.name)")
    for knob in COUNTS:
        value = env.get(knob)
        if value is not None and not (value.isdigit() and int(value) > 0):
            errors.append(f"{knob}={value!r} is not a positive whole number")
    for knob, valid in CHOICES.items():
        if env.get(knob) is not None:
            errors += _unknown(knob, [env[knob]], valid, "value")
    return errors


def main() -> None:
    errors = knob_errors(os.environ)
    if errors:
        from dft.cli.preflight import fail

        fail(errors)
