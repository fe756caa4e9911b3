"""The bottom of the pipeline: what the project knows about each model (presets, cards, model-faithful tiny models,
checkpoints) and about its format (the prompt templates, the one chat-cot user turn, BOS, stops, context)."""
