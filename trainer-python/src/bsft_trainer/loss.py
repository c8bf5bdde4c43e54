"""Causal-LM loss over packed batches without materialising the full [T, vocab] fp32 logits.

Only positions whose label is in the loss are projected to the vocabulary, in chunks; each chunk's logits are
upcast to fp32 for a stable log-softmax and dropped before the next. The result is the *sum* of token losses, so
that gradient accumulation can divide by the loss tokens of the whole optimizer step.
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


def chunked_ce_sum(hidden: Tensor, labels: Tensor, weight: Tensor, new_rows: tuple | None = None, chunk: int = 4096) -> Tensor:
    """Sum of cross-entropy over positions with labels != IGNORE. hidden [T, H], labels [T]."""
    keep = labels != IGNORE
    h = hidden[keep]
    y = labels[keep]
    acc = torch.float64 if hidden.dtype == torch.float64 else torch.float32
    total = hidden.new_zeros((), dtype=acc)
    for s in range(0, h.shape[0], chunk):
        logits = output_logits(h[s:s + chunk], weight, new_rows).to(acc)
        total = total + F.cross_entropy(logits, y[s:s + chunk], reduction="sum")
    return total


def reference_ce_sum(logits: Tensor, labels: Tensor) -> Tensor:
    """Plain full-logits reference (tests, benchmark guard): logits [T, V], labels [T]."""
    acc = torch.float64 if logits.dtype == torch.float64 else torch.float32
    return F.cross_entropy(logits.to(acc), labels, ignore_index=IGNORE, reduction="sum")
