"""fp32 master weights for trainable parameters that compute in bf16/fp16.

LoRA adapters compute in the model's dtype (no fp32 casts of every wrapped layer's input), but an optimizer over
bf16 parameters loses small updates: at lr 1e-5 most bf16 elements never change (the step is below half a unit in
the last place). So the optimizer works on fp32 copies: after backward the low-precision gradients are moved onto
the copies, the optimizer steps them, and the result is rounded back into the model. Parameters that are already
fp32 are used as they are.

Checkpoints keep the fp32 copies (`state()`), so a resumed run continues from exactly the weights it had.
"""
from __future__ import annotations

import torch
from torch import nn


class MasterWeights:
    def __init__(self, named: list[tuple[str, nn.Parameter]]):
        self.names = [n for n, _ in named]
        self.model = [p for _, p in named]
        self.masters = [p if p.dtype == torch.float32 else p.detach().float().clone().requires_grad_(True) for p in self.model]

    @property
    def separate(self) -> int:
        """How many parameters have an fp32 copy."""
        return sum(m is not p for p, m in zip(self.model, self.masters))

    def parameters(self) -> list[torch.Tensor]:
        """What the optimizer steps."""
        return self.masters

    def grads_to_masters(self) -> None:
        for p, m in zip(self.model, self.masters):
            if m is not p:
                m.grad = None if p.grad is None else p.grad.float()
                p.grad = None

    @torch.no_grad()
    def masters_to_model(self) -> None:
        for p, m in zip(self.model, self.masters):
            if m is not p:
                p.copy_(m)

    def zero_grad(self) -> None:
        for p, m in zip(self.model, self.masters):
            p.grad = None
            m.grad = None

    def state(self) -> dict:
        return {n: m.detach().clone() for n, m in zip(self.names, self.masters)}

    @torch.no_grad()
    def load_state(self, state: dict) -> None:
        missing = [n for n in self.names if n not in state]
        if missing:
            raise ValueError(f"checkpoint lacks {len(missing)} trainable tensors, e.g. {missing[0]}")
        for n, m in zip(self.names, self.masters):
            m.copy_(state[n])
        self.masters_to_model()
