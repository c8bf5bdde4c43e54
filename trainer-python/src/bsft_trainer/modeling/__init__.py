"""The model: loading (Hub or local, LoRA), new token rows, the toy model, merging LoRA."""
