"""Fine-tuning losses in verl's engine loss signature: :mod:`dft.train.losses.registry` says how they are found."""
