"""Where the project's own files are: the checkout, its Hydra configs, and ``../shared`` beside it."""

from pathlib import Path

REPO = Path(__file__).resolve().parents[2]
# the Hydra configs (YAML only); commands name them by absolute path, so they compose however they are started
CONFIGS = REPO / "configs"
SHARED = REPO.parent / "shared"
