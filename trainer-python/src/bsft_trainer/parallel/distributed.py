"""One run, several processes: torchrun starts one trainer process (rank) per GPU; this module is what a rank
knows of the others.

A rank learns its place from torchrun's environment (RANK, WORLD_SIZE, LOCAL_RANK, MASTER_ADDR/PORT) and joins
the process group: NCCL on GPUs, gloo on CPUs (the CPU tests). Every collective used here is PyTorch's own.

- Rank 0 alone publishes (COMPLETE, final/, metrics). Each machine's first rank (LOCAL_RANK 0) writes Contract 4
  events to its launcher, so that every machine of a run across machines reports the run's steps (the loss is summed
  over all ranks first: every machine reports the same figures); the other ranks' events go nowhere.
- Decisions that must be the same on every rank (stop after this step?) are agreed with one all-reduce.
- A process started without torchrun is a world of one with no process group (`World()`), except when it must
  read a sharded checkpoint: `solo()` then makes it a process group of one, so that the same sharded code runs.
"""
from __future__ import annotations

import datetime
import os
from dataclasses import dataclass

import torch



@dataclass
class World:
    rank: int = 0
    size: int = 1
    local_rank: int = 0
    # True when a process group exists: the model is sharded (FSDP2) and checkpoints are sharded (DCP).
    sharded: bool = False
    # Gloo groups beside the main one: `control` for the loop's small decisions (they never wait on a GPU stream),
    # `io` for checkpoint writes, which may run in a background thread (a group is used by one thread at a time).
    control: object = None
    io: object = None

    @property
    def main(self) -> bool:
        return self.rank == 0

    @property
    def speaks(self) -> bool:
        """Whether this rank writes the events of its machine's launcher (the first rank of each machine)."""
        return self.local_rank == 0

    def device(self) -> torch.device:
        if torch.cuda.is_available():
            return torch.device("cuda", self.local_rank)
        return torch.device("cpu")

    def barrier(self) -> None:
        if self.sharded:
            torch.distributed.barrier()

    def max_int(self, value: int) -> int:
        """The largest of every rank's `value`, on every rank."""
        if not self.sharded:
            return value
        t = torch.tensor([int(value)], dtype=torch.int64)
        torch.distributed.all_reduce(t, op=torch.distributed.ReduceOp.MAX, group=self.control)
        return int(t.item())

    def any(self, flag: bool) -> bool:
        """True on every rank when `flag` is true on one (one small all-reduce)."""
        return bool(self.max_int(1 if flag else 0))

    def broadcast(self, obj):
        """Rank 0's `obj`, on every rank."""
        if not self.sharded:
            return obj
        box = [obj]
        torch.distributed.broadcast_object_list(box, src=0, group=self.control)
        return box[0]

    def sum_(self, t: torch.Tensor) -> torch.Tensor:
        """Sums `t` over the ranks, in place; returns it."""
        if self.sharded:
            torch.distributed.all_reduce(t, op=torch.distributed.ReduceOp.SUM)
        return t

    def gather(self, obj):
        """Every rank's `obj`, in rank order, on rank 0 (None elsewhere)."""
        if not self.sharded:
            return [obj]
        out = [None] * self.size if self.main else None
        torch.distributed.gather_object(obj, out, dst=0, group=self.control)
        return out

    def close(self) -> None:
        if self.sharded and torch.distributed.is_initialized():
            torch.distributed.destroy_process_group()


def full_value(t: torch.Tensor) -> torch.Tensor:
    """A value computed over sharded tensors (clip_grad_norm_'s norm is then a DTensor, the same on every rank) as a
    plain tensor; a plain tensor as it is."""
    return t.full_tensor() if hasattr(t, "full_tensor") else t


def _backend() -> str:
    return "nccl" if torch.cuda.is_available() else "gloo"


def from_torchrun(timeout_s: float = 1800) -> World:
    """Joins the process group torchrun set up (collectives time out after `timeout_s`: a rank that hangs in one
    fails instead of waiting forever)."""
    world = World(int(os.environ["RANK"]), int(os.environ["WORLD_SIZE"]), int(os.environ["LOCAL_RANK"]), True)
    if torch.cuda.is_available():
        torch.cuda.set_device(world.local_rank)
    torch.distributed.init_process_group(_backend(), timeout=datetime.timedelta(seconds=timeout_s))
    world.control, world.io = _gloo_group(), _gloo_group()
    return world


def _gloo_group():
    return torch.distributed.new_group(backend="gloo")


def solo() -> World:
    """A process group of one, for a process started without torchrun that resumes a sharded checkpoint."""
    store = torch.distributed.HashStore()
    torch.distributed.init_process_group(_backend(), store=store, rank=0, world_size=1)
    return World(0, 1, 0, True, _gloo_group(), _gloo_group())


def available() -> str | None:
    """Why sharded training cannot run with this torch (None when it can)."""
    if not torch.distributed.is_available():
        return f"torch {torch.__version__} was built without torch.distributed"
    try:
        from torch.distributed.fsdp import fully_shard  # noqa: F401  (torch >= 2.6)
    except Exception:  # noqa: BLE001 - an old torch may fail to import it in other ways than ImportError
        try:
            from torch.distributed._composable.fsdp import fully_shard  # noqa: F401,F811  (torch 2.4, 2.5)
        except Exception:  # noqa: BLE001
            return f"torch {torch.__version__} has no FSDP2 (fully_shard): sharded training needs torch >= 2.4"
    return None
