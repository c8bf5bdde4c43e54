"""Before torchrun starts a machine's ranks of a run on several machines: can this machine reach the rendezvous host?

With `--rdzv-backend c10d --rdzv-endpoint HOST:PORT` (in BSFT_TORCHRUN_ARGS), the machine that is HOST runs the
rendezvous store and the others connect to it. A machine that cannot resolve HOST, or cannot connect to it within
BSFT_RDZV_WAIT_S seconds (default 300: the host's launcher may start a little later), fails at once with an error
naming the endpoint, instead of torchrun's own error after its rendezvous timeout (15 min by default).

Only the standard library is imported here (the launcher never imports torch).
"""
from __future__ import annotations

import os
import socket
import time

DEFAULT_WAIT_S = 300.0


def endpoint(args: list[str]) -> tuple[str, int] | None:
    """(host, port) of `--rdzv-endpoint` / `--rdzv_endpoint` in torchrun's arguments, with the c10d backend; None
    otherwise (one machine, or another backend)."""
    values: dict[str, str] = {}
    for i, a in enumerate(args):
        key, eq, value = a.partition("=")
        key = key.replace("_", "-")
        if key in ("--rdzv-endpoint", "--rdzv-backend"):
            values[key] = value if eq else (args[i + 1] if i + 1 < len(args) else "")
    if values.get("--rdzv-backend", "static") != "c10d" or not values.get("--rdzv-endpoint"):
        return None
    host, _, port = values["--rdzv-endpoint"].rpartition(":")
    if not host:  # "host" alone: torchrun's default port
        return values["--rdzv-endpoint"].strip("[]"), 29400
    return host.strip("[]"), int(port)


def is_local(address: str) -> bool:
    """Whether `address` (an IP) belongs to this machine: it can bind it."""
    family = socket.AF_INET6 if ":" in address else socket.AF_INET
    with socket.socket(family, socket.SOCK_STREAM) as s:
        try:
            s.bind((address, 0))
            return True
        except OSError:
            return False


def problem(args: list[str], wait_s: float | None = None) -> tuple[str, str] | None:
    """(error kind, message) when this machine cannot take part in the rendezvous torchrun's `args` ask for; None
    when it can (or there is none to check). A name that does not resolve is a config error (retrying cannot fix
    it); a host that does not answer within the wait is a retryable one."""
    found = endpoint(args)
    if found is None:
        return None
    host, port = found
    try:
        addresses = {info[4][0] for info in socket.getaddrinfo(host, port, type=socket.SOCK_STREAM)}
    except socket.gaierror as e:
        return "config", (f"the rendezvous host {host}:{port} (--rdzv-endpoint in BSFT_TORCHRUN_ARGS) does not resolve "
                          f"on {socket.gethostname()}: {e.strerror}")
    if any(is_local(a) for a in addresses):
        return None  # this machine hosts the rendezvous store: torchrun starts it here
    wait_s = float(os.environ.get("BSFT_RDZV_WAIT_S", DEFAULT_WAIT_S)) if wait_s is None else wait_s
    deadline = time.monotonic() + wait_s
    last = "no attempt"
    while True:
        try:
            with socket.create_connection((host, port), timeout=min(5.0, max(0.1, deadline - time.monotonic()))):
                return None
        except OSError as e:
            last = e.strerror or type(e).__name__
        if time.monotonic() >= deadline:
            return "internal", (f"{socket.gethostname()} cannot reach the rendezvous host {host}:{port} "
                                f"(--rdzv-endpoint in BSFT_TORCHRUN_ARGS) after {wait_s:.0f} s: {last}; start that "
                                "machine's launcher, or check the address, the port and the firewall between them")
        time.sleep(min(1.0, max(0.0, deadline - time.monotonic())))
