"""`python -m bsft_trainer train|predict|merge|judge|chat --config <file> [--lease-s S] [--epoch N]` (Contract 4; chat: chat.py).

stdout carries only events; exit codes: 0 done, 2 config/data error or a GPU out of memory (never retried: the
same recipe would run out again), 74 this machine's disk is full (the job goes to another worker), 75 preempted
after a checkpoint, 76 lease lost or a newer attempt owns the run, anything else a retryable failure.

With --lease-s the trainer runs only while heartbeat lines keep arriving on stdin (lease.py); the watchdog starts
before anything heavy is imported. --epoch is the attempt's fencing epoch (fence.py); without it the trainer takes
the next one itself.

`train --nproc-per-node N` (N > 1) starts N ranks with torchrun and stands for them (launch.py); each rank is
this same program under torchrun (distributed.py).
"""
from __future__ import annotations

from .process.lifeline import hold

hold()  # first: the kernel kills this process when its parent dies, even inside an import (lifeline.py)

import argparse  # noqa: E402
import os  # noqa: E402
import sys  # noqa: E402
import traceback  # noqa: E402
from pathlib import Path  # noqa: E402

from .process import lease  # noqa: E402
from .process.events import EXIT_DONE, EXIT_FAILED, EXIT_INVALID, EXIT_PREEMPTED, ConfigError, TrainerError, claim_stdout, emit_error, log  # noqa: E402


def out_of_memory_message(error: BaseException, cfg) -> str:
    """What to change after a GPU out-of-memory error: it is the recipe's sizes, so a retry would fail the same way."""
    first = str(error).strip().splitlines()[0] if str(error).strip() else type(error).__name__
    if cfg is None:
        return f"out of GPU memory: {first}"
    t = cfg.train
    return (f"out of GPU memory with train.batch_tokens ({t.batch_tokens}) and train.activation_checkpointing "
            f"({str(t.activation_checkpointing).lower()}): lower train.batch_tokens (raise train.grad_accum to keep "
            f"the tokens per step), or set train.activation_checkpointing: true. {first}")


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m bsft_trainer", description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("command", choices=["train", "predict", "merge", "judge", "chat"])
    parser.add_argument("--config", required=True, help="train.json written by the orchestrator (judge: judge.json)")
    parser.add_argument("--force", help="predict: put this behavior's token in the prompt (steering)")
    parser.add_argument("--out", help="merge: output folder (default <output_dir>/merged)")
    parser.add_argument("--lease-s", type=float, help="exit (76) on end of stdin or after this many seconds without a heartbeat line")
    parser.add_argument("--epoch", type=int, help="this attempt's fencing epoch (default: the run's current one + 1)")
    parser.add_argument("--nproc-per-node", type=int, default=1,
                        help="train: processes (GPUs) on this machine; more than 1 starts them with torchrun")
    parser.add_argument("--rank-dir", help=argparse.SUPPRESS)  # set by launch.py for the ranks it starts
    # set by launch.py when it starts the ranks again after a first step that ran out of memory (train.Recompute)
    parser.add_argument("--recompute-all", action="store_true", help=argparse.SUPPRESS)
    args = parser.parse_args(argv)
    from .parallel.launch import across_machines, launched_by_torchrun

    if launched_by_torchrun():
        return rank_main(args)
    # Several GPUs, or one machine of a run across machines (even with one GPU): torchrun starts the ranks.
    launches = args.command == "train" and (args.nproc_per_node > 1 or across_machines())
    if args.lease_s is not None and not launches:
        lease.start(args.lease_s)  # a launcher starts it itself, to kill its ranks when it ends
    claim_stdout()
    cfg = None
    try:
        if args.command == "judge":  # a judge's own config: no run, nothing to fence
            from .inference.judge import run as judge

            return judge(args.config)
        from .data.config import load
        from .process.fence import Fence, NoFence

        cfg = load(args.config)
        if args.command == "merge":
            from .modeling.merge import run as merge

            return merge(cfg, NoFence(), out=args.out)
        if args.command == "chat":  # reads the final model only, writes nothing: no fence
            from .inference.chat import run as chat

            return chat(cfg)
        fence = Fence(cfg.output_dir, args.epoch)
        fence.claim()
        log(f"attempt epoch {fence.epoch}")
        if launches:
            from .parallel.launch import supervise

            return supervise(str(Path(args.config).resolve()), cfg.output_dir, args.nproc_per_node, fence.epoch, args.lease_s)
        if args.command == "train" and cfg.train.method == "none":
            raise ConfigError("train.method none: nothing to train (predict evaluates the model as it ships)")
        if args.command == "train":
            from .training.train import run

            return run(cfg, fence, world=world_for(cfg))
        from .inference.predict import run as predict

        return predict(cfg, fence, force=args.force)
    except Exception as e:  # noqa: BLE001 - every failure must become an event
        return report_failure(e, cfg)[0]


