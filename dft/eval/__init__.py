"""Evaluation harness: benchmark loaders, prompt templates, generation backends, grading and result storage."""
