"""Training: verl's engine SFT trainers with our losses (``DFTTrainer``, ``DFTRayTrainer`` in :mod:`.trainer`), the
config checks before a run, the datasets the losses read, reference scoring, and the CPU platform for verl."""
