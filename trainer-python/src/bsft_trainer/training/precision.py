"""fp32 master weights for trainable parameters that compute in bf16/fp16.

LoRA adapters compute in the model's dtype (no fp32 casts of every wrapped layer's input), but an optimizer over
bf16 parameters loses small updates: at lr 1e-5 most bf16 elements never change (the step is below half a unit in
the last place). So the optimizer works on fp32 copies: after backward the low-precision gradients are moved onto
the copies, the optimizer steps them, and the result is rounded back into the model. Parameters that are already
fp32 are used as they are.

Checkpoints keep the fp32 copies (`state()`), so a resumed run continues from exactly the weights it had.

Where fp32 copies cannot fit (full fine-tuning on one GPU), `CompensatedAdamW` below keeps bf16 weights and
carries each update's rounding error to the next (`train.master_weights: bf16_compensated`); with several GPUs
FSDP2 keeps the parameters themselves in fp32, sharded (sharding.py).
"""
from __future__ import annotations

import torch
from torch import nn


class MasterWeights:
    def __init__(self, named: list[tuple[str, nn.Parameter]], copies: bool = True):
        """copies=False: the optimizer steps the parameters themselves (CompensatedAdamW)."""
        self.names = [n for n, _ in named]
        self.model = [p for _, p in named]
        self.masters = [p if p.dtype == torch.float32 or not copies else p.detach().float().clone().requires_grad_(True)
                        for p in self.model]

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
        """The master weights by name, for torch.save right away: no copy (torch.save reads each from the device as
        it writes; a clone would double the weights' memory on the GPU for the length of the save)."""
        return {n: m.detach() for n, m in zip(self.names, self.masters)}

    @torch.no_grad()
    def load_state(self, state: dict) -> None:
        missing = [n for n in self.names if n not in state]
        if missing:
            raise ValueError(f"checkpoint lacks {len(missing)} trainable tensors, e.g. {missing[0]}")
        for n, m in zip(self.names, self.masters):
            m.copy_(state[n])
        self.masters_to_model()


class CompensatedAdamW(torch.optim.Optimizer):
    """AdamW over low-precision (bf16) parameters with no fp32 copy: `train.master_weights: bf16_compensated`.

    For one GPU where fp32 masters and states cannot fit (full fine-tuning of a 7B model: 15 GB of bf16 weights,
    15 GB of gradients, 30 GB of bf16 moments and 15 GB of compensation, against 137 GB with fp32 masters). Each
    update is computed in fp32, a slice at a time; the part of it that the bf16 weight cannot hold is kept in a
    bf16 compensation buffer and added to the next update (Kahan summation), so small updates accumulate instead
    of being rounded away. The moments are stored in bf16. Parameters that are fp32 are updated the same way (their
    compensation stays near zero).
    """

    SLICE = 1 << 24  # elements computed in fp32 at once: bounds the temporary memory of the largest matrix

    def __init__(self, params, lr, betas=(0.9, 0.999), eps=1e-8, weight_decay=0.0):
        super().__init__(params, {"lr": lr, "betas": tuple(betas), "eps": eps, "weight_decay": weight_decay})

    @torch.no_grad()
    def step(self, closure=None):
        for group in self.param_groups:
            lr, (b1, b2), eps, wd = group["lr"], group["betas"], group["eps"], group["weight_decay"]
            for p in group["params"]:
                if p.grad is None:
                    continue
                state = self.state[p]
                if not state:
                    state["step"] = torch.zeros((), dtype=torch.float32)
                    for k in ("exp_avg", "exp_avg_sq", "compensation"):
                        state[k] = torch.zeros_like(p, memory_format=torch.preserve_format)
                state["step"] += 1
                t = float(state["step"])
                step_size = lr / (1 - b1 ** t)
                root_bc2 = (1 - b2 ** t) ** 0.5
                flat = [x.view(-1) for x in (p, p.grad, state["exp_avg"], state["exp_avg_sq"], state["compensation"])]
                for s in range(0, flat[0].numel(), self.SLICE):
                    w16, g16, m16, v16, c16 = (x[s:s + self.SLICE] for x in flat)
                    g = g16.float()
                    m = m16.float().mul_(b1).add_(g, alpha=1 - b1)
                    v = v16.float().mul_(b2).addcmul_(g, g, value=1 - b2)
                    m16.copy_(m)
                    v16.copy_(v)
                    w = w16.float()
                    update = (m / (v.sqrt_().div_(root_bc2).add_(eps))).mul_(-step_size)
                    if wd:
                        update.add_(w, alpha=-lr * wd)
                    update.add_(c16.float())  # what earlier steps could not apply
                    new = (w + update).to(p.dtype)
                    c16.copy_(update.sub_(new.float() - w))  # what this step could not apply
                    w16.copy_(new)
        return None
