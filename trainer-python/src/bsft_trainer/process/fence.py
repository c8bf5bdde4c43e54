"""Fencing: of two attempts that train one run at once, only the newest may publish anything.

Every attempt has an epoch (the worker takes it from Redis, INCR per run, when it takes the job; a trainer started
by hand or by `bsft run` takes the next one itself). `claim()` records it in `<output_dir>/EPOCH`; publishing a
checkpoint, `final/`, `base/` or predictions happens inside `publishing()`, which refuses when a newer epoch owns
the run. Both hold an exclusive `flock` on `<output_dir>/EPOCH.lock`, so a claim and a publish never interleave:
once a newer attempt has claimed the run, an older one can no longer add anything to it.
"""
from __future__ import annotations

import contextlib
import fcntl
import os
from pathlib import Path

from .events import TrainerError
from .lease import EXIT_LEASE_LOST
from collections.abc import Iterator

FILE = "EPOCH"


class Fenced(TrainerError):
    """A newer attempt owns the run: this one stops without writing."""

    exit_code = EXIT_LEASE_LOST

    def __init__(self, mine, owner):
        super().__init__("internal", f"attempt epoch {mine} is stale: epoch {owner} owns this run now; stopping without writing")


class Fence:
    def __init__(self, output_dir: str | Path, epoch: int | None = None) -> None:
        self.dir = Path(output_dir)
        self.epoch = epoch

    @contextlib.contextmanager
    def _locked(self):
        self.dir.mkdir(parents=True, exist_ok=True)
        fd = os.open(self.dir / (FILE + ".lock"), os.O_RDWR | os.O_CREAT, 0o644)
        try:
            fcntl.flock(fd, fcntl.LOCK_EX)
            yield
        finally:
            os.close(fd)

    def owner(self) -> int:
        """The epoch that owns the run (0 when none claimed it yet)."""
        try:
            return int((self.dir / FILE).read_text().strip() or 0)
        except FileNotFoundError:
            return 0

    def _write(self, epoch):
        tmp = self.dir / (FILE + ".tmp")
        with open(tmp, "w") as f:
            f.write(f"{epoch}\n")
            f.flush()
            os.fsync(f.fileno())
        os.replace(tmp, self.dir / FILE)

    def claim(self) -> int:
        """Makes this attempt the run's owner (taking owner + 1 when no epoch was given); returns the epoch."""
        with self._locked():
            owner = self.owner()
            if self.epoch is None:
                self.epoch = owner + 1
            if self.epoch < owner:
                raise Fenced(self.epoch, owner)
            if self.epoch > owner:
                self._write(self.epoch)
        return self.epoch

    @contextlib.contextmanager
    def publishing(self) -> Iterator[None]:
        """Holds the run while something is made visible; raises Fenced when a newer attempt owns it."""
        with self._locked():
            owner = self.owner()
            if owner != self.epoch:
                raise Fenced(self.epoch, owner)
            yield


class NoFence:
    """For folders outside a run (merge --out): publishing is always allowed."""

    epoch = 0

    @contextlib.contextmanager
    def publishing(self) -> Iterator[None]:
        yield
