"""`python -m bsft_trainer train|predict|merge|judge --config <file> [--lease-s S] [--epoch N]` (Contract 4).

stdout carries only events; exit codes: 0 done, 2 config/data error or a GPU out of memory (never retried: the
same recipe would run out again), 75 preempted after a checkpoint, 76 lease lost or a newer attempt owns the run,
anything else a retryable failure.

With --lease-s the trainer runs only while heartbeat lines keep arriving on stdin (lease.py); the watchdog starts
before anything heavy is imported. --epoch is the attempt's fencing epoch (fence.py); without it the trainer takes
the next one itself.
"""
from __future__ import annotations

import argparse
import sys
import traceback

from . import lease
from .events import EXIT_FAILED, EXIT_INVALID, TrainerError, claim_stdout, emit_error, log


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
    parser.add_argument("command", choices=["train", "predict", "merge", "judge"])
    parser.add_argument("--config", required=True, help="train.json written by the orchestrator (judge: judge.json)")
    parser.add_argument("--force", help="predict: put this behavior's token in the prompt (steering)")
    parser.add_argument("--out", help="merge: output folder (default <output_dir>/merged)")
    parser.add_argument("--lease-s", type=float, help="exit (76) on end of stdin or after this many seconds without a heartbeat line")
    parser.add_argument("--epoch", type=int, help="this attempt's fencing epoch (default: the run's current one + 1)")
    args = parser.parse_args(argv)
    if args.lease_s is not None:
        lease.start(args.lease_s)
    claim_stdout()
    cfg = None
    try:
        if args.command == "judge":  # a judge's own config: no run, nothing to fence
            from .judge import run as judge

            return judge(args.config)
        from .config import load
        from .fence import Fence, NoFence

        cfg = load(args.config)
        if args.command == "merge":
            from .merge import run as merge

            return merge(cfg, NoFence(), out=args.out)
        fence = Fence(cfg.output_dir, args.epoch)
        fence.claim()
        log(f"attempt epoch {fence.epoch}")
        if args.command == "train":
            from .train import run

            return run(cfg, fence)
        from .predict import run as predict

        return predict(cfg, fence, force=args.force)
    except TrainerError as e:
        emit_error(e.kind, str(e))
        log(f"error ({e.kind}): {e}")
        return e.exit_code
    except Exception as e:  # noqa: BLE001 - every failure must become an event
        from .memory import is_oom

        traceback.print_exc(file=sys.stderr)
        if is_oom(e):
            emit_error("oom", out_of_memory_message(e, cfg))
            return EXIT_INVALID
        emit_error("internal", f"{type(e).__name__}: {e}")
        return EXIT_FAILED


if __name__ == "__main__":
    sys.exit(main())
