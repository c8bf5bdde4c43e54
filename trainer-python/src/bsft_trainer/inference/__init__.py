"""Inference: predictions, chat, the final model's loading, the model judge."""
