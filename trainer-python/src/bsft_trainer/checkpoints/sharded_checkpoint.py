"""Sharded checkpoints of a run trained by several ranks (torch.distributed.checkpoint, DCP).

`checkpoints/step-000120/` holds:
- `dcp/`: the trainable weights (fp32 masters) and the optimizer states, each rank writing its own shards
  (`__<rank>_0.distcp`) and rank 0 the index (`.metadata`). DCP reshards on load, so a run saved by 8 ranks
  resumes on 4 or 1 (and a 1-process checkpoint, the plain format of train.py, resumes on N ranks).
- `trainer_state.pt` (rank 0): scheduler, data position, step, the world size that wrote it.
- `rng-rank00000.pt` ...: every rank's RNG states (dropout); a rank that has none (more ranks now) is seeded from
  the run's seed, its rank and the step.
- `metrics.jsonl`, as in a plain checkpoint.

A periodic checkpoint is written in the background (DCP async_save) while training goes on, and published when
every rank's part is on disk; a preemption's checkpoint and the last one are written at once. The folder is
written as `step-000120.tmp/`. Every file is hashed while it is written (checkpoint.HashingFile;
DCP's writer is given a file system whose streams are HashingFiles), never read back for it. Rank 0 gathers the
hashes, renames the folder and writes COMPLETE last, once every rank's files are written and fsynced: a folder
with one rank's files missing has no COMPLETE (or one that does not verify) and is never resumed.
"""
from __future__ import annotations

import os
import shutil
import threading
import time
from contextlib import contextmanager
from pathlib import Path

import torch
import torch.distributed.checkpoint as dcp
from torch.distributed.checkpoint import FileSystemWriter
from torch.distributed.checkpoint.api import CheckpointException
from torch.distributed.checkpoint.filesystem import FileSystem
from torch.distributed.checkpoint.state_dict import StateDictOptions, get_state_dict, set_state_dict

from . import checkpoint as ckpt
from ..parallel.distributed import World
from ..process.events import log

DCP_DIR = ckpt.DCP_DIR
STATE = "trainer_state.pt"


class ShardedCheckpointError(RuntimeError):
    """DCP's own error (CheckpointException) derives from BaseException, which `except Exception` (fallback to an
    older checkpoint, a rank's exit report) would miss: DCP calls raise this instead, naming the first rank's cause."""


def _dcp(call, *args, **kwargs):
    try:
        return call(*args, **kwargs)
    except CheckpointException as e:
        rank, (cause, _trace) = sorted(e.failures.items())[0]
        raise ShardedCheckpointError(f"rank {rank}: {type(cause).__name__}: {cause}") from cause


def rng_file(rank: int) -> str:
    return f"rng-rank{rank:05d}.pt"


class _HashingFileSystem(FileSystem):
    """DCP's local file system whose write streams hash what they write (keys: paths relative to `root`)."""

    def __init__(self, root: Path):
        super().__init__()
        self.root = root
        self.digests: dict[str, str] = {}
        self._lock = threading.Lock()

    def _key(self, path) -> str:
        return str(Path(path).relative_to(self.root))

    @contextmanager
    def create_stream(self, path, mode):
        if "w" not in mode:
            with super().create_stream(path, mode) as s:
                yield s
            return
        found: dict[str, str] = {}
        f = ckpt.HashingFile(path, found, self._key(path))
        try:
            yield f
        finally:
            f.close()
            with self._lock:
                self.digests.update(found)

    def rename(self, path, new_path) -> None:
        super().rename(path, new_path)
        with self._lock:
            if self._key(path) in self.digests:
                self.digests[self._key(new_path)] = self.digests.pop(self._key(path))


def _options(**kw) -> StateDictOptions:
    # Frozen parameters (a LoRA run's base) are not checkpointed: they come from the model. Loading is therefore
    # not strict (the frozen weights are "missing"); `_set_trainable` checks what was loaded instead.
    return StateDictOptions(ignore_frozen_params=True, strict=False, **kw)


def _set_trainable(container: torch.nn.Module, optimizer, model_sd: dict, optim_sd: dict, **kw) -> None:
    """Loads the trainable weights and the optimizer states into the (sharded) model and optimizer. Every key the
    model lacks is an error, and so is every parameter left unloaded but a frozen one."""
    frozen = {n for n, p in container.named_parameters() if not p.requires_grad}
    result = set_state_dict(container, optimizer, model_state_dict=model_sd, optim_state_dict=optim_sd, options=_options(**kw))
    missing = [k for k in result.missing_keys if k not in frozen]
    if missing or result.unexpected_keys:
        what = f"lacks {len(missing)} trainable tensors, e.g. {missing[0]}" if missing else \
            f"holds {len(result.unexpected_keys)} tensors this model does not have, e.g. {result.unexpected_keys[0]}"
        raise ValueError(f"the checkpoint {what}")


class Save:
    """One sharded checkpoint in progress on every rank: its DCP part written at once, or in the background
    (`dcp.async_save`: the weights and optimizer states are first copied to host memory, then written by a thread
    while training goes on). `finish` publishes it once every rank's part is on disk."""

    def __init__(self, step: int, tmp: Path, final: Path, fs: "_HashingFileSystem", small: dict, future, started: float, blocked: float):
        self.step, self.tmp, self.final, self.fs, self.small = step, tmp, final, fs, small
        self.future, self.started, self.blocked = future, started, blocked

    def written_here(self) -> bool:
        return self.future is None or self.future.done()


