"""A warm trainer for the test suite: one process that has imported torch, transformers, peft and bsft_trainer
forks a child for each `python -m bsft_trainer ...` a test starts, instead of a fresh interpreter importing them
again (2-4 s each on a 2-core machine, a few hundred times per suite).

The child is what a cold start would be after its imports: its own pid, the test's pipes as fds 0/1/2, the test's
environment and working directory, `lifeline.hold()` again (towards the warm process, which dies with pytest), then
`bsft_trainer.__main__.main(argv)`; its exit code is reported as a Popen's is (negative for a signal). Nothing of
torch runs in the warm process before a fork (no thread pool to inherit), and each child starts from the same state.

conftest.trainer() uses it for the plain starts; a test that sets its own environment, the cold-start path itself,
or BSFT_TEST_COLD_TRAINER=1 gets a real `subprocess.Popen`.

Protocol (AF_UNIX, SOCK_SEQPACKET): the test sends one JSON request {argv, env, cwd} with fds [stdin, stdout,
stderr]; the warm process answers {"pid": n}, later {"code": n} when the child has exited.
"""
from __future__ import annotations

import json
import os
import select
import signal
import socket
import subprocess
import sys
import threading
import time
from pathlib import Path

_lock = threading.Lock()
_server: subprocess.Popen | None = None
_address: str | None = None


def _serve(address: str) -> None:
    """The warm process: imports once, then forks a child per request until its parent (pytest) goes."""
    from bsft_trainer.process import lifeline

    lifeline.die_with_parent()
    import torch  # noqa: F401
    import bsft_trainer.__main__ as entry
    for name in ("data.config", "training.train", "inference.predict", "modeling.merge", "inference.chat", "inference.judge",
                 "parallel.launch", "checkpoints.checkpoint", "modeling.model", "training.metrics"):
        try:
            __import__(f"bsft_trainer.{name}")
        except ImportError:  # transformers/peft missing: those modules import at use
            pass
    try:
        import peft  # noqa: F401
        import transformers  # noqa: F401
        import transformers.models.qwen2.modeling_qwen2  # noqa: F401
    except ImportError:
        pass
    listener = socket.socket(socket.AF_UNIX, socket.SOCK_SEQPACKET)
    listener.bind(address)
    listener.listen(64)
    print("ready", flush=True)
    children: dict[int, socket.socket] = {}
    while True:
        ready, _, _ = select.select([listener], [], [], 0.05)
        if ready:
            conn, _ = listener.accept()
            message, fds, _, _ = socket.recv_fds(conn, 1 << 20, 3)
            request = json.loads(message)
            pid = os.fork()
            if pid == 0:
                listener.close()
                conn.close()
                _child(entry, request, fds)
            for fd in fds:
                os.close(fd)
            conn.send(json.dumps({"pid": pid}).encode())
            children[pid] = conn
        while children:
            pid, status = os.waitpid(-1, os.WNOHANG)
            if pid == 0:
                break
            conn = children.pop(pid, None)
            if conn is not None:
                try:
                    conn.send(json.dumps({"code": os.waitstatus_to_exitcode(status)}).encode())
                except OSError:
                    pass
                conn.close()


def _child(entry, request: dict, fds: list[int]) -> None:
    code = 1
    try:
        for target, fd in enumerate(fds):
            os.dup2(fd, target)
            os.close(fd)
        signal.signal(signal.SIGTERM, signal.SIG_DFL)
        signal.signal(signal.SIGINT, signal.default_int_handler)
        os.chdir(request["cwd"])
        os.environ.clear()
        os.environ.update(request["env"])
        from bsft_trainer.process import lifeline

        lifeline.hold()
        sys.argv = ["bsft_trainer", *request["argv"]]
        try:
            code = entry.main(request["argv"])
        except SystemExit as e:
            code = e.code if isinstance(e.code, int) else (0 if e.code is None else 1)
        for t in threading.enumerate():
            if t is not threading.current_thread() and not t.daemon:
                t.join()
        import atexit

        atexit._run_exitfuncs()
    except BaseException:  # noqa: BLE001 - as an uncaught exception ends a cold interpreter: traceback, exit 1
        import traceback

        traceback.print_exc()
        code = 1
    finally:
        for stream in (sys.stdout, sys.stderr):
            try:
                stream.flush()
            except Exception:  # noqa: BLE001
                pass
        os._exit(code if isinstance(code, int) else 1)


