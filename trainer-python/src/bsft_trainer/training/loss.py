"""Causal-LM loss over packed batches without materialising the full [T, vocab] fp32 logits.

Only positions whose label is in the loss are projected to the vocabulary, in chunks of `chunk` positions. Each
chunk's logits are upcast to fp32 for a stable log-softmax, and, when gradients are wanted, the chunk's gradients
(with respect to the hidden states, the output weight and the behavior-token rows) are computed right there and the
logits dropped before the next chunk (fused linear cross-entropy): what the backward pass keeps is the gradient of
the hidden states (H values per loss token, in their dtype, plus the 8-byte index of the position: 7.2 KB per loss
token at Qwen2.5-7B's H = 3584 in bf16) instead of a chunk of fp32 logits (V values per loss token, 608 KB for
Qwen2.5's 152,064-row vocabulary).

When the output weight trains (full fine-tuning), its gradient is summed over the chunks in fp32: a vocabulary x
hidden buffer (2.18 GB at the 7B shape) held from the forward to the backward, where it is scaled (a second fp32
copy) and cast to the weight's dtype. The orchestrator's memory plan (recipe/memory-plan.ts, `working_parts`)
counts these buffers.

The result is the *sum* of token losses, so that gradient accumulation can divide by the loss tokens of the whole
optimizer step.
"""
from __future__ import annotations

import torch
import torch.nn.functional as F

from .packing import IGNORE
from torch import Tensor


def output_logits(hidden: Tensor, weight: Tensor, new_rows: tuple | None = None) -> Tensor:
    """hidden [N, H] -> logits [N, V]. `new_rows` = (first_id, rows [n, H]) replaces the behavior-token columns."""
    logits = hidden @ weight.t()
    if new_rows is not None:
        # In place: the matmul's backward needs `hidden` and `weight`, not its output.
        first, rows = new_rows
        logits[:, first:first + rows.shape[0]] = hidden @ rows.t().to(hidden.dtype)
    return logits


def _accumulator(dtype: torch.dtype) -> torch.dtype:
    return torch.float64 if dtype == torch.float64 else torch.float32


class _FusedLinearCE(torch.autograd.Function):
    """sum over N positions of CE(output_logits(h, weight, (first, rows)), y), gradients computed chunk by chunk in
    the forward pass. The gradients of the logits are taken in the dtype of `h` (bf16 on a GPU), as autograd would
    through the plain path; the output weight's and the rows' gradients are summed over chunks in fp32."""

    @staticmethod
    def forward(ctx, h, y, weight, rows, first, chunk):
        need_h, _, need_w, need_r = ctx.needs_input_grad[:4]
        acc = _accumulator(h.dtype)
        total = h.new_zeros((), dtype=acc)
        grad_h = torch.empty_like(h) if need_h else None
        grad_w = torch.zeros(weight.shape, dtype=acc, device=weight.device) if need_w else None
        grad_r = torch.zeros(rows.shape, dtype=acc, device=rows.device) if need_r else None
        new_rows = (first, rows) if rows is not None else None
        for s in range(0, h.shape[0], chunk):
            hc, yc = h[s:s + chunk], y[s:s + chunk]
            logits = output_logits(hc, weight, new_rows).to(acc)
            lse = torch.logsumexp(logits, dim=-1)
            total += (lse - logits.gather(1, yc[:, None])[:, 0]).sum()
            # d(sum CE)/d(logits) = softmax - one_hot(y), written over the logits (no second [c, V] buffer)
            d = logits.sub_(lse[:, None]).exp_()
            d[torch.arange(d.shape[0], device=d.device), yc] -= 1
            d = d.to(h.dtype)
            d_rows = None
            if rows is not None:
                d_rows = d[:, first:first + rows.shape[0]].clone()
                d[:, first:first + rows.shape[0]] = 0  # those columns come from `rows`, not from `weight`
            if need_h:
                g = d @ weight
                if d_rows is not None:
                    g += d_rows @ rows.to(h.dtype)
                grad_h[s:s + chunk] = g
            if need_w:
                grad_w += (d.t() @ hc).to(acc)
            if need_r:
                grad_r += (d_rows.t() @ hc).to(acc)
            del logits, d, d_rows
        ctx.save_for_backward(*(g for g in (grad_h, grad_w, grad_r) if g is not None))
        ctx.present = (need_h, need_w, need_r)
        ctx.dtypes = (h.dtype, weight.dtype, rows.dtype if rows is not None else None)
        return total

    @staticmethod
    def backward(ctx, grad_out):
        saved = list(ctx.saved_tensors)
        grads = [saved.pop(0) if present else None for present in ctx.present]
        out = [None if g is None else (g * grad_out.to(g.dtype)).to(dt) for g, dt in zip(grads, ctx.dtypes)]
        return out[0], None, out[1], out[2], None, None


def loss_index(labels: Tensor) -> Tensor:
    """Positions whose label is in the loss (computed on the host with the batch, so that selecting them on the
    device needs no host synchronisation)."""
    return (labels != IGNORE).nonzero()[:, 0]


def chunked_ce_sum(hidden: Tensor, labels: Tensor, weight: Tensor, new_rows: tuple | None = None, chunk: int = 4096,
                   index: Tensor | None = None) -> Tensor:
    """Sum of cross-entropy over positions with labels != IGNORE. hidden [T, H], labels [T]; `index` (optional) the
    positions in the loss, from `loss_index`."""
    if index is None:
        index = loss_index(labels)
    h = hidden.index_select(0, index)
    y = labels.index_select(0, index)
    first, rows = new_rows if new_rows is not None else (0, None)
    wants_grad = torch.is_grad_enabled() and any(t is not None and t.requires_grad for t in (hidden, weight, rows))
    if wants_grad:
        return _FusedLinearCE.apply(h, y, weight, rows, first, chunk)
    acc = _accumulator(hidden.dtype)
    total = hidden.new_zeros((), dtype=acc)
    for s in range(0, h.shape[0], chunk):
        logits = output_logits(h[s:s + chunk], weight, new_rows).to(acc)
        total = total + F.cross_entropy(logits, y[s:s + chunk], reduction="sum")
    return total


def reference_ce_sum(logits: Tensor, labels: Tensor) -> Tensor:
    """Plain full-logits reference (tests, benchmark guard): logits [T, V], labels [T]."""
    return F.cross_entropy(logits.to(_accumulator(logits.dtype)), labels, ignore_index=IGNORE, reduction="sum")
