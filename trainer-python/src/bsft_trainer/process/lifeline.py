"""The first thing every `python -m bsft_trainer` process does: it dies with the process that started it.

The worker (or `bsft run`, or a launcher's torchrun agent for a rank) may die by SIGKILL at any moment, also while
this process is still importing torch or loading a model. A watchdog thread (lease.py) cannot act then: a C
extension's import can hold the interpreter lock for seconds. So the kernel does it: `PR_SET_PDEATHSIG` (Linux)
sends SIGKILL to this process the moment its parent thread dies, with no Python running. It is set before any heavy
import; the parent is then checked once, because a parent that died before the call sends nothing:

- a rank started by torchrun must have torchrun's agent as its parent;
- a process whose starter named itself in `BSFT_PARENT_PID` (the worker, `bsft run`) must have it as its parent.

(A process started otherwise, by hand or by a container's init, is not checked.) The signal follows the parent
*thread* that started the process: bsft starts trainers from Node's main thread and the launcher from its own.

A process whose parent is gone exits at once with 76 (lease lost), writing nothing. Only the standard library is
imported here. Elsewhere than Linux nothing happens (the lease still holds).
"""
from __future__ import annotations

import ctypes
import os
import signal
import sys

PR_SET_PDEATHSIG = 1
EXIT_PARENT_GONE = 76  # lease.EXIT_LEASE_LOST, without importing it
PARENT_ENV = "BSFT_PARENT_PID"


def die_with_parent() -> bool:
    """SIGKILL to this process when its parent dies; False where the kernel cannot do it."""
    try:
        return ctypes.CDLL(None, use_errno=True).prctl(PR_SET_PDEATHSIG, signal.SIGKILL) == 0
    except (OSError, AttributeError):
        return False


def _cmdline(pid: int) -> str:
    try:
        with open(f"/proc/{pid}/cmdline", "rb") as f:
            return f.read().replace(b"\0", b" ").decode("utf-8", "replace")
    except OSError:
        return ""


def parent_gone() -> str | None:
    """Why this process's parent is not the one that started it (None when it is)."""
    ppid = os.getppid()
    if "LOCAL_RANK" in os.environ and "TORCHELASTIC_RUN_ID" in os.environ:
        line = _cmdline(ppid)
        return None if "torch.distributed.run" in line or "torchrun" in line else f"the parent {ppid} is not torchrun's agent"
    expected = os.environ.get(PARENT_ENV, "")
    if expected.isdigit() and ppid != int(expected):
        return f"started by {expected}, now the child of {ppid}"
    return None


def hold() -> None:
    """Dies with the parent from here on; exits at once when the parent is already gone."""
    if not die_with_parent():
        return
    why = parent_gone()
    if why is not None:
        print(f"bsft_trainer: {why}: exiting", file=sys.stderr, flush=True)
        os._exit(EXIT_PARENT_GONE)
