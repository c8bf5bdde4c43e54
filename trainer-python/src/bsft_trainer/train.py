"""The training loop, top to bottom: load -> resume -> train (packed, accumulated, clipped) -> checkpoint -> save.

Preemption (SIGTERM/SIGINT): the current optimizer step finishes, a checkpoint is written, `checkpoint` is
emitted and the process exits 75. A resumed run continues the same sample order and loss curve: the checkpoint
holds the trainable weights, optimizer, scheduler, RNG states and data position.
"""
from __future__ import annotations

import math
import random
import shutil
import signal
import time

import numpy as np
import torch

from . import checkpoint as ckpt
from . import memory
from .config import load_manifest
from .events import EXIT_DONE, EXIT_PREEMPTED, DataError, emit_checkpoint, emit_done, emit_eval, emit_start, emit_step, log
from .loss import chunked_ce_sum
from .packing import DataOrder, make_batch, plan_epoch
from .schedule import lr_factor
from .shards import Shard
from pathlib import Path
from typing import Any
from .config import Config
from .fence import Fence
from .metrics import METRICS_FILE, Metrics
from .precision import MasterWeights


class StopFlag:
    """Set by SIGTERM/SIGINT; the loop checks it between optimizer steps.

    A worker that dies, freezes or loses the job is handled by the lease (lease.py), not here: the trainer then
    exits at once without a checkpoint, and fencing (fence.py) keeps a stale attempt from publishing anything.
    """

    def __init__(self):
        self.signal = None

    def install(self):
        def handler(signum, _frame):
            if self.signal is None:
                log(f"received signal {signum}: finishing this step, then checkpointing")
            self.signal = signum

        signal.signal(signal.SIGTERM, handler)
        signal.signal(signal.SIGINT, handler)
        return self


def pick_device() -> torch.device:
    return torch.device("cuda") if torch.cuda.is_available() else torch.device("cpu")


def seed_everything(seed: int) -> None:
    random.seed(seed)
    np.random.seed(seed)
    torch.manual_seed(seed)


def rng_state() -> dict:
    """Every RNG's state as tensors and plain numbers, so that checkpoints load with torch.load(weights_only=True)."""
    version, internal, gauss = random.getstate()
    kind, keys, pos, has_gauss, cached = np.random.get_state()
    state = {
        "python": {"version": version, "internal": torch.tensor(internal, dtype=torch.int64), "gauss": gauss},
        "numpy": {"kind": kind, "keys": torch.from_numpy(keys.astype(np.int64)), "pos": int(pos), "has_gauss": int(has_gauss), "cached": float(cached)},
        "torch": torch.get_rng_state(),
    }
    if torch.cuda.is_available():
        state["cuda"] = torch.cuda.get_rng_state_all()
    return state


def set_rng_state(state: dict) -> None:
    py, npy = state["python"], state["numpy"]
    random.setstate((py["version"], tuple(int(x) for x in py["internal"].tolist()), py["gauss"]))
    np.random.set_state((npy["kind"], npy["keys"].numpy().astype(np.uint32), npy["pos"], npy["has_gauss"], npy["cached"]))
    torch.set_rng_state(state["torch"])
    if "cuda" in state and torch.cuda.is_available():
        torch.cuda.set_rng_state_all(state["cuda"])


def total_steps(cfg: Config, batches_per_epoch: int) -> int:
    if cfg.train.max_steps is not None:
        return cfg.train.max_steps
    return max(1, math.ceil(cfg.train.epochs * batches_per_epoch / cfg.train.grad_accum))


def warmup_steps(cfg: Config, total: int) -> int:
    if cfg.train.warmup_steps is not None:
        return cfg.train.warmup_steps
    return int(round((cfg.train.warmup_ratio or 0.0) * total))


def memory_gib(device: torch.device) -> float:
    if device.type == "cuda":
        return torch.cuda.max_memory_allocated(device) / 2**30
    try:
        import resource

        return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 2**20
    except ImportError:  # pragma: no cover
        return 0.0