def _start() -> str:
    global _server, _address
    with _lock:
        if _server is None or _server.poll() is not None:
            folder = Path(os.environ.get("TMPDIR", "/tmp"))
            _address = str(folder / f"bsft-warm-{os.getpid()}-{time.monotonic_ns()}.sock")
            src = str(Path(__file__).resolve().parents[1] / "src")
            env = {**os.environ, "PYTHONPATH": src, "PYTHONUNBUFFERED": "1"}
            _server = subprocess.Popen([sys.executable, __file__, _address], stdout=subprocess.PIPE, env=env,
                                       cwd=os.getcwd(), stdin=subprocess.DEVNULL)
            line = _server.stdout.readline()
            if line.strip() != b"ready":
                raise RuntimeError(f"warm trainer did not start: {line!r}")
        return _address


class WarmProcess:
    """The part of subprocess.Popen the tests use, for a child of the warm process."""

    def __init__(self, argv: list[str], env: dict, stdin=None):
        address = _start()
        self.args = argv
        self.returncode = None
        in_r, in_w = os.pipe() if stdin == subprocess.PIPE else (os.open(os.devnull, os.O_RDONLY), None)
        out_r, out_w = os.pipe()
        err_r, err_w = os.pipe()
        self._conn = socket.socket(socket.AF_UNIX, socket.SOCK_SEQPACKET)
        self._conn.connect(address)
        request = {"argv": argv, "env": env, "cwd": os.getcwd()}
        socket.send_fds(self._conn, [json.dumps(request).encode()], [in_r, out_w, err_w])
        for fd in (in_r, out_w, err_w):
            os.close(fd)
        self.stdin = os.fdopen(in_w, "w", buffering=1) if in_w is not None else None
        self.stdout = os.fdopen(out_r, "r")
        self.stderr = os.fdopen(err_r, "r")
        self.pid = json.loads(self._conn.recv(4096))["pid"]

    def poll(self):
        if self.returncode is None:
            ready, _, _ = select.select([self._conn], [], [], 0)
            if ready:
                self._read_code()
        return self.returncode

    def _read_code(self):
        message = self._conn.recv(4096)
        self.returncode = json.loads(message)["code"] if message else -signal.SIGKILL
        self._conn.close()

    def wait(self, timeout=None):
        if self.returncode is None:
            ready, _, _ = select.select([self._conn], [], [], timeout)
            if not ready:
                raise subprocess.TimeoutExpired(self.args, timeout)
            self._read_code()
        return self.returncode

    def communicate(self, input=None, timeout=None):
        if self.stdin is not None:
            if input:
                self.stdin.write(input)
            self.stdin.close()
        got: dict[str, str] = {}
        readers = [threading.Thread(target=lambda n=n, s=s: got.__setitem__(n, s.read()), daemon=True)
                   for n, s in (("out", self.stdout), ("err", self.stderr))]
        for t in readers:
            t.start()
        end = None if timeout is None else time.monotonic() + timeout
        for t in readers:
            t.join(None if end is None else max(0.0, end - time.monotonic()))
            if t.is_alive():
                raise subprocess.TimeoutExpired(self.args, timeout)
        self.wait(None if end is None else max(0.0, end - time.monotonic()))
        return got["out"], got["err"]

    def send_signal(self, sig):
        if self.returncode is None:
            try:
                os.kill(self.pid, sig)
            except ProcessLookupError:
                pass

    def terminate(self):
        self.send_signal(signal.SIGTERM)

    def kill(self):
        self.send_signal(signal.SIGKILL)

    def __enter__(self):
        return self

    def __exit__(self, *exc):
        for s in (self.stdout, self.stderr, self.stdin):
            if s is not None:
                s.close()
        self.wait()


if __name__ == "__main__":
    _serve(sys.argv[1])
