"""A machine of a run on several machines checks, before torchrun starts its ranks, that it can reach the
rendezvous host named in BSFT_TORCHRUN_ARGS (parallel/rendezvous.py): a name that does not resolve or a host that
does not answer fails at once, naming the endpoint, instead of after torchrun's 15-minute rendezvous timeout."""
import socket
import time

import pytest

from bsft_trainer.parallel import rendezvous
from conftest import events_of, limit, make_run, trainer


def test_the_endpoint_is_read_from_torchruns_arguments_in_either_spelling():
    c10d = "--nnodes 2 --node-rank 1 --rdzv-backend c10d --rdzv-endpoint host0:29500 --rdzv-id run".split()
    assert rendezvous.endpoint(c10d) == ("host0", 29500)
    assert rendezvous.endpoint(["--rdzv_backend=c10d", "--rdzv_endpoint=[fd00::1]:1234"]) == ("fd00::1", 1234)
    assert rendezvous.endpoint(["--rdzv-backend", "c10d", "--rdzv-endpoint", "host0"]) == ("host0", 29400)
    assert rendezvous.endpoint(["--standalone"]) is None
    assert rendezvous.endpoint(["--rdzv-endpoint", "host0:29500"]) is None  # the static backend: torchrun's own checks


def test_a_host_that_does_not_resolve_is_a_config_error_and_this_machines_own_address_needs_no_check():
    kind, message = rendezvous.problem(["--rdzv-backend", "c10d", "--rdzv-endpoint", "no-such-host.invalid:29400"])
    assert kind == "config" and "no-such-host.invalid:29400" in message and "does not resolve" in message
    assert rendezvous.problem(["--rdzv-backend", "c10d", "--rdzv-endpoint", "127.0.0.1:1"]) is None  # hosted here


def test_another_machines_host_is_waited_for_then_named_when_it_does_not_answer(monkeypatch):
    monkeypatch.setattr(rendezvous, "is_local", lambda address: False)  # 127.0.0.1 stands for another machine
    with socket.socket() as server:
        server.bind(("127.0.0.1", 0))
        server.listen()
        port = server.getsockname()[1]
        assert rendezvous.problem(["--rdzv-backend", "c10d", "--rdzv-endpoint", f"127.0.0.1:{port}"], wait_s=5) is None
    start = time.monotonic()  # the port is closed now: refused until the wait is over
    kind, message = rendezvous.problem(["--rdzv-backend", "c10d", "--rdzv-endpoint", f"127.0.0.1:{port}"], wait_s=1.5)
    assert kind == "internal" and f"127.0.0.1:{port}" in message and "after 2 s" in message
    assert 1.5 <= time.monotonic() - start < limit(10)


def test_the_launcher_fails_before_starting_torchrun_when_the_host_does_not_resolve(tmp_path):
    cfg = make_run(tmp_path, train={"max_steps": 2})
    args = "--nnodes 2 --node-rank 1 --rdzv-backend c10d --rdzv-endpoint no-such-host.invalid:29400 --rdzv-id run"
    p = trainer("train", cfg, "--nproc-per-node", "2", env={"BSFT_TORCHRUN_ARGS": args})
    out, err = p.communicate(timeout=limit(120))
    events = events_of(out)
    assert p.returncode == 2, err
    assert events[-1]["event"] == "error" and events[-1]["kind"] == "config" and "no-such-host.invalid:29400" in events[-1]["message"]
    assert "launching" not in err and not any(e["event"] == "start" for e in events)
