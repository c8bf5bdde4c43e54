"""A transformers model folder written a tensor at a time: config.json, generation_config.json and the weights as
safetensors files of at most `max_file_bytes` (with `model.safetensors.index.json` when there are several), as
`save_pretrained` writes them, without the whole model ever in memory.

Used for a randomly initialised LoRA base (its values made one module at a time) and for the final model of a
sharded full fine-tuning run (each weight gathered from the ranks in turn, rank 0 writing): memory holds one file's
worth of weights at most."""
from __future__ import annotations

import json
from collections.abc import Callable
from pathlib import Path

import torch

MAX_FILE_BYTES = 2 * 1024**3


def write_model_folder(folder: Path | None, model, value: Callable[[str, torch.Tensor], torch.Tensor | None],
                       dtype: torch.dtype | None = None, max_file_bytes: int = MAX_FILE_BYTES) -> None:
    """Writes `model` (a transformers model: its config and parameter names and shapes; a tied weight once, under its
    first name) to `folder`, each weight's whole value asked from `value(name, parameter)` in name order, stored in
    `dtype` (default: the parameter's). folder None: only asks (a rank other than 0 taking part in a gather)."""
    params = list(model.named_parameters())
    size = lambda p: p.numel() * (dtype or p.dtype).itemsize  # noqa: E731
    files, total = [[]], 0
    for name, p in params:
        if files[-1] and total + size(p) > max_file_bytes:
            files.append([])
            total = 0
        files[-1].append((name, p))
        total += size(p)
    names = ["model.safetensors"] if len(files) == 1 else \
        [f"model-{i + 1:05d}-of-{len(files):05d}.safetensors" for i in range(len(files))]
    if folder is not None:
        model.config.save_pretrained(folder)
        if getattr(model, "generation_config", None) is not None:
            model.generation_config.save_pretrained(folder)
    from safetensors.torch import save_file

    for file, group in zip(names, files):
        tensors = {}
        for name, p in group:
            v = value(name, p)
            if folder is not None:
                tensors[name] = v.detach().to(device="cpu", dtype=dtype or v.dtype).contiguous()
        if folder is not None:
            save_file(tensors, str(Path(folder) / file), metadata={"format": "pt"})
    if folder is not None and len(files) > 1:
        index = {"metadata": {"total_size": sum(size(p) for _, p in params)},
                 "weight_map": {n: f for f, g in zip(names, files) for n, _ in g}}
        (Path(folder) / "model.safetensors.index.json").write_text(json.dumps(index, indent=2))
