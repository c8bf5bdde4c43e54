"""Packing: documents concatenated into batches of at most `batch_tokens` tokens.

No attention crosses documents (each batch carries `cu_seqlens`, the document boundaries), positions restart at
0 in every document, and only tokens whose `loss_mask` is 1 are predicted. The order of documents is a pure
function of (seed, epoch), so a data position (epoch, batch index) is enough to resume the same sample order.
"""
from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import torch
from ..data.shards import Shard

IGNORE = -100


@dataclass
class Batch:
    input_ids: torch.Tensor  # int64 [T]
    labels: torch.Tensor  # int64 [T]; IGNORE where nothing is predicted
    position_ids: torch.Tensor  # int64 [T], restarting at 0 per document
    cu_seqlens: torch.Tensor  # int32 [D+1], document boundaries inside the batch
    max_seqlen: int
    docs: list
    n_loss_tokens: int
    loss_index: torch.Tensor | None = None  # int64 [n_loss_tokens], positions whose label is in the loss

    @property
    def n_tokens(self):
        return int(self.input_ids.shape[0])

    def _map(self, fn):
        return Batch(fn(self.input_ids), fn(self.labels), fn(self.position_ids), fn(self.cu_seqlens), self.max_seqlen,
                     self.docs, self.n_loss_tokens, None if self.loss_index is None else fn(self.loss_index))

    def to(self, device, non_blocking=False):
        return self._map(lambda t: t.to(device, non_blocking=non_blocking))

    def pin_memory(self):
        return self._map(lambda t: t.pin_memory())


def plan_epoch(lengths: np.ndarray, batch_tokens: int, seed: int, epoch: int) -> list[list[int]]:
    """Lists of document indices, one list per batch, for one epoch: a seeded shuffle, then greedy filling."""
    order = np.random.default_rng([seed, epoch]).permutation(len(lengths))
    batches, current, used = [], [], 0
    for i in order:
        n = int(lengths[i])
        if n > batch_tokens:
            raise ValueError(f"document {i} has {n} tokens, more than batch_tokens {batch_tokens}")
        if used + n > batch_tokens and current:
            batches.append(current)
            current, used = [], 0
        current.append(int(i))
        used += n
    if current:
        batches.append(current)
    return batches


def make_batch(shard: Shard, docs: list[int]) -> "Batch":
    ids, labels, positions, bounds = [], [], [], [0]
    for d in docs:
        doc_ids, mask = shard.doc(d)
        n = len(doc_ids)
        lab = np.full(n, IGNORE, dtype=np.int64)
        # Position t predicts token t+1 of the same document, where that token is in the loss.
        nxt = mask[1:].astype(bool)
        lab[:-1][nxt] = doc_ids[1:][nxt]
        ids.append(doc_ids.astype(np.int64))
        labels.append(lab)
        positions.append(np.arange(n, dtype=np.int64))
        bounds.append(bounds[-1] + n)
    labels_np = np.concatenate(labels)
    lengths = np.diff(bounds)
    return Batch(
        input_ids=torch.from_numpy(np.concatenate(ids)),
        labels=torch.from_numpy(labels_np),
        position_ids=torch.from_numpy(np.concatenate(positions)),
        cu_seqlens=torch.tensor(bounds, dtype=torch.int32),
        max_seqlen=int(lengths.max()),
        docs=list(docs),
        n_loss_tokens=int((labels_np != IGNORE).sum()),
        # Known here, on the host: selecting the loss positions on the device then needs no synchronisation.
        loss_index=torch.from_numpy(np.flatnonzero(labels_np != IGNORE).astype(np.int64)),
    )


class DataOrder:
    """The sequence of batches over epochs; `position` = (epoch, index of the next batch in that epoch)."""

    def __init__(self, shard, batch_tokens, seed):
        self.shard = shard
        self.batch_tokens = batch_tokens
        self.seed = seed
        self._lengths = shard.lengths()
        self._loss_tokens = None
        self._plans = {}
        self.epoch = 0
        self.index = 0

    def plan(self, epoch):
        if epoch not in self._plans:
            self._plans = {epoch: plan_epoch(self._lengths, self.batch_tokens, self.seed, epoch)}
        return self._plans[epoch]

    @property
    def batches_per_epoch(self):
        return len(self.plan(0))

    def next_docs(self):
        plan = self.plan(self.epoch)
        if self.index >= len(plan):
            self.epoch += 1
            self.index = 0
            plan = self.plan(self.epoch)
        docs = plan[self.index]
        self.index += 1
        return docs

    def tokens(self, docs):
        """Tokens of a batch of these documents (no batch is built)."""
        return int(self._lengths[docs].sum())

    def loss_tokens(self, docs):
        """Positions in the loss of a batch of these documents (make_batch's n_loss_tokens), without building it:
        every rank knows the whole step's count, its own batches and the others'."""
        if self._loss_tokens is None:
            # A position is in the loss when the next token of the same document is: mask[1:] within each document.
            counts = np.concatenate([[0], np.cumsum(np.asarray(self.shard.loss_mask, dtype=np.int64))])
            starts, ends = self.shard.offsets[:-1], self.shard.offsets[1:]
            self._loss_tokens = counts[ends] - counts[starts + 1]
        return int(self._loss_tokens[docs].sum())

    def next_batch(self):
        return make_batch(self.shard, self.next_docs())

    def state_dict(self):
        return {"epoch": self.epoch, "index": self.index, "seed": self.seed, "batch_tokens": self.batch_tokens}

    def load_state_dict(self, state):
        self.epoch = int(state["epoch"])
        self.index = int(state["index"])
