"""`python -m bsft_trainer train|predict|merge --config <file>` (Contract 4).

stdout carries only events; exit codes: 0 done, 2 config/data error (never retried), 75 preempted after a
checkpoint, anything else a retryable failure.
"""
import argparse
import sys
import traceback

from .events import EXIT_FAILED, TrainerError, claim_stdout, emit, log


def main(argv=None):
    parser = argparse.ArgumentParser(prog="python -m bsft_trainer", description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("command", choices=["train", "predict", "merge"])
    parser.add_argument("--config", required=True, help="train.json written by the orchestrator")
    parser.add_argument("--force", help="predict: put this behavior's token in the prompt (steering)")
    parser.add_argument("--out", help="merge: output folder (default <output_dir>/merged)")
    args = parser.parse_args(argv)
    claim_stdout()
    try:
        from .config import load

        cfg = load(args.config)
        if args.command == "train":
            from .train import run

            return run(cfg)
        if args.command == "predict":
            from .predict import run as predict

            return predict(cfg, force=args.force)
        from .merge import run as merge

        return merge(cfg, out=args.out)
    except TrainerError as e:
        emit("error", kind=e.kind, message=str(e))
        log(f"error ({e.kind}): {e}")
        return e.exit_code
    except Exception as e:  # noqa: BLE001 - every failure must become an event
        oom = type(e).__name__ == "OutOfMemoryError" or "out of memory" in str(e).lower()
        emit("error", kind="oom" if oom else "internal", message=f"{type(e).__name__}: {e}")
        traceback.print_exc(file=sys.stderr)
        return EXIT_FAILED


if __name__ == "__main__":
    sys.exit(main())
