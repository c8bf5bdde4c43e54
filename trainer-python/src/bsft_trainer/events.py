"""Contract 4: stdout carries only events, one JSON object per line; logs go to stderr.

At start-up `claim_stdout()` keeps a private handle on the real stdout for events and points file descriptor 1 at
stderr, so that nothing else (a library's print, a C extension) can write a line the worker would misread.
"""
import json
import os
import sys

EXIT_DONE = 0
EXIT_INVALID = 2
EXIT_PREEMPTED = 75
EXIT_FAILED = 1

_events = None


def claim_stdout():
    global _events
    if _events is not None:
        return
    sys.stdout.flush()
    fd = os.dup(1)
    os.dup2(2, 1)
    _events = os.fdopen(fd, "w", buffering=1, encoding="utf-8")
    sys.stdout = sys.stderr


def emit(event, **fields):
    """Writes one event line: {"event": <event>, ...fields}."""
    out = _events if _events is not None else sys.stdout
    out.write(json.dumps({"event": event, **fields}, allow_nan=False, default=float) + "\n")
    out.flush()


def log(message):
    print(message, file=sys.stderr, flush=True)


class TrainerError(Exception):
    """An error with its Contract 4 kind: config, data, oom or internal."""

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
