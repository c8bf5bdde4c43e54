"""Data in: train.json and manifest.json (checked against the orchestrator's schema), token shards."""
