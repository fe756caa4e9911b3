"""dft: Dynamic Fine-Tuning (arXiv 2508.05629) as a loss variant in verl's engine SFT trainer."""

__version__ = "0.1.0"
