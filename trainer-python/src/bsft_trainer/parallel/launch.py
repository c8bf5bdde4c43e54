"""`train --nproc-per-node N` (N > 1): this process starts the run's ranks with torchrun and stands for them.

torchrun (`python -m torch.distributed.run`) launches one trainer process per GPU and does the rendezvous
(`--standalone` on one machine; `BSFT_TORCHRUN_ARGS`, e.g. `--nnodes 2 --node-rank 0 --rdzv-backend c10d
--rdzv-endpoint host0:29400 --rdzv-id RUN`, replaces it for several machines, one launcher per machine). This
launcher keeps Contract 4 for the worker:

- stdout: this machine's first rank (LOCAL_RANK 0) writes the events straight to it (the other ranks write none);
  on one machine that is rank 0, across machines each machine's launcher reports the run's steps.
- the lease (heartbeats on stdin) is held here; when it ends, every rank is killed and the launcher exits 76.
- SIGTERM/SIGINT is passed to every rank (not to torchrun, which would kill them 30 s later): they finish the
  step, write a sharded checkpoint together and exit 75.
- the exit code is the ranks' (each writes it to `<output_dir>/ranks/<host>-<launcher pid>/`; torchrun's own code says only "a rank
  failed"): 2 when one rank had a config/data error, 76 when one lost the run, 74 when one found its disk full, 75
  when all were preempted, 0 when all finished, else 1 (retryable), with an `error` event naming the rank that
  failed when rank 0 did not say.
- when this launcher dies, torchrun and the ranks die with it (PR_SET_PDEATHSIG, lifeline.py), so no rank outlives a
  worker, also while it is still importing torch.

Only the standard library is imported here: torch is imported by the ranks.
"""
from __future__ import annotations

import json
import os
import shlex
import shutil
import signal
import socket
import subprocess
import sys
import time
from pathlib import Path

from ..process import lease, lifeline
from . import rendezvous
from ..process.events import EXIT_DISK_FULL, EXIT_DONE, EXIT_FAILED, EXIT_INVALID, EXIT_PREEMPTED, emit_error, events_fd, log

RANKS_DIR = "ranks"
# torchrun sets these in every rank's environment.
TORCHRUN_ENV = ("RANK", "WORLD_SIZE", "LOCAL_RANK")


def launched_by_torchrun() -> bool:
    """Whether this process is a rank (told without importing torch: a launcher never imports it)."""
    return all(k in os.environ for k in TORCHRUN_ENV)


def _torchrun_dies_with_us(launcher: int):
    """preexec_fn of torchrun's agent: it dies with this launcher (PR_SET_PDEATHSIG), or at once when the launcher
    is already gone. Its ranks die with it (lifeline.py, first thing in each rank)."""
    def preexec():
        if lifeline.die_with_parent() and os.getppid() != launcher:
            os._exit(lifeline.EXIT_PARENT_GONE)
    return preexec


def rank_file(rank_dir: Path, local_rank: int, kind: str) -> Path:
    """A rank's file in its launcher's folder, by its rank on this machine (LOCAL_RANK: 0 .. nproc-1)."""
    return rank_dir / f"rank-{local_rank:05d}.{kind}"


def record_start(rank_dir: Path, local_rank: int) -> None:
    """A rank, first thing: its pid (the launcher signals it directly)."""
    rank_dir.mkdir(parents=True, exist_ok=True)
    rank_file(rank_dir, local_rank, "pid").write_text(str(os.getpid()))


def record_exit(rank_dir: Path, local_rank: int, rank: int, code: int, error: tuple[str, str] | None,
                relaunch: str | None = None) -> None:
    """A rank, last thing: its global rank, exit code and error (kind, message), written atomically. `relaunch`
    ("recompute_all"): the rank asks the launcher to start every rank again that way."""
    tmp = rank_file(rank_dir, local_rank, "exit.tmp")
    tmp.write_text(json.dumps({"rank": rank, "exit": code, **({"kind": error[0], "message": error[1]} if error else {}),
                               **({"relaunch": relaunch} if relaunch else {})}))
    os.replace(tmp, rank_file(rank_dir, local_rank, "exit"))


def read_reports(rank_dir: Path, nproc: int) -> dict[int, dict]:
    """The exit reports written so far, by local rank."""
    reports = {}
    for r in range(nproc):
        try:
            reports[r] = json.loads(rank_file(rank_dir, r, "exit").read_text())
        except (OSError, ValueError):
            pass
    return reports


def combined_exit(reports: dict[int, dict], nproc: int) -> tuple[int, dict | None]:
    """The launcher's exit code from its ranks' reports (local rank -> {"rank"?, "exit", "kind"?, "message"?}); a
    rank without a report was killed. Returns (code, the report that decided it when it was a failure, or None;
    its "rank" is the global rank when the rank reported, else the local one; "local_rank" the local one)."""
    codes = {r: reports[r]["exit"] if r in reports else None for r in range(nproc)}
    for wanted in (EXIT_INVALID, lease.EXIT_LEASE_LOST, EXIT_DISK_FULL):
        for r, c in codes.items():
            if c == wanted:
                return c, {"rank": r, **reports[r], "local_rank": r}
    if all(c == EXIT_DONE for c in codes.values()):
        return EXIT_DONE, None
    if all(c == EXIT_PREEMPTED for c in codes.values()):
        return EXIT_PREEMPTED, None
    # A rank that died without a report (killed: a signal, the OOM killer) is the cause; the others then fail in a
    # collective ("connection reset by peer") and say so.
    for r, c in codes.items():
        if c is None:
            return EXIT_FAILED, {"rank": r, "local_rank": r, "exit": None, "kind": "internal", "unreported": True,
                                 "message": "ended without an exit report (killed by a signal or the OOM killer, or it never started); "
                                            "the other ranks stopped with it"}
    for r, c in codes.items():
        if c not in (EXIT_DONE, EXIT_PREEMPTED):
            return EXIT_FAILED, {"rank": r, **reports[r], "local_rank": r}
    return EXIT_FAILED, {"rank": None, "exit": None, "kind": "internal", "unreported": True, "message": f"ranks ended differently: {codes}"}


