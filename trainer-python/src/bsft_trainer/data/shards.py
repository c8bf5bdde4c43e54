"""Contract 3 shards: `tokens.safetensors` with input_ids int32 [T], loss_mask uint8 [T], doc_offsets int64 [D+1].

Read with numpy memory maps (no `safetensors` package needed): only the pages of the documents in use are read.
"""
from __future__ import annotations

import json
import struct

import numpy as np

from ..process.events import DataError

_DTYPES = {"I32": np.int32, "U8": np.uint8, "I64": np.int64}
_EXPECTED = {"input_ids": "I32", "loss_mask": "U8", "doc_offsets": "I64"}


def read_safetensors_header(path: str) -> tuple[dict, int]:
    with open(path, "rb") as f:
        raw = f.read(8)
        if len(raw) != 8:
            raise DataError(f"{path}: not a safetensors file (too short)")
        (n,) = struct.unpack("<Q", raw)
        if n > 100_000_000:
            raise DataError(f"{path}: not a safetensors file (header length {n})")
        header = json.loads(f.read(n))
    return header, 8 + n


class Shard:
    """One split's documents, memory-mapped."""

    def __init__(self, path):
        self.path = str(path)
        try:
            header, data_start = read_safetensors_header(self.path)
        except FileNotFoundError:
            raise DataError(f"shard not found: {self.path}") from None
        except (ValueError, UnicodeDecodeError) as e:
            raise DataError(f"{self.path}: bad safetensors header: {e}") from None
        arrays = {}
        for name, dtype in _EXPECTED.items():
            entry = header.get(name)
            if entry is None:
                raise DataError(f"{self.path}: tensor {name} missing")
            if entry["dtype"] != dtype or len(entry["shape"]) != 1:
                raise DataError(f"{self.path}: {name} must be a 1-d {dtype} tensor, got {entry['dtype']} {entry['shape']}")
            start, end = entry["data_offsets"]
            count = entry["shape"][0]
            if count == 0:
                arrays[name] = np.zeros(0, dtype=_DTYPES[dtype])
            else:
                arrays[name] = np.memmap(self.path, dtype=_DTYPES[dtype], mode="r", offset=data_start + start, shape=(count,))
            if (end - start) != count * np.dtype(_DTYPES[dtype]).itemsize:
                raise DataError(f"{self.path}: {name} byte size does not match its shape")
        self.input_ids = arrays["input_ids"]
        self.loss_mask = arrays["loss_mask"]
        self.offsets = np.asarray(arrays["doc_offsets"], dtype=np.int64)
        if len(self.input_ids) != len(self.loss_mask):
            raise DataError(f"{self.path}: input_ids and loss_mask differ in length")
        if len(self.offsets) == 0 or self.offsets[0] != 0 or self.offsets[-1] != len(self.input_ids) or np.any(np.diff(self.offsets) <= 0):
            raise DataError(f"{self.path}: doc_offsets must rise strictly from 0 to the token count")

    def __len__(self):
        return len(self.offsets) - 1

    def lengths(self):
        return np.diff(self.offsets)

    def doc(self, i):
        s, e = int(self.offsets[i]), int(self.offsets[i + 1])
        return np.asarray(self.input_ids[s:e]), np.asarray(self.loss_mask[s:e])
