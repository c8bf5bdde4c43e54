"""Behavior-token rows (Contract 2).

The behavior tokens have IDs `first .. first+n-1` inside the model's existing embedding rows (Qwen2.5: 151665..,
inside 152064 rows): no resize. Their input-embedding and output rows are initialised **by ID** to the mean of the
rows of the existing vocabulary (`0 .. first-1`), or (`train.token_init: description`) to the mean of the rows of
the tokens of the behavior's description, which the dataset manifest lists by name; never `embed[-n:]`.

In LoRA mode the base embedding stays frozen and the rows live in this small module (trainable, saved as its own
file); in full fine-tuning they are written into the weights, which train as a whole.
"""
from __future__ import annotations

import torch
from torch import nn
from torch import Tensor
from collections.abc import Callable
from typing import TYPE_CHECKING
if TYPE_CHECKING:
    from ..data.config import Manifest


def initial_rows(weight: Tensor, first: int, n: int, sources: list[list[int]] | None = None) -> Tensor:
    """[n, H] start values of rows `first .. first+n-1`: row i is the mean of the rows `sources[i]` (token IDs of a
    description), or of every existing row when `sources` is None."""
    weight = weight.detach()
    return initial_rows_from(lambda s, e: weight[s:e], first, n, sources)


def initial_rows_from(read: Callable[[int, int], Tensor], first: int, n: int, sources: list[list[int]] | None = None) -> Tensor:
    """initial_rows of a weight read `read(start, end)` rows at a time (a meta-device build reads them from the
    checkpoint's files: materialize.py)."""
    if sources is None:  # summed in slices: no fp32 copy of the whole [first, H] matrix (2.2 GB for Qwen2.5-7B)
        total = None
        for s in range(0, first, 8192):
            block = read(s, min(first, s + 8192))
            if total is None:
                total = torch.zeros(block.shape[1], dtype=torch.float64 if block.dtype == torch.float64 else torch.float32,
                                    device=block.device)
            total += block.float().sum(0)
        return (total / first).to(block.dtype)[None].repeat(n, 1)
    picked = [torch.cat([read(i, i + 1) for i in ids]) for ids in sources]
    return torch.stack([rows.float().mean(0) for rows in picked]).to(picked[0].dtype)


def row_sources(init: str, manifest: Manifest) -> list[list[int]] | None:
    """Per behavior ID (ascending), the token IDs its row starts from; None for `init: mean`."""
    if init == "mean":
        return None
    from ..process.events import DataError

    descriptions = manifest.behavior_descriptions
    if not descriptions:
        raise DataError("train.token_init is description but the dataset manifest has no behavior_descriptions: "
                        "rebuild the dataset with this version of bsft")
    first = min(manifest.behavior_ids.values())
    sources = []
    for name, _ in sorted(manifest.behavior_ids.items(), key=lambda kv: kv[1]):
        ids = descriptions.get(name)
        if not isinstance(ids, list) or not ids or not all(isinstance(i, int) and 0 <= i < first for i in ids):
            raise DataError(f"manifest behavior_descriptions.{name}: expected a non-empty list of token IDs below {first}")
        sources.append(ids)
    return sources


class TokenRows(nn.Module):
    """The behavior-token rows of a LoRA run (fp32, trainable). `tied`: the model's input and output embeddings are
    one matrix, so there is one set of rows (`out` is `embed`), trained through both uses."""

    def __init__(self, embed_weight, out_weight, first, n, sources=None, tied=False):
        super().__init__()
        if first + n > embed_weight.shape[0] or first + n > out_weight.shape[0]:
            raise ValueError(f"behavior token IDs {first}..{first + n - 1} do not fit in {embed_weight.shape[0]} embedding rows")
        self.first = first
        self.n = n
        self.tied = tied
        self.embed = nn.Parameter(initial_rows(embed_weight, first, n, sources).float())
        self.out = self.embed if tied else nn.Parameter(initial_rows(out_weight, first, n, sources).float())

    def embed_ids(self, input_ids, embeddings):
        """embeddings [..., H] of `input_ids`, with the behavior-token positions taken from the trainable rows."""
        is_new = (input_ids >= self.first) & (input_ids < self.first + self.n)
        rows = self.embed[(input_ids - self.first).clamp(0, self.n - 1)].to(embeddings.dtype)
        return torch.where(is_new[..., None], rows, embeddings)

    def output(self):
        """(first_id, rows) for `loss.output_logits`."""
        return self.first, self.out


def init_rows_in_place(embed_weight: Tensor, out_weight: Tensor, first: int, n: int, sources: list[list[int]] | None = None,
                       tied: bool = False) -> None:
    """Full fine-tuning: initialise the behavior-token rows of the weights themselves, by ID (once when tied)."""
    with torch.no_grad():
        embed_weight[first:first + n] = initial_rows(embed_weight, first, n, sources)
        if not tied:
            out_weight[first:first + n] = initial_rows(out_weight, first, n, sources)
