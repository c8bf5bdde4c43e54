"""FSDP2 (`fully_shard`) over the ranks of a run: each decoder layer is one shard group, the root (embeddings,
final norm, output weight, behavior rows) another.

Parameters are kept in fp32, sharded: they are the master weights, and AdamW's states over them are fp32 and
sharded too. Layers compute in the recipe's dtype (bf16 on GPUs: `MixedPrecisionPolicy(param_dtype=bf16)`), and
gradients are reduced in fp32 (`reduce_dtype`). With `train.cpu_offload` the sharded parameters, gradients and
optimizer states live in host memory (`CPUOffloadPolicy`): fewer GPUs, slower steps.

In LoRA mode the frozen base is sharded the same way; only the adapters and behavior rows get gradients.
"""
from __future__ import annotations

import torch

try:  # torch >= 2.6
    from torch.distributed.fsdp import CPUOffloadPolicy, MixedPrecisionPolicy, fully_shard
except ImportError:  # torch 2.4, 2.5
    from torch.distributed._composable.fsdp import CPUOffloadPolicy, MixedPrecisionPolicy, fully_shard  # type: ignore


def shard(tm, compute_dtype: torch.dtype, cpu_offload: bool) -> None:
    """Shards `tm` (a TrainModel whose parameters are fp32) in place across the process group's ranks."""
    mp = MixedPrecisionPolicy(param_dtype=None if compute_dtype == torch.float32 else compute_dtype,
                              reduce_dtype=torch.float32)
    kwargs = {"mp_policy": mp, **({"offload_policy": CPUOffloadPolicy()} if cpu_offload else {})}
    for layer in tm.layers:
        fully_shard(layer, **kwargs)
    # The root's parameters are gathered once per forward and kept until its backward is done.
    fully_shard(tm.container, reshard_after_forward=False, **kwargs)
