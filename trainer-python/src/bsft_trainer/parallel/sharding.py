"""FSDP2 (`fully_shard`) over the ranks of a run: each decoder layer is one shard group, the root (embeddings,
final norm, output weight, behavior rows) another.

Parameters are kept in fp32, sharded: they are the master weights, and AdamW's states over them are fp32 and
sharded too. Layers compute in the recipe's dtype (bf16 on GPUs: `MixedPrecisionPolicy(param_dtype=bf16)`), and
gradients are reduced in fp32 (`reduce_dtype`). With `train.cpu_offload` the sharded parameters, gradients and
optimizer states live in host memory (`CPUOffloadPolicy`): fewer GPUs, slower steps.

In LoRA mode the frozen base is sharded the same way; only the adapters and behavior rows get gradients.
"""
from __future__ import annotations

import math

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


# FSDP2's layout of a sharded parameter: dimension 0 cut in `world` blocks of ceil(rows / world) rows (the last ones
# shorter or empty), block r on rank r. materialize.py fills the blocks; whole() puts them together again.

def _block_rows(param) -> int:
    """Rows of each rank's block of a sharded `param` (a DTensor)."""
    return math.ceil(param.shape[0] / param.device_mesh.size())


def local_rows(param: torch.Tensor) -> tuple[torch.Tensor, int]:
    """(the tensor this process holds of `param`, the index of its first row in the whole parameter)."""
    from torch.distributed.tensor import DTensor

    if not isinstance(param, DTensor):
        return param.data, 0
    return param.to_local(), min(param.shape[0], param.device_mesh.get_local_rank() * _block_rows(param))


def whole(param: torch.Tensor, device: torch.device) -> torch.Tensor | None:
    """Every rank takes part: the whole value of `param` on rank 0 (None on the others), its blocks gathered
    straight into one tensor (through `device`: a shard kept in host memory by train.cpu_offload goes through the GPU
    when the ranks talk over NCCL). Rank 0 holds the tensor once; the others only their block."""
    from torch.distributed.tensor import DTensor

    if not isinstance(param, DTensor):
        return param.detach()
    if not param.dim():
        return param.full_tensor()
    local = param.to_local().detach()
    group = param.device_mesh.get_group()
    world = param.device_mesh.size()
    block = _block_rows(param)
    mine = torch.zeros((block, *param.shape[1:]), dtype=local.dtype, device=device)
    mine[:local.shape[0]] = local
    main = torch.distributed.get_rank(group) == 0
    value = torch.empty((world * block, *param.shape[1:]), dtype=local.dtype, device=device) if main else None
    torch.distributed.gather(mine, list(value.chunk(world)) if main else None, group_dst=0, group=group)
    return value[:param.shape[0]] if main else None