class StepEvents:
    """Step events with no host synchronisation inside a step: with `train.step_sync: deferred` the values of step
    N (loss, grad norm) are read once step N+1 has been queued on the device, so the host never waits for the step
    it has just launched; `every_step` reads them at once. Either way the same values are emitted, in step order,
    and `flush()` (before an eval, a checkpoint or the end) emits what is pending."""

    def __init__(self, device: torch.device, deferred: bool, metrics: Metrics | None):
        self.device = device
        self.deferred = deferred
        self.metrics = metrics
        self.pending = None
        self.clock = time.perf_counter()

    def add(self, step: int, loss_sum: torch.Tensor, loss_tokens: int, lr: float, grad_norm: torch.Tensor, real_tokens: int) -> None:
        # A step's time runs from the previous step's add to this one: the host waits for step N-1 (at its read)
        # while step N is queued, so over a run these intervals add up to the device's time.
        now = time.perf_counter()
        elapsed, self.clock = now - self.clock, now
        if self.deferred:
            self.flush()
        self.pending = (step, loss_sum, loss_tokens, lr, grad_norm, real_tokens / max(elapsed, 1e-9))
        if not self.deferred:
            self.flush()

    def flush(self) -> None:
        if self.pending is None:
            return
        step, loss_sum, loss_tokens, lr, grad_norm, tokens_per_s = self.pending
        self.pending = None
        loss, norm = float(loss_sum) / max(1, loss_tokens), float(grad_norm)  # the host sync
        mem = round(memory_gib(self.device), 3)
        emit_step(step, loss, lr, norm, tokens_per_s=tokens_per_s, mem_gib=mem)
        if self.metrics is not None:
            self.metrics.step(step, loss, lr, norm, tokens_per_s, mem)

    def eval(self, step: int, loss: float) -> None:
        emit_eval(step, loss)
        if self.metrics is not None:
            self.metrics.eval(step, loss)

    def restart_clock(self) -> None:
        """After work that is no training step (eval, checkpoint): it does not count in the next rate."""
        self.clock = time.perf_counter()


def evaluate(tm: Any, shard: Shard | None, batch_tokens: int, device: torch.device) -> float | None:
    if shard is None or len(shard) == 0:
        return None
    tm.train(False)
    total, tokens = 0.0, 0
    with torch.no_grad():
        for docs in plan_epoch(shard.lengths(), batch_tokens, 0, 0):
            batch = make_batch(shard, sorted(docs)).to(device)
            weight, rows = tm.output()
            total += float(chunked_ce_sum(tm.hidden(batch), batch.labels, weight, rows, index=batch.loss_index))
            tokens += batch.n_loss_tokens
    tm.train(True)
    return total / max(1, tokens)


def save_checkpoint(cfg: Config, fence: Fence, step: int, masters: MasterWeights, optimizer: torch.optim.Optimizer, scheduler: Any, data: DataOrder) -> Path:
    def write(folder):
        history = Path(cfg.output_dir) / METRICS_FILE
        if history.is_file():  # the metrics history travels with the checkpoint (to another machine, via a store)
            shutil.copyfile(history, folder / METRICS_FILE)
        torch.save(masters.state(), folder / "trainable.pt")
        torch.save(optimizer.state_dict(), folder / "optimizer.pt")
        torch.save({"scheduler": scheduler.state_dict(), "data": data.state_dict(), "rng": rng_state(), "step": step},
                   folder / "trainer_state.pt")

    path = ckpt.save(cfg.checkpoints_dir, step, write, fence, {"run_id": cfg.run_id})
    ckpt.prune(cfg.checkpoints_dir, cfg.train.keep_checkpoints)
    emit_checkpoint(step, str(path))
    return path


def _load(file):
    """torch.load of a checkpoint file (verified against COMPLETE first). weights_only where torch's safe loader
    handles every type we save (torch >= 2; Debian's torch 1.13 used by CI lacks float support in it)."""
    return torch.load(file, map_location="cpu", weights_only=int(torch.__version__.split(".")[0]) >= 2)


