"""The trainer's lease (Contract 4): it trains only while the worker that started it says it still owns the job.

The worker writes a heartbeat line to the trainer's stdin (a pipe) every few seconds, and only while it holds the
job's lock in Redis. A line holds the CLOCK_MONOTONIC time (ms) at which the worker checked that it still holds the
lock, with more than the lease left on it; the lease runs from that moment, not from when the line is read, so a
trainer that reads late (a long call holding the GIL) never outlives the lock. An empty line means "now". `start(lease_s)` runs first thing in `__main__`, before torch is imported, and watches that
pipe from a thread: on end of file (the worker died, even during the import) or after `lease_s` without a
heartbeat (the worker is frozen, partitioned from Redis or lost the lock) it ends the process at once with
`os._exit(EXIT_LEASE_LOST)`, writing nothing to any pipe (a closed pipe must not turn the exit into an exception).
A lease shorter than the lock means the trainer is gone before the queue can hand the job to another worker.

Only the standard library is imported here.
"""
from __future__ import annotations

import os
import select
import threading
import time

EXIT_LEASE_LOST = 76


def start(lease_s: float, fd: int = 0, on_expire=None) -> threading.Thread:
    """Starts the watchdog thread; returns it. `lease_s` must be positive. `on_expire` runs just before the exit (a
    launcher kills its ranks there)."""
    if not lease_s > 0:
        raise ValueError("lease_s must be positive")

    def expiry(line, now):
        try:
            stamp = float(line) / 1000
        except ValueError:
            return now + lease_s
        # A stamp from a clock this process does not share (not the same machine's CLOCK_MONOTONIC): use now.
        return (stamp if abs(now - stamp) < lease_s else now) + lease_s

    def watch():
        deadline = time.monotonic() + lease_s
        pending = b""
        try:
            while True:
                remaining = deadline - time.monotonic()
                # Read what has arrived even when the deadline has passed (this thread may have been kept from
                # running): a heartbeat stamped in time still counts.
                ready, _, _ = select.select([fd], [], [], max(remaining, 0))
                if ready:
                    data = os.read(fd, 4096)
                    if not data:
                        break  # end of file: the worker is gone
                    pending += data
                    *lines, pending = pending.split(b"\n")
                    if lines:
                        deadline = max(deadline, expiry(lines[-1].decode("ascii", "replace").strip(), time.monotonic()))
                elif remaining <= 0:
                    break
        except BaseException:  # noqa: BLE001 - any failure to watch the lease ends the lease
            pass
        if on_expire is not None:
            try:
                on_expire()
            except BaseException:  # noqa: BLE001 - the exit below must happen
                pass
        os._exit(EXIT_LEASE_LOST)

    thread = threading.Thread(target=watch, name="bsft-lease", daemon=True)
    thread.start()
    return thread