def begin(checkpoints_dir: str, step: int, world: World, container: torch.nn.Module, optimizer, trainer_state: dict,
          rng: dict, metrics_file: Path | None, background: bool) -> Save:
    """Every rank: starts writing a checkpoint into `step-NNNNNN.tmp/` (rank 0 makes room and creates it)."""
    started = time.perf_counter()
    final = Path(checkpoints_dir) / ckpt.step_dir_name(step)
    tmp = final.parent / (final.name + ".tmp")
    if world.main:
        ckpt.make_room(checkpoints_dir)
        shutil.rmtree(tmp, ignore_errors=True)
        tmp.mkdir(parents=True)
    world.barrier()
    model_sd, optim_sd = get_state_dict(container, optimizer, options=_options())
    writer = FileSystemWriter(tmp / DCP_DIR, sync_files=True)
    writer.fs = _HashingFileSystem(tmp)
    small: dict[str, str] = {}
    try:
        ckpt.save_hashed(rng, tmp, rng_file(world.rank), small)
        if world.main:
            ckpt.save_hashed(trainer_state, tmp, STATE, small)
            if metrics_file is not None and metrics_file.is_file():
                with open(metrics_file, "rb") as src, ckpt.HashingFile(tmp / metrics_file.name, small, metrics_file.name) as dst:
                    shutil.copyfileobj(src, dst)
        for name in small:
            with open(tmp / name, "rb") as f:
                os.fsync(f.fileno())
        state = {"model": model_sd, "optim": optim_sd}
        if background:
            future = _dcp(dcp.async_save, state, storage_writer=writer, process_group=world.io)
        else:
            _dcp(dcp.save, state, storage_writer=writer, process_group=world.io)
            future = None
    except Exception as e:
        _failed(e, world, tmp)
    return Save(step, tmp, final, writer.fs, small, future, started, time.perf_counter() - started)


def all_written(save: Save, world: World) -> bool:
    """Every rank (a collective): whether every rank's part of `save` is on disk."""
    return not world.any(not save.written_here())


def finish(save: Save, world: World, fence, run_id: str) -> tuple[Path, int, float]:
    """Every rank: waits for its part, then rank 0 gathers every file's hash, renames the folder and writes COMPLETE
    last. Returns (path, bytes, seconds from the start of the save to its publication)."""
    try:
        if save.future is not None:
            _dcp(save.future.result)
        every = world.gather({**save.small, **save.fs.digests})
    except Exception as e:
        _failed(e, world, save.tmp)
    size = 0
    if world.main:
        files: dict[str, str] = {}
        for part in every:
            files.update(part)
        size = ckpt.size_of(save.tmp)
        ckpt.publish(save.tmp, save.final, files, fence, {"step": save.step, "run_id": run_id, "world_size": world.size, "format": "dcp"})
    world.barrier()
    seconds = time.perf_counter() - save.started
    if world.main:
        how = f"written in the background, training waited {save.blocked:.2f} s" if save.future is not None else "written at once"
        log(f"checkpoint {save.final.name}: {size / 2**20:.1f} MiB from {world.size} rank(s) in {seconds:.2f} s ({how})")
    return save.final, size, seconds


def _failed(e: Exception, world: World, tmp: Path):
    if world.main:
        shutil.rmtree(tmp, ignore_errors=True)
    if ckpt._disk_full(e):
        raise ckpt.DiskFullError(tmp.parent) from e
    raise e


def load(path: Path, world: World, container: torch.nn.Module, optimizer) -> tuple[dict, dict | None]:
    """Every rank: loads the weights and optimizer states of a sharded checkpoint into the (sharded) model and
    optimizer, resharding as needed. Returns (trainer_state, this rank's RNG states or None)."""
    model_sd, optim_sd = get_state_dict(container, optimizer, options=_options())
    state = {"model": model_sd, "optim": optim_sd}
    _dcp(dcp.load, state, checkpoint_id=str(path / DCP_DIR))  # every key of `state` must be in the checkpoint
    _set_trainable(container, optimizer, state["model"], state["optim"])
    trainer_state = ckpt.load_file(path / STATE)
    rng = path / rng_file(world.rank)
    return trainer_state, (ckpt.load_file(rng) if rng.is_file() else None)


def load_plain(files: tuple[dict, dict, dict], names: list[str], group_names: list[list[str]], container: torch.nn.Module,
               optimizer) -> None:
    """Every rank: loads a plain (one-process) checkpoint, whole tensors keyed by parameter name and an optimizer
    state keyed by index, into the sharded model and optimizer (each rank keeps its shard)."""
    trainable, optim, _ = files
    missing = [n for n in names if n not in trainable]
    if missing:
        raise ValueError(f"checkpoint lacks {len(missing)} trainable tensors, e.g. {missing[0]}")
    order = [n for group in group_names for n in group]
    by_name = {order[i]: s for i, s in optim["state"].items()}
    groups = [{**g, "params": names_} for g, names_ in zip(optim["param_groups"], group_names)]
    _set_trainable(container, optimizer, {n: trainable[n] for n in names}, {"state": by_name, "param_groups": groups},
                   full_state_dict=True)
