"""The trainer's lease (Contract 4): it trains only while the worker that started it says it still owns the job.

The worker writes a heartbeat line to the trainer's stdin (a pipe) every few seconds, and only while it holds the
job's lock in Redis. `start(lease_s)` runs first thing in `__main__`, before torch is imported, and watches that
pipe from a thread: on end of file (the worker died, even during the import) or after `lease_s` without a
heartbeat (the worker is frozen, partitioned from Redis or lost the lock) it ends the process at once with
`os._exit(EXIT_LEASE_LOST)`, writing nothing to any pipe (a closed pipe must not turn the exit into an exception).
A lease shorter than the lock means the trainer is gone before the queue can hand the job to another worker.

Only the standard library is imported here.
"""
import os
import select
import threading
import time

EXIT_LEASE_LOST = 76


def start(lease_s, fd=0):
    """Starts the watchdog thread; returns it. `lease_s` must be positive."""
    if not lease_s > 0:
        raise ValueError("lease_s must be positive")

    def watch():
        deadline = time.monotonic() + lease_s
        try:
            while True:
                remaining = deadline - time.monotonic()
                if remaining <= 0:
                    break
                ready, _, _ = select.select([fd], [], [], remaining)
                if ready:
                    if not os.read(fd, 4096):
                        break  # end of file: the worker is gone
                    deadline = time.monotonic() + lease_s
        except BaseException:  # noqa: BLE001 - any failure to watch the lease ends the lease
            pass
        os._exit(EXIT_LEASE_LOST)

    thread = threading.Thread(target=watch, name="bsft-lease", daemon=True)
    thread.start()
    return thread
