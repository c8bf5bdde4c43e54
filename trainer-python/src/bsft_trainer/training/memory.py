"""Activation checkpointing decided from the memory plan and measured memory (`train.activation_checkpointing: auto`).

Before step 1: the orchestrator's memory plan of the recipe (train.json `memory_plan`, recipe/memory-plan.ts) gives
the step's total bytes per GPU with 0, 1, ... all layers recomputed; when it says the step cannot fit this GPU's
budget without recomputation, the fewest layers whose planned total fits recompute from step 1 on
(`planned_recompute`, the rule the plan itself uses against a card).

Otherwise the first optimizer step runs without recomputation. Its peak (activations, gradients, the optimizer
states that the first step allocates, fp32 master copies) is then read from the device against the memory this
process can have: when it fits, recomputation stays off (it costs ~25% of step time); when it does not, only as
many decoder layers as are needed to bring the peak under the budget recompute their activations (selective
checkpointing). A first step that does not fit at all is retried with every layer recomputed (one process), or
the launcher starts every rank again with every layer recomputed (several ranks: a rank that ran out of memory
inside a collective cannot rejoin its step).

On a CPU there is no device memory to measure: `auto` means off.
"""
from __future__ import annotations

import math

import torch

# Share of the memory this process can have that a step may use: batches differ a little in size, and the
# allocator fragments.
BUDGET_SHARE = 0.9
# Recompute a little more than the arithmetic says: a checkpointed layer still keeps its input.
MARGIN = 1.25


class CudaMemory:
    """What `auto` measures on a CUDA device."""

    def __init__(self, device: torch.device):
        self.device = device

    def reset_peak(self) -> None:
        torch.cuda.reset_peak_memory_stats(self.device)

    def peak(self) -> int:
        return torch.cuda.max_memory_allocated(self.device)

    def allocated(self) -> int:
        return torch.cuda.memory_allocated(self.device)

    def budget(self) -> int:
        """Bytes this process may use: free device memory plus what its allocator already holds."""
        free, _ = torch.cuda.mem_get_info(self.device)
        return int(BUDGET_SHARE * (free + torch.cuda.memory_reserved(self.device)))


def probe(device: torch.device) -> CudaMemory | None:
    return CudaMemory(device) if device.type == "cuda" else None


def planned_recompute(plan, budget: int, world_size: int, n_layers: int) -> int | None:
    """How many layers the memory plan says must recompute to fit `budget` bytes: the fewest whose planned total
    fits, all of them when none does (recipe/memory-plan.ts `recomputeToFit`). None when there is no plan for this
    world size and model depth."""
    if plan is None or plan.gpus != world_size or len(plan.peak_bytes) != n_layers + 1:
        return None
    return next((n for n, peak in enumerate(plan.peak_bytes) if peak <= budget), n_layers)


def layers_to_recompute(peak: int, static: int, budget: int, n_layers: int) -> int:
    """How many decoder layers must recompute their activations for a step that peaked at `peak` bytes without
    recomputation to fit in `budget`. `static` is what stays allocated between steps (weights, optimizer states),
    so `peak - static` is what the step itself needed, spread over the layers."""
    if peak <= budget:
        return 0
    per_layer = max(1, peak - static) / max(1, n_layers)
    return min(n_layers, math.ceil(MARGIN * (peak - budget) / per_layer))


def is_oom(error: BaseException) -> bool:
    return type(error).__name__ == "OutOfMemoryError" or "out of memory" in str(error).lower()


def gib(n: float) -> str:
    return f"{n / 2**30:.1f} GiB"