def read_checkpoint(path: Path) -> tuple[dict, dict, dict]:
    """The three files of a checkpoint, loaded (raises when one cannot be read)."""
    return _load(path / "trainable.pt"), _load(path / "optimizer.pt"), _load(path / "trainer_state.pt")


def load_checkpoint(files: tuple[dict, dict, dict], masters: MasterWeights, optimizer: torch.optim.Optimizer, scheduler: Any, data: DataOrder) -> int:
    trainable, optim, state = files
    masters.load_state(trainable)
    optimizer.load_state_dict(optim)
    scheduler.load_state_dict(state["scheduler"])
    data.load_state_dict(state["data"])
    set_rng_state(state["rng"])
    return int(state["step"])


def resume(cfg: Config, masters: MasterWeights, optimizer: torch.optim.Optimizer, scheduler: Any, data: DataOrder) -> tuple[int, Path | None]:
    """Loads the newest valid checkpoint; one whose files verify but do not load falls back to the one before.
    Returns the step to continue from (0 for a fresh start) and the checkpoint it came from."""
    for _, path in ckpt.valid_checkpoints(cfg.checkpoints_dir):
        try:
            files = read_checkpoint(path)
        except Exception as e:  # noqa: BLE001 - a listed-complete checkpoint that does not load is skipped
            log(f"warning: checkpoint {path} is complete but does not load ({type(e).__name__}: {e}); trying the one before")
            continue
        step = load_checkpoint(files, masters, optimizer, scheduler, data)
        log(f"resumed from {path} (step {step})")
        return step, path
    return 0, None


