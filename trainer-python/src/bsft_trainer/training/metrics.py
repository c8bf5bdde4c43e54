"""A run's metrics history: every step and eval value appended to `<output_dir>/metrics.jsonl`, and sent to the
experiment trackers the recipe names (`tracking: [tensorboard, wandb, mlflow]`) through their own packages.

Each tracker's package is imported only when it is named; a missing one is a config error (exit 2) before any
training, naming what to install. Keys and endpoints come only from the environment, read by the packages
themselves (WANDB_API_KEY, WANDB_PROJECT, MLFLOW_TRACKING_URI, ...). A resumed run first drops the lines of steps
after the checkpoint it resumes from, so the file holds each step once, as the run that continued it saw it.

metrics.jsonl lines: {"kind": "step", "step", "time", "loss", "lr", "grad_norm", "tokens_per_s", "mem_gib"} and
{"kind": "eval", "step", "time", "loss"}; `time` is seconds since the epoch.
"""
from __future__ import annotations

import importlib
import json
import os
import shutil
import time
from pathlib import Path

from ..process.events import ConfigError

METRICS_FILE = "metrics.jsonl"


def _require(tracker: str, module: str | None = None):
    """The tracker's module, imported now; a config error naming the package to install when it is missing."""
    try:
        return importlib.import_module(module or tracker)
    except ImportError as e:
        raise ConfigError(f"tracking: {tracker} needs the {tracker} package ({e}): pip install {tracker}") from None


class TensorBoard:
    def __init__(self, cfg):
        tensorboard = _require("tensorboard", "torch.utils.tensorboard")  # torch's writer, backed by the tensorboard package
        self.writer = tensorboard.SummaryWriter(log_dir=str(Path(cfg.output_dir) / "tensorboard"))

    def log(self, step, values):
        for k, v in values.items():
            self.writer.add_scalar(k, v, step)
        self.writer.flush()

    def close(self):
        self.writer.close()


class WandB:
    def __init__(self, cfg):
        wandb = _require("wandb")
        # One W&B run per bsft run: a resumed attempt continues it (the API key and project come from the environment).
        self.run = wandb.init(project=os.environ.get("WANDB_PROJECT", "bsft"), name=cfg.run_id, id=cfg.run_id,
                              resume="allow", dir=cfg.output_dir, config=_hyperparameters(cfg))

    def log(self, step, values):
        self.run.log(values, step=step)

    def close(self):
        self.run.finish()


class MLflow:
    def __init__(self, cfg):
        self.mlflow = mlflow = _require("mlflow")
        if not os.environ.get("MLFLOW_TRACKING_URI"):
            mlflow.set_tracking_uri(Path(cfg.output_dir, "mlruns").resolve().as_uri())
        mlflow.set_experiment(os.environ.get("MLFLOW_EXPERIMENT_NAME", "bsft"))
        found = mlflow.search_runs(filter_string=f"tags.bsft_run_id = '{cfg.run_id}'", output_format="list")
        self.run = mlflow.start_run(run_id=found[0].info.run_id) if found else mlflow.start_run(
            run_name=cfg.run_id, tags={"bsft_run_id": cfg.run_id})
        if not found:
            mlflow.log_params(_hyperparameters(cfg))

    def log(self, step, values):
        self.mlflow.log_metrics({k.replace("/", "_"): v for k, v in values.items()}, step=step)

    def close(self):
        self.mlflow.end_run()


TRACKERS = {"tensorboard": TensorBoard, "wandb": WandB, "mlflow": MLflow}


def _hyperparameters(cfg) -> dict:
    t = cfg.train
    return {"run_id": cfg.run_id, "base_model": cfg.model.name_or_path, "method": t.method, "lr": t.lr,
            "schedule": t.schedule, "batch_tokens": t.batch_tokens, "grad_accum": t.grad_accum,
            "lora_r": t.lora.r, "lora_alpha": t.lora.alpha, "conditioning": cfg.conditioning, "seed": t.seed}


class Metrics:
    """Made before the model loads (a tracker that cannot start fails the run at once); `start(step)` once the
    step the run resumes from is known."""

    def __init__(self, cfg):
        self.path = Path(cfg.output_dir) / METRICS_FILE
        self.trackers = [TRACKERS[name](cfg) for name in cfg.tracking]
        self.file = None

    def start(self, resumed_step: int, checkpoint: Path | None = None) -> None:
        """A run resumed on a machine without its history (the checkpoint came from a store) takes the copy in the
        checkpoint; either way the lines past the checkpoint's step are dropped."""
        if checkpoint is not None and not self.path.is_file() and (checkpoint / METRICS_FILE).is_file():
            shutil.copyfile(checkpoint / METRICS_FILE, self.path)
        self._keep_until(resumed_step)
        self.file = open(self.path, "a", encoding="utf-8")

    def _keep_until(self, step: int) -> None:
        """Drops the lines of steps after `step` (those a preempted attempt trained past its last checkpoint)."""
        if not self.path.is_file():
            return
        kept = []
        for line in self.path.read_text(encoding="utf-8").splitlines():
            try:
                if json.loads(line)["step"] <= step:
                    kept.append(line)
            except (ValueError, KeyError, TypeError):
                continue  # a line cut short by a kill
        tmp = self.path.with_suffix(".jsonl.tmp")
        tmp.write_text("".join(f"{line}\n" for line in kept), encoding="utf-8")
        os.replace(tmp, self.path)

    def _write(self, record: dict) -> None:
        self.file.write(json.dumps(record, allow_nan=False, default=float) + "\n")
        self.file.flush()

    def step(self, step: int, loss: float, lr: float, grad_norm: float, tokens_per_s: float, mem_gib: float) -> None:
        self._write({"kind": "step", "step": step, "time": round(time.time(), 3), "loss": loss, "lr": lr,
                     "grad_norm": grad_norm, "tokens_per_s": tokens_per_s, "mem_gib": mem_gib})
        for t in self.trackers:
            t.log(step, {"train/loss": loss, "train/lr": lr, "train/grad_norm": grad_norm,
                         "train/tokens_per_s": tokens_per_s, "train/mem_gib": mem_gib})

    def eval(self, step: int, loss: float) -> None:
        self._write({"kind": "eval", "step": step, "time": round(time.time(), 3), "loss": loss})
        for t in self.trackers:
            t.log(step, {"eval/loss": loss})

    def close(self) -> None:
        if self.file is not None:
            self.file.close()
        for t in self.trackers:
            t.close()