def across_machines() -> bool:
    """Whether this launcher is one machine of a run across machines (BSFT_TORCHRUN_ARGS gives the rendezvous):
    torchrun starts its ranks even when it has one GPU."""
    return bool(shlex.split(os.environ.get("BSFT_TORCHRUN_ARGS", "")))


def torchrun_args(nproc: int) -> list[str]:
    extra = shlex.split(os.environ.get("BSFT_TORCHRUN_ARGS", ""))
    rendezvous = extra if extra else ["--standalone"]
    return ["--nproc-per-node", str(nproc), "--max-restarts", "0", *rendezvous]


def supervise(config: str, output_dir: str, nproc: int, epoch: int, lease_s: float | None) -> int:
    """Runs `train` on `nproc` ranks of this machine; returns the exit code (module docstring). When a rank's first
    step ran out of memory under `activation_checkpointing: auto` (its report asks for a relaunch), every rank is
    stopped and started once more with every layer recomputed."""
    asked: list[int] = []
    signal.signal(signal.SIGTERM, lambda signum, _f: asked.append(signum))
    signal.signal(signal.SIGINT, lambda signum, _f: asked.append(signum))
    ranks: dict = {}

    def kill_all():
        if ranks.get("child") is not None:
            try:
                os.killpg(ranks["child"].pid, signal.SIGKILL)
            except ProcessLookupError:
                pass

    if lease_s is not None:
        lease.start(lease_s, on_expire=kill_all)
    unreachable = rendezvous.problem(torchrun_args(nproc))  # several machines: this one can reach the host
    if unreachable is not None:
        emit_error(*unreachable)
        return EXIT_INVALID if unreachable[0] == "config" else EXIT_FAILED
    extra: list[str] = []
    while True:
        code, failure, relaunch = _run_ranks(config, output_dir, nproc, epoch, extra, asked, ranks)
        if relaunch == "recompute_all" and not extra and not asked:
            log("a rank's first step ran out of memory without recomputing every layer: starting every rank again "
                "with every layer recomputed")
            extra = ["--recompute-all"]
            continue
        break
    # This machine's first rank emitted its own error (it writes the events); any other failure is said here.
    if failure is not None and (failure.get("local_rank") != 0 or failure.get("unreported") or failure.get("relaunch")):
        who = f"rank {failure['rank']}" if failure.get("rank") is not None else "the ranks"
        emit_error(failure.get("kind") or "internal", f"{who}: {failure.get('message') or 'exited ' + str(failure.get('exit'))}")
    return code


def _run_ranks(config: str, output_dir: str, nproc: int, epoch: int, extra: list[str], asked: list[int],
               ranks: dict) -> tuple[int, dict | None, str | None]:
    """One start of the ranks with torchrun, until they end. Returns (exit code, the failure that decided it,
    the relaunch a rank asked for). `ranks["child"]`: torchrun's process while it runs (the lease kills its group)."""
    # This launcher's own folder: the launchers of a run on several machines may share the output folder.
    rank_dir = Path(output_dir) / RANKS_DIR / f"{socket.gethostname()}-{os.getpid()}"
    shutil.rmtree(rank_dir, ignore_errors=True)
    rank_dir.mkdir(parents=True)
    cmd = [sys.executable, "-m", "torch.distributed.run", *torchrun_args(nproc),
           "-m", "bsft_trainer", "train", "--config", config, "--epoch", str(epoch), "--rank-dir", str(rank_dir), *extra]
    log(f"launching {nproc} ranks: {shlex.join(cmd[1:])}")
    child = subprocess.Popen(cmd, stdin=subprocess.DEVNULL, stdout=events_fd(), start_new_session=True,
                             preexec_fn=_torchrun_dies_with_us(os.getpid()))
    ranks["child"] = child
    told: set[int] = set()
    relaunch = None
    while child.poll() is None:
        if asked:  # every rank, also one that writes its pid after the signal came
            for f in (rank_file(rank_dir, r, "pid") for r in range(nproc)):
                pid = int(f.read_text() or 0) if f.is_file() else 0
                if pid and pid not in told:
                    told.add(pid)
                    try:
                        os.kill(pid, signal.SIGTERM)
                    except ProcessLookupError:
                        pass
        if relaunch is None:
            relaunch = next((r["relaunch"] for r in read_reports(rank_dir, nproc).values() if r.get("relaunch")), None)
            if relaunch is not None:  # the other ranks may wait in a collective the asking rank left: end them now
                try:
                    os.killpg(child.pid, signal.SIGKILL)
                except ProcessLookupError:
                    pass
        time.sleep(0.1)
    reports = read_reports(rank_dir, nproc)
    # A request written just before torchrun ended (within one poll) is read from the final reports, not lost.
    if relaunch is None:
        relaunch = next((r["relaunch"] for r in reports.values() if r.get("relaunch")), None)
    ranks["child"] = None
    code, failure = combined_exit(reports, nproc)
    log(f"ranks done: exit {code} (torchrun exited {child.returncode})")
    shutil.rmtree(rank_dir, ignore_errors=True)
    return code, failure, relaunch
