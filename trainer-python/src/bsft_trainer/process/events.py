"""Contract 4: stdout carries only events, one JSON object per line; logs go to stderr.

At start-up `claim_stdout()` keeps a private handle on the real stdout for events and points file descriptor 1 at
stderr, so that nothing else (a library's print, a C extension) can write a line the worker would misread.
"""
from __future__ import annotations

import json
import os
import sys

EXIT_DONE = 0
EXIT_INVALID = 2
EXIT_PREEMPTED = 75
EXIT_FAILED = 1
# This machine's disk is full (EX_IOERR): the run is not at fault; the job goes to another worker.
EXIT_DISK_FULL = 74

_events = None


def claim_stdout(events: bool = True) -> None:
    """events=False (ranks other than 0 of a sharded run): events are dropped; only rank 0 speaks for the run."""
    global _events
    if _events is not None:
        return
    sys.stdout.flush()
    fd = os.dup(1)
    os.dup2(2, 1)
    _events = os.fdopen(fd, "w", buffering=1, encoding="utf-8") if events else open(os.devnull, "w")
    if not events:
        os.close(fd)
    sys.stdout = sys.stderr


def events_fd() -> int:
    """The file descriptor events are written to (a launcher hands it to the ranks as their stdout)."""
    return _events.fileno()


def send_events_to(stream) -> None:
    """In-process callers (the throughput benchmark): events go to `stream` (anything with write and flush)."""
    global _events
    _events = stream


def _emit(event, **fields):
    """Writes one event line: {"event": <event>, ...fields}."""
    out = _events if _events is not None else sys.stdout
    out.write(json.dumps({"event": event, **fields}, allow_nan=False, default=float) + "\n")
    out.flush()


# One function per event kind (Contract 4; their fields are checked against schema/trainer-events.schema.json by
# tests/test_contract.py).

def emit_start(total_steps: int, resumed_from_step: int, world_size: int) -> None:
    _emit("start", total_steps=int(total_steps), resumed_from_step=int(resumed_from_step), world_size=int(world_size))


def emit_step(step: int, loss: float, lr: float, grad_norm: float, tokens_per_s: float, mem_gib: float,
              mem_alloc_gib: float | None = None) -> None:
    """mem_gib: the device's peak since start (GPU: max allocated; CPU: the process's peak RSS); mem_alloc_gib: in use
    now (GPU: allocated; CPU: RSS), where it can be read."""
    extra = {} if mem_alloc_gib is None else {"mem_alloc_gib": float(mem_alloc_gib)}
    _emit("step", step=int(step), loss=float(loss), lr=float(lr), grad_norm=float(grad_norm),
          tokens_per_s=float(tokens_per_s), mem_gib=float(mem_gib), **extra)


def emit_eval(step: int, loss: float) -> None:
    _emit("eval", step=int(step), loss=float(loss))


def emit_checkpoint(step: int, path: str, size_bytes: int, save_s: float) -> None:
    _emit("checkpoint", step=int(step), path=str(path), size_bytes=int(size_bytes), save_s=round(float(save_s), 3))


def emit_progress(done: int, total: int) -> None:
    """predict: documents done out of total."""
    _emit("progress", done=int(done), total=int(total))


def emit_done(final_path: str) -> None:
    _emit("done", final_path=str(final_path))


def emit_error(kind: str, message: str) -> None:
    """kind: config, data, oom, disk or internal."""
    _emit("error", kind=kind, message=str(message))


def log(message: str) -> None:
    print(message, file=sys.stderr, flush=True)


class TrainerError(Exception):
    """An error with its Contract 4 kind: config, data, oom, disk or internal."""

    exit_code = EXIT_FAILED

    def __init__(self, kind, message):
        super().__init__(message)
        self.kind = kind


class ConfigError(TrainerError):
    exit_code = EXIT_INVALID

    def __init__(self, message):
        super().__init__("config", message)


class DataError(TrainerError):
    exit_code = EXIT_INVALID

    def __init__(self, message):
        super().__init__("data", message)