def run(cfg: Config, fence: Fence, stop: StopFlag | None = None, publish: bool = True) -> int:
    """Trains; returns the exit code. `fence` (fence.py) has claimed the run for this attempt.
    publish=False (benchmarks): the same steps and events, but nothing is written (no base/, checkpoints or final/)."""
    stop = stop or StopFlag().install()
    device = pick_device()
    manifest = load_manifest(cfg)
    train_shard = Shard(cfg.shards["train"])
    if len(train_shard) == 0:
        raise DataError(f"{cfg.shards['train']}: the train split has no documents")
    longest = int(train_shard.lengths().max())
    if longest > cfg.train.batch_tokens:
        raise DataError(f"a train document has {longest} tokens, more than train.batch_tokens {cfg.train.batch_tokens}")
    val_shard = Shard(cfg.shards["val"]) if cfg.shards.get("val") else None

    seed_everything(cfg.train.seed)
    metrics = Metrics(cfg) if publish else None  # before the model: a tracker that cannot start fails at once
    from .model import build as build_model, compile_layers, set_recompute

    tm = build_model(cfg, manifest, device, fence, keep_base=publish)
    n_layers = len(tm.layers)
    if cfg.train.activation_checkpointing is True:
        set_recompute(tm, n_layers)
        log(f"activation checkpointing: on (all {n_layers} layers)")
    if cfg.train.compile:
        compile_layers(tm)
        log(f"torch.compile: each of the {n_layers} decoder layers (regional)")
    tm.train(True)

    data = DataOrder(train_shard, cfg.train.batch_tokens, cfg.train.seed)
    steps = total_steps(cfg, data.batches_per_epoch)
    warm = warmup_steps(cfg, steps)
    masters = MasterWeights(tm.named_trainable())
    if masters.separate:
        log(f"fp32 master weights for {masters.separate} low-precision trainable tensors")
    params = masters.parameters()
    decay = [p for p in params if p.ndim >= 2]
    no_decay = [p for p in params if p.ndim < 2]
    optimizer = torch.optim.AdamW(
        [{"params": decay, "weight_decay": cfg.train.weight_decay}, {"params": no_decay, "weight_decay": 0.0}],
        lr=cfg.train.lr, betas=cfg.train.adam_betas, eps=cfg.train.adam_eps,
    )
    scheduler = torch.optim.lr_scheduler.LambdaLR(optimizer, lambda s: lr_factor(s, steps, warm, cfg.train.schedule))

    step, resumed_from = resume(cfg, masters, optimizer, scheduler, data) if publish else (0, None)
    if metrics is not None:
        metrics.start(step, resumed_from)
    emit_start(steps, step, 1)

    # activation_checkpointing: auto measures the first step (memory.py) and then recomputes only what it must.
    measure = memory.probe(device) if cfg.train.activation_checkpointing == "auto" else None
    events = StepEvents(device, deferred=cfg.train.step_sync == "deferred", metrics=metrics)
    eval_every = cfg.eval.every
    while step < steps:
        micro = [data.next_batch() for _ in range(cfg.train.grad_accum)]
        if measure is not None:
            measure.reset_peak()
        try:
            loss_sum, real_tokens = forward_backward(tm, micro, device)
        except RuntimeError as e:
            if measure is None or not memory.is_oom(e):
                raise
            log(f"activation checkpointing: the first step does not fit without it ({type(e).__name__}); "
                f"retrying it with all {n_layers} layers recomputed")
            retry = True
        else:
            retry = False
        if retry:  # outside the except block, which holds the failed step's tensors
            masters.zero_grad()
            torch.cuda.empty_cache()
            set_recompute(tm, n_layers)
            measure = None
            loss_sum, real_tokens = forward_backward(tm, micro, device)
        masters.grads_to_masters()
        grad_norm = torch.nn.utils.clip_grad_norm_(params, cfg.train.grad_clip)
        optimizer.step()
        scheduler.step()
        masters.masters_to_model()
        masters.zero_grad()
        step += 1
        if measure is not None:
            peak, static, budget = measure.peak(), measure.allocated(), measure.budget()
            n = memory.layers_to_recompute(peak, static, budget, n_layers)
            set_recompute(tm, n)
            state = f"on for {n} of {n_layers} layers" if n else "off"
            log(f"activation checkpointing: {state} (first step peaked at {memory.gib(peak)}, optimizer states "
                f"included; {memory.gib(static)} stays allocated; budget {memory.gib(budget)})")
            measure = None
        events.add(step, loss_sum, sum(b.n_loss_tokens for b in micro), scheduler.get_last_lr()[0], grad_norm, real_tokens)
        if eval_every and step % eval_every == 0 and step < steps:
            events.flush()
            val = evaluate(tm, val_shard, cfg.train.batch_tokens, device)
            if val is not None:
                events.eval(step, val)
            events.restart_clock()
        if not publish:
            continue
        if stop.signal is not None:
            events.flush()
            save_checkpoint(cfg, fence, step, masters, optimizer, scheduler, data)
            metrics.close()
            log(f"preempted at step {step}: checkpoint written, exiting {EXIT_PREEMPTED}")
            return EXIT_PREEMPTED
        if step % cfg.train.checkpoint_every == 0 and step < steps:
            events.flush()
            save_checkpoint(cfg, fence, step, masters, optimizer, scheduler, data)
            events.restart_clock()

    events.flush()
    if not publish:
        return EXIT_DONE
    val = evaluate(tm, val_shard, cfg.train.batch_tokens, device)
    if val is not None:
        events.eval(step, val)
    metrics.close()
    save_checkpoint(cfg, fence, step, masters, optimizer, scheduler, data)
    from .save import save_final

    final = save_final(cfg, manifest, tm, fence)
    emit_done(str(final))
    return EXIT_DONE


def forward_backward(tm: Any, micro: list, device: torch.device) -> tuple[torch.Tensor, int]:
    """Forward and backward of one optimizer step's micro-batches, the loss divided by the step's loss tokens.
    Returns (the summed loss on the device, unread; real tokens)."""
    pin = device.type == "cuda"
    step_loss_tokens = max(1, sum(b.n_loss_tokens for b in micro))
    loss_sum = torch.zeros((), device=device)
    real_tokens = 0
    for batch in micro:
        batch = (batch.pin_memory() if pin else batch).to(device, non_blocking=pin)
        weight, rows = tm.output()
        loss = chunked_ce_sum(tm.hidden(batch), batch.labels, weight, rows, index=batch.loss_index)
        (loss / step_loss_tokens).backward()
        loss_sum += loss.detach()
        real_tokens += batch.n_tokens
    return loss_sum, real_tokens
