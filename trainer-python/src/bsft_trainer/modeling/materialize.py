"""Fills a model built on the meta device, one tensor at a time, from a weight source (weight_source.py).

A sharded run builds the whole model on the meta device (no memory), shards it with FSDP2 while it is still empty,
and only then gives each rank's shard its values: each parameter's rows `start:end` (the rank's block of
dimension 0, as FSDP2 cuts it) are read from the checkpoint's files or made by the seeded random init. A rank never
holds the whole model, in host or device memory: its shard (fp32, the master weights) plus one tensor being read.
Why per-tensor reads and not rank 0 reading and broadcasting: every rank reads only its own rows from the (memory-
mapped) files, with no collective and no rank holding more than its share; the files are on every machine anyway
(the Hugging Face cache or a shared folder), as they are for a one-process run.

One process fills the same way (rows 0:end), so that a randomly initialised model starts from the same values
whatever the number of ranks. The behavior-token rows (token_rows.py) are computed from the source's embedding
and output rows, read in blocks; full fine-tuning writes them into the matching rows of the shards that hold them.
"""
from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path

import torch

from .token_rows import initial_rows_from
from .weight_source import adapter_value


BLOCK_BYTES = 128 * 2**20  # rows of a parameter filled at once


def model_name(name: str, peft: bool) -> str:
    """The model's own name of a parameter of `Trainable` (`base.` + the model, `rows.` for the behavior rows)."""
    name = name.removeprefix("base.")
    if peft:
        name = name.removeprefix("base_model.model.").replace(".base_layer.", ".")
    return name


@dataclass
class Fill:
    """What materialize() needs, kept by the build: where the values come from and what each parameter is."""
    source: object  # RandomSource or CheckpointSource
    seed: int
    dtypes: dict  # parameter name (in Trainable) -> the dtype a one-process run keeps it in
    peft: bool
    embed: str  # the model's names of its input and output embeddings
    out: str
    first: int  # behavior-token rows: the first ID, how many, where they start from (token_rows.py)
    n: int
    sources: list | None
    tied: bool
    method: str
    skeleton: object = None  # the transformers model (its _init_weights fills non-persistent buffers)
    _rows: dict = field(default_factory=dict)

    def behavior_rows(self, which: str) -> torch.Tensor:
        """[n, H] start values of the behavior rows of the input (`embed`) or output embedding, in its dtype."""
        if which not in self._rows:
            name = self.embed if which == "embed" or self.tied else self.out
            self._rows[which] = initial_rows_from(lambda s, e: self.source.rows(name, s, e), self.first, self.n, self.sources)
        return self._rows[which]

    def value(self, name: str, start: int, end: int, shape: torch.Size, device: torch.device) -> torch.Tensor:
        """Rows start:end of parameter `name` (of Trainable), in the dtype one process keeps it in."""
        dtype = self.dtypes[name]
        if name in ("rows.embed", "rows.out"):
            return self.behavior_rows(name.removeprefix("rows."))[start:end].to(device=device, dtype=dtype)
        own = model_name(name, self.peft)
        if ".lora_" in own:
            return adapter_value(own, shape, dtype, device, self.seed)[start:end]
        value = self.source.rows(own, start, end).to(device=device, dtype=dtype)
        if self.method == "full" and own in (self.embed, self.out):
            lo, hi = max(start, self.first), min(end, self.first + self.n)
            if lo < hi:  # this block holds behavior rows: their start values replace the source's
                rows = self.behavior_rows("embed" if own == self.embed else "out")
                value[lo - start:hi - start] = rows[lo - self.first:hi - self.first].to(dtype)
        return value


def materialize(tm, fill: Fill, device: torch.device, param_device: torch.device | None = None) -> None:
    """Gives every parameter of `tm` (on the meta device, sharded or not) its values, and every buffer its value
    on `device`. `param_device`: where the parameters live (the host with train.cpu_offload)."""
    from ..parallel.sharding import local_rows

    container = tm.container
    ties = _ties(container)
    container.to_empty(device=param_device or device)
    for (module, name), (owner, owner_name) in ties:  # to_empty makes a tied parameter two: one again
        container.get_submodule(module)._parameters[name] = container.get_submodule(owner)._parameters[owner_name]
    with torch.no_grad():
        for name, param in container.named_parameters():
            local, start = local_rows(param)
            if not local.dim():
                local.copy_(fill.value(name, 0, 0, param.shape, local.device))
                continue
            # In blocks of rows: what is read (memory-mapped) and converted at once stays small beside the shard.
            step = max(1, BLOCK_BYTES // max(1, local[0].numel() * local.element_size()))
            for lo in range(0, local.shape[0], step):
                hi = min(local.shape[0], lo + step)
                local[lo:hi].copy_(fill.value(name, start + lo, start + hi, param.shape, local.device))
        fill.source.release()
        for module in container.modules():  # non-persistent buffers (rotary frequencies): computed, on the device
            if any(True for _ in module.buffers(recurse=False)) and not any(True for _ in module.parameters(recurse=False)):
                module.to_empty(device=device, recurse=False)
                fill.skeleton._init_weights(module)
    left = [n for n, t in [*container.named_parameters(), *container.named_buffers()] if t.is_meta]
    if left:
        raise RuntimeError(f"left on the meta device after filling: {', '.join(left[:5])}")


def _ties(container) -> list[tuple[tuple[str, str], tuple[str, str]]]:
    """((module, name), (owner module, name)) of each parameter that is another module's (tied embeddings)."""
    owners, ties = {}, []
    for module_name, module in container.named_modules(remove_duplicate=False):
        for name, p in module._parameters.items():
            if p is None:
                continue
            if id(p) in owners:
                ties.append(((module_name, name), owners[id(p)]))
            else:
                owners[id(p)] = (module_name, name)
    return ties


def save_base_from(folder: Path, skeleton, source) -> None:
    """Writes a transformers folder of the model `skeleton` (meta) with its values from `source`, a file at a time
    (a LoRA run's randomly initialised base, written without the model in memory)."""
    from ..checkpoints.weight_files import write_model_folder

    write_model_folder(folder, skeleton, lambda name, p: source.rows(name, 0, p.shape[0] if p.dim() else 0))
    source.release()