def report_failure(e: Exception, cfg, who: str = "") -> tuple[int, str, str]:
    """Emits the `error` event of a failure and logs it; returns (exit code, kind, message). A TrainerError carries
    its kind and code; a full disk is `disk` (exit 74); a GPU out of memory is a config error naming what to change;
    anything else is internal."""
    from .checkpoints.checkpoint import DiskFullError, _disk_full

    if not isinstance(e, TrainerError) and _disk_full(e):  # any write of the run (metrics, predictions, EPOCH)
        e = DiskFullError(getattr(e, "filename", None) or (cfg.output_dir if cfg is not None else "."))
    if isinstance(e, TrainerError):
        code, kind, message = e.exit_code, e.kind, str(e)
    else:
        from .training.memory import is_oom

        traceback.print_exc(file=sys.stderr)
        oom = is_oom(e)
        code, kind = (EXIT_INVALID, "oom") if oom else (EXIT_FAILED, "internal")
        message = out_of_memory_message(e, cfg) if oom else f"{type(e).__name__}: {e}"
    emit_error(kind, message)
    if isinstance(e, TrainerError):  # the others printed their traceback
        log(f"{who}error ({kind}): {message}")
    return code, kind, message


def world_for(cfg):
    """A process without torchrun: a world of one, made a process group of one when the run's newest checkpoint is
    sharded (written by several ranks), so that it resumes on one GPU."""
    from .checkpoints import checkpoint as ckpt
    from .parallel.distributed import World, solo

    newest = ckpt.latest_complete(cfg.checkpoints_dir)
    if newest is not None and ckpt.is_sharded(newest):
        log(f"{newest.name} is sharded: resuming as a sharded run of 1 rank")
        return solo()
    return World()


def rank_main(args) -> int:
    """One rank of a sharded run, started by torchrun (launch.py): the first rank of each machine writes its
    launcher's events (distributed.py); every rank records its pid and exit code for the launcher."""
    from .parallel.launch import record_exit, record_start

    rank, local_rank = int(os.environ["RANK"]), int(os.environ["LOCAL_RANK"])
    rank_dir = Path(args.rank_dir) if args.rank_dir else None
    if rank_dir is not None:
        record_start(rank_dir, local_rank)
    claim_stdout(events=local_rank == 0)
    cfg, world, code, error, relaunch = None, None, EXIT_FAILED, None, None
    try:
        if args.command != "train":
            raise TrainerError("config", f"{args.command} runs in one process, not under torchrun")
        from .data.config import load
        from .parallel.distributed import available, from_torchrun
        from .process.fence import Fence

        problem = available()
        if problem:
            raise TrainerError("config", problem)
        cfg = load(args.config)
        fence = Fence(cfg.output_dir, args.epoch)
        fence.claim()
        world = from_torchrun()
        from .training.train import RelaunchWithRecompute, run

        try:
            code = run(cfg, fence, world=world, recompute_all=args.recompute_all)
        except RelaunchWithRecompute as e:  # not the run's failure: the launcher starts the ranks again
            log(f"rank {rank}: {e}; asking the launcher to start every rank again with every layer recomputed")
            relaunch, error = "recompute_all", (e.kind, str(e))
    except Exception as e:  # noqa: BLE001 - every failure must become an event and an exit report
        code, kind, message = report_failure(e, cfg, f"rank {rank}: ")
        error = (kind, message)
    finally:
        if rank_dir is not None:
            record_exit(rank_dir, local_rank, rank, code, error, relaunch)
    if world is not None:
        world.close()
    return code


def exit_now(code: int) -> None:
    """Ends the process with `code`. A command that ended done (0) or stopped after a checkpoint (75) has closed and
    synced all it wrote (checkpoints, final/, predictions, metrics, trackers; the fence's lock goes with the process):
    it exits without the interpreter's teardown of torch and its modules, which took 1.1 s after `done` on an idle
    2-core machine and 38.7 s at load 45 (measured), time a stop's grace would pay. A failure exits normally, so that
    what it left open (a tracker's run) is closed by its own exit handlers."""
    if code in (EXIT_DONE, EXIT_PREEMPTED):
        for stream in (sys.stdout, sys.stderr):
            stream.flush()
        os._exit(code)
    sys.exit(code)


if __name__ == "__main__":
    exit_now(main())
