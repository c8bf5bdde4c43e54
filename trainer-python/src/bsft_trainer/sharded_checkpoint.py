"""Sharded checkpoints of a run trained by several ranks (torch.distributed.checkpoint, DCP).

`checkpoints/step-000120/` holds:
- `dcp/`: the trainable weights (fp32 masters) and the optimizer states, each rank writing its own shards
  (`__<rank>_0.distcp`) and rank 0 the index (`.metadata`). DCP reshards on load, so a run saved by 8 ranks
  resumes on 4 or 1 (and a 1-process checkpoint, the plain format of train.py, resumes on N ranks).
- `trainer_state.pt` (rank 0): scheduler, data position, step, the world size that wrote it.
- `rng-rank00000.pt` ...: every rank's RNG states (dropout); a rank that has none (more ranks now) is seeded from
  the run's seed, its rank and the step.
- `metrics.jsonl`, as in a plain checkpoint.

The folder is written as `step-000120.tmp/`. Every file is hashed while it is written (checkpoint.HashingFile;
DCP's writer is given a file system whose streams are HashingFiles), never read back for it. Rank 0 gathers the
hashes, renames the folder and writes COMPLETE last, once every rank's files are written and fsynced: a folder
with one rank's files missing has no COMPLETE (or one that does not verify) and is never resumed.
"""
from __future__ import annotations

import shutil
import threading
import time
from contextlib import contextmanager
from pathlib import Path

import torch
import torch.distributed.checkpoint as dcp
from torch.distributed.checkpoint import FileSystemWriter
from torch.distributed.checkpoint.filesystem import FileSystem
from torch.distributed.checkpoint.state_dict import StateDictOptions, get_state_dict, set_state_dict

from . import checkpoint as ckpt
from .distributed import World
from .events import log

DCP_DIR = "dcp"
STATE = "trainer_state.pt"


def rng_file(rank: int) -> str:
    return f"rng-rank{rank:05d}.pt"


def is_sharded(path: str | Path) -> bool:
    return (Path(path) / DCP_DIR).is_dir()


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


def _options() -> StateDictOptions:
    # Frozen parameters (a LoRA run's base) are not checkpointed: they come from the model.
    return StateDictOptions(ignore_frozen_params=True)


def save(folder_tmp: Path, world: World, container: torch.nn.Module, optimizer, trainer_state: dict, rng: dict,
         metrics_file: Path | None) -> dict[str, str]:
    """Every rank: writes its part of a checkpoint into `folder_tmp` (created by rank 0 before). Returns, on rank 0,
    the sha256 of every file of every rank (relative paths); {} on the others."""
    model_sd, optim_sd = get_state_dict(container, optimizer, options=_options())
    root = folder_tmp
    writer = FileSystemWriter(root / DCP_DIR, sync_files=True)
    writer.fs = _HashingFileSystem(root)
    dcp.save({"model": model_sd, "optim": optim_sd}, storage_writer=writer)
    mine = dict(writer.fs.digests)
    with ckpt.HashingFile(root / rng_file(world.rank), mine, rng_file(world.rank)) as f:
        torch.save(rng, f)
    if world.main:
        with ckpt.HashingFile(root / STATE, mine, STATE) as f:
            torch.save(trainer_state, f)
        if metrics_file is not None and metrics_file.is_file():
            with open(metrics_file, "rb") as src, ckpt.HashingFile(root / metrics_file.name, mine, metrics_file.name) as dst:
                shutil.copyfileobj(src, dst)
    for name in mine:  # durable before rank 0 may write COMPLETE
        with open(root / name, "rb") as f:
            import os

            os.fsync(f.fileno())
    every = world.gather(mine)
    if not world.main:
        return {}
    files: dict[str, str] = {}
    for part in every:
        files.update(part)
    return files


def load(path: Path, world: World, container: torch.nn.Module, optimizer) -> tuple[dict, dict | None]:
    """Every rank: loads the weights and optimizer states of a sharded checkpoint into the (sharded) model and
    optimizer, resharding as needed. Returns (trainer_state, this rank's RNG states or None)."""
    model_sd, optim_sd = get_state_dict(container, optimizer, options=_options())
    state = {"model": model_sd, "optim": optim_sd}
    dcp.load(state, checkpoint_id=str(path / DCP_DIR))
    set_state_dict(container, optimizer, model_state_dict=state["model"], optim_state_dict=state["optim"], options=_options())
    trainer_state = _load(path / STATE)
    rng = path / rng_file(world.rank)
    return trainer_state, (_load(rng) if rng.is_file() else None)


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
    options = StateDictOptions(ignore_frozen_params=True, full_state_dict=True)
    set_state_dict(container, optimizer, model_state_dict={n: trainable[n] for n in names},
                   optim_state_dict={"state": by_name, "param_groups": groups}, options=options)


def _load(file: Path):
    return torch.load(file, map_location="cpu", weights_only=True)


def write(cfg_checkpoints_dir: str, step: int, world: World, fence, container, optimizer, trainer_state: dict, rng: dict,
          metrics_file: Path | None, run_id: str) -> tuple[Path, int, float]:
    """Every rank: one sharded checkpoint, published by rank 0 (COMPLETE last). Returns (path, bytes, seconds)."""
    start = time.perf_counter()
    final = Path(cfg_checkpoints_dir) / ckpt.step_dir_name(step)
    tmp = final.parent / (final.name + ".tmp")
    if world.main:
        newest = ckpt.latest_complete(cfg_checkpoints_dir)
        ckpt.make_room(cfg_checkpoints_dir, int(1.1 * ckpt.size_of(newest)) if newest else 0)
        shutil.rmtree(tmp, ignore_errors=True)
        tmp.mkdir(parents=True)
    world.barrier()
    try:
        files = save(tmp, world, container, optimizer, trainer_state, rng, metrics_file)
    except Exception as e:
        if world.main:
            shutil.rmtree(tmp, ignore_errors=True)
        if ckpt._disk_full(e):
            raise ckpt.DiskFullError(final.parent) from e
        raise
    size = 0
    if world.main:
        size = ckpt.size_of(tmp)
        ckpt.publish(tmp, final, files, fence, {"step": step, "run_id": run_id, "world_size": world.size, "format": "dcp"})
    world.barrier()
    seconds = time.perf_counter() - start
    if world.main:
        log(f"checkpoint {final.name}: {size / 2**20:.1f} MiB from {world.size} rank(s) in {seconds:.2f} s")
    return final, size, seconds
