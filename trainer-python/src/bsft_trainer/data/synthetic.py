"""Synthetic runs: Contract 3 shards and manifest and a Contract 4 train.json written without the orchestrator.

Used by the throughput benchmark and the GPU check (machines with no Node.js) and by the trainer's tests. Every
train.json field the caller leaves out gets the default of the schema generated from the orchestrator's zod
schema, the one place defaults are written.
"""
from __future__ import annotations

import json
import struct
from pathlib import Path
from typing import Any

import numpy as np

from .contract import schema

SPLITS = ("train", "val", "test")


def write_shard(path: str | Path, docs: list[tuple[list[int], list[int]]]) -> None:
    """docs: list of (ids, mask). Writes the safetensors layout of Contract 3 (doc_offsets, input_ids, loss_mask)."""
    ids = np.concatenate([np.asarray(d[0], dtype=np.int32) for d in docs]) if docs else np.zeros(0, np.int32)
    mask = np.concatenate([np.asarray(d[1], dtype=np.uint8) for d in docs]) if docs else np.zeros(0, np.uint8)
    offsets = np.cumsum([0] + [len(d[0]) for d in docs]).astype(np.int64)
    tensors = [("doc_offsets", "I64", offsets), ("input_ids", "I32", ids), ("loss_mask", "U8", mask)]
    header, pos = {}, 0
    for name, dt, arr in tensors:
        header[name] = {"dtype": dt, "shape": [len(arr)], "data_offsets": [pos, pos + arr.nbytes]}
        pos += arr.nbytes
    h = json.dumps(header, sort_keys=True)
    h += " " * ((8 - len(h) % 8) % 8)
    with open(path, "wb") as f:
        f.write(struct.pack("<Q", len(h)))
        f.write(h.encode())
        for _, _, arr in tensors:
            f.write(arr.tobytes())


def with_defaults(value: Any, sch: dict) -> Any:
    """`value` with every field it leaves out set to the schema's default, recursively."""
    if not isinstance(value, dict) or sch.get("type") != "object":
        return value
    out = dict(value)
    for key, prop in sch.get("properties", {}).items():
        if key not in out and "default" in prop:
            out[key] = prop["default"]
        if key in out:
            out[key] = with_defaults(out[key], prop)
    return out


def manifest_for(behavior_ids: dict, eos: int, documents: dict) -> dict:
    """A manifest.json that passes its schema (Contract 3), for hand-made shards."""
    stats = {"documents": 0, "tokens": 0, "loss_tokens": 0, "min": 0, "max": 0, "mean": 0, "p50": 0, "p90": 0, "p99": 0}
    return {
        "format": "bsft-dataset-v2", "dataset_hash": "0" * 64, "tokenizer_hash": "0" * 64, "inputs": [],
        "options": {"conditioning": "token", "max_seq_len": 128, "seed": 0, "splits": {"train": 0.8, "val": 0.1, "test": 0.1},
                    "behaviors": {k: f"<|behavior:{k}|>" for k in behavior_ids}, "categories": {}, "instruction": None},
        "behavior_tokens": {f"<|behavior:{k}|>": v for k, v in behavior_ids.items()}, "behavior_ids": behavior_ids,
        "behavior_descriptions": {}, "tokenizer_size": min(behavior_ids.values()), "eos_id": eos,
        "counts": {s: {} for s in SPLITS}, "cases": {s: len(documents[s]) for s in SPLITS},
        "lengths": {s: stats for s in SPLITS},
        "truncation": {"truncated": 0, "turns_dropped": 0, "dropped": 0, "dropped_ids": []},
        "duplicates_skipped": 0, "documents": documents,
    }


def conversations(n: int, min_len: int, max_len: int, vocab: int, seed: int, reply_share: float = 0.3) -> list[tuple[list[int], list[int]]]:
    """`n` documents with lengths uniform in [min_len, max_len] and random token IDs below `vocab`; the last
    `reply_share` of each is the assistant reply (in the loss), as in a conversation."""
    rng = np.random.default_rng(seed)
    docs = []
    for _ in range(n):
        length = int(rng.integers(min_len, max_len + 1))
        reply = max(1, int(length * reply_share))
        docs.append((rng.integers(0, vocab, length).tolist(), [0] * (length - reply) + [1] * reply))
    return docs


def write_run(folder: str | Path, splits: dict, behavior_ids: dict, eos: int, config: dict) -> Path:
    """A run folder: dataset/<split>.tokens.safetensors + manifest.json, and train.json from `config` (the fields
    it sets; dataset paths, output_dir and schema defaults filled in). `splits`: split -> list of (ids, mask).
    Returns the path of train.json."""
    folder = Path(folder)
    ds = folder / "dataset"
    ds.mkdir(parents=True, exist_ok=True)
    documents = {}
    for split in SPLITS:
        docs = splits.get(split, [])
        write_shard(ds / f"{split}.tokens.safetensors", docs)
        documents[split] = [f"{split}-{i:05d}" for i in range(len(docs))]
    (ds / "manifest.json").write_text(json.dumps(manifest_for(behavior_ids, eos, documents)))
    full = {
        "behaviors": {k: f"<|behavior:{k}|>" for k in behavior_ids},
        "conditioning": "token",
        "eval": {},
        "max_seq_len": max((len(d[0]) for docs in splits.values() for d in docs), default=1),
        "dataset": {"manifest": str(ds / "manifest.json"),
                    "shards": {s: str(ds / f"{s}.tokens.safetensors") for s in SPLITS},
                    "messages": {s: str(ds / f"{s}.messages.jsonl") for s in SPLITS}},
        "output_dir": str(folder),
        "predictions_dir": str(folder / "predictions"),
        **config,
    }
    path = folder / "train.json"
    path.write_text(json.dumps(with_defaults(full, schema("train")), indent=1))
    return path
