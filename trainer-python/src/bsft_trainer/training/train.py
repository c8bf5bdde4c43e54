"""The training loop, top to bottom: load -> resume -> train (packed, accumulated, clipped) -> checkpoint -> save.

Preemption (SIGTERM/SIGINT): the current optimizer step finishes, a checkpoint is written, `checkpoint` is
emitted and the process exits 75. A resumed run continues the same sample order and loss curve: the checkpoint
holds the trainable weights, optimizer, scheduler, RNG states and data position.

Several GPUs (torchrun, launch.py): every rank runs this same loop on its part of each optimizer step. The model
is sharded with FSDP2 (sharding.py); all ranks follow one seeded packed order, a step takes `grad_accum` batches
per rank, and the loss is divided by the step's loss tokens over all ranks, so N ranks give the update one process
gives with N times the batches. Checkpoints are then sharded (sharded_checkpoint.py) and rank 0 alone emits
events and publishes.
"""
from __future__ import annotations

import math
import os
import random
import shutil
import signal
import time

import numpy as np
import torch

from ..checkpoints import checkpoint as ckpt
from . import memory
from ..data.config import load_manifest
from ..process.events import EXIT_DONE, EXIT_INVALID, EXIT_PREEMPTED, ConfigError, DataError, TrainerError, emit_checkpoint, emit_done, emit_eval, emit_start, emit_step, log
from .packing import DataOrder, make_batch, plan_epoch
from .schedule import lr_factor
from ..data.shards import Shard
from pathlib import Path
from typing import Any
from ..data.config import Config
from ..process.fence import Fence
from .metrics import METRICS_FILE, Metrics
from .precision import CompensatedAdamW, MasterWeights
from ..parallel.distributed import World, full_value


class StopFlag:
    """Set by SIGTERM/SIGINT; the loop checks it between optimizer steps.

    A worker that dies, freezes or loses the job is handled by the lease (lease.py), not here: the trainer then
    exits at once without a checkpoint, and fencing (fence.py) keeps a stale attempt from publishing anything.
    """

    def __init__(self):
        self.signal = None
        self.at: float | None = None  # time.monotonic() of the first request

    def install(self):
        def handler(signum, _frame):
            if self.signal is None:
                self.at = time.monotonic()
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


def total_steps(cfg: Config, batches_per_epoch: int, batches_per_step: int) -> int:
    if cfg.train.max_steps is not None:
        return cfg.train.max_steps
    return max(1, math.ceil(cfg.train.epochs * batches_per_epoch / batches_per_step))


def warmup_steps(cfg: Config, total: int) -> int:
    if cfg.train.warmup_steps is not None:
        return cfg.train.warmup_steps
    return int(round((cfg.train.warmup_ratio or 0.0) * total))


def memory_now_gib(device: torch.device) -> float | None:
    """Memory in use now: allocated on a GPU, the resident set on a CPU (Linux), else None."""
    if device.type == "cuda":
        return torch.cuda.memory_allocated(device) / 2**30
    try:
        with open("/proc/self/statm") as f:
            return int(f.read().split()[1]) * os.sysconf("SC_PAGE_SIZE") / 2**30
    except (OSError, ValueError, IndexError):
        return None


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

    def __init__(self, device: torch.device, deferred: bool, metrics: Metrics | None, world: World):
        self.device = device
        self.world = world
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
        self.world.sum_(loss_sum)  # every rank's share of the step's loss (queued; read at flush)
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
        if not self.world.speaks:
            return
        now = memory_now_gib(self.device)
        if now is not None:  # the peak since start is at least what is in use now (the two are read at different moments)
            now = round(now, 3)
            mem = max(mem, now)
        emit_step(step, loss, lr, norm, tokens_per_s=tokens_per_s, mem_gib=mem, mem_alloc_gib=now)
        if self.metrics is not None:  # rank 0's alone
            self.metrics.step(step, loss, lr, norm, tokens_per_s, mem)

    def eval(self, step: int, loss: float) -> None:
        if not self.world.speaks:
            return
        emit_eval(step, loss)
        if self.metrics is not None:
            self.metrics.eval(step, loss)

    def restart_clock(self) -> None:
        """After work that is no training step (eval, checkpoint): it does not count in the next rate."""
        self.clock = time.perf_counter()


class RelaunchWithRecompute(TrainerError):
    """A sharded run's first step ran out of memory under `auto`: this rank cannot rejoin the step (its peers may wait
    in a collective it left), so the launcher starts every rank again with every layer recomputed (launch.py)."""

    def __init__(self, error: BaseException):
        super().__init__("oom", f"the first step ran out of memory without recomputing every layer ({type(error).__name__})")


class Recompute:
    """Which decoder layers recompute their activations in backward (memory.py). `true`: all; `false`: none;
    `auto`: from the memory plan before step 1 when it says the step cannot fit without recomputation, else from
    step 1's measured peak; a first step that runs out of memory is done again with every layer recomputed.
    `all_layers` (a sharded run started again after such a step): every layer from the start."""

    def __init__(self, cfg: Config, tm: Any, device: torch.device, world: World, all_layers: bool = False):
        from ..modeling.model import set_recompute

        self.tm, self.world, self._set = tm, world, set_recompute
        self.n_layers = len(tm.layers)
        mode = cfg.train.activation_checkpointing
        self.measure = memory.probe(device) if mode == "auto" else None  # None: nothing left to decide
        self.first_step = self.measure is not None  # an out-of-memory first step is retried
        if mode is True or all_layers:
            self.apply(self.n_layers, "the first step ran out of memory without it" if all_layers and mode is not True else "")
            self.measure = None
        elif self.measure is not None:
            budget = self.measure.budget()
            planned = memory.planned_recompute(cfg.memory_plan, budget, world.size, self.n_layers)
            n = world.max_int(-1 if planned is None else planned)  # every rank recomputes the same layers
            if n > 0:
                peak = cfg.memory_plan.peak_bytes
                self.apply(n, f"before step 1: the memory plan needs {memory.gib(peak[0])} per GPU without it, "
                              f"{memory.gib(peak[n])} with it; budget {memory.gib(budget)}")
                self.measure = None

    def apply(self, n: int, why: str = "") -> None:
        self._set(self.tm, n)
        state = "off" if n == 0 else f"on (all {n} layers)" if n == self.n_layers else f"on for {n} of {self.n_layers} layers"
        log(f"activation checkpointing: {state}{f' ({why})' if why else ''}")

    def before_step(self) -> None:
        if self.measure is not None:
            self.measure.reset_peak()

    def retries(self, error: RuntimeError) -> bool:
        """Whether a failed step is done again with every layer recomputed (one process). A sharded rank instead
        raises RelaunchWithRecompute: the launcher starts every rank again."""
        if not (self.first_step and memory.is_oom(error) and self.tm.recompute < self.n_layers):
            return False
        if self.world.sharded:
            raise RelaunchWithRecompute(error) from error
        log(f"activation checkpointing: the first step does not fit without it ({type(error).__name__}); "
            f"retrying it with all {self.n_layers} layers recomputed")
        self.measure = None
        return True

    def after_step(self) -> None:
        """After step 1: from its measured peak, how many layers must recompute to fit."""
        self.first_step = False
        if self.measure is None:
            return
        peak, static, budget = self.measure.peak(), self.measure.allocated(), self.measure.budget()
        n = self.world.max_int(memory.layers_to_recompute(peak, static, budget, self.n_layers))
        self.apply(n, f"first step peaked at {memory.gib(peak)}, optimizer states included; {memory.gib(static)} "
                      f"stays allocated; budget {memory.gib(budget)}")
        self.measure = None


def evaluate(tm: Any, shard: Shard | None, batch_tokens: int, device: torch.device, stopping=lambda: False) -> float | None:
    """Mean loss over the shard; None without one, or when `stopping()` turns true between batches (a stop request
    does not wait for an evaluation)."""
    if shard is None or len(shard) == 0:
        return None
    tm.train(False)
    total, tokens = 0.0, 0
    try:
        with torch.no_grad():
            for docs in plan_epoch(shard.lengths(), batch_tokens, 0, 0):
                if stopping():
                    return None
                batch = make_batch(shard, sorted(docs)).to(device)
                total += float(tm.loss_sum(batch))  # every rank the same batches (a sharded forward is collective)
                tokens += batch.n_loss_tokens
    finally:
        tm.train(True)
    return total / max(1, tokens)


class Optimizer:
    """What a checkpoint saves and loads besides the weights: the optimizer over the master weights, its scheduler
    and the names of its parameter groups (a plain checkpoint keys the optimizer's states by index)."""

    def __init__(self, masters: MasterWeights, optimizer: torch.optim.Optimizer, scheduler: Any, group_names: list[list[str]]):
        self.masters, self.optimizer, self.scheduler, self.group_names = masters, optimizer, scheduler, group_names


def build_optimizer(cfg: Config, tm: Any, steps: int, warm: int, world: World) -> Optimizer:
    compensated = cfg.train.master_weights == "bf16_compensated"
    masters = MasterWeights(tm.named_trainable(), copies=not compensated)
    if masters.separate:
        log(f"fp32 master weights for {masters.separate} low-precision trainable tensors")
    named = list(zip(masters.names, masters.parameters()))
    groups = [[(n, p) for n, p in named if p.ndim >= 2], [(n, p) for n, p in named if p.ndim < 2]]
    params = [{"params": [p for _, p in groups[0]], "weight_decay": cfg.train.weight_decay},
              {"params": [p for _, p in groups[1]], "weight_decay": 0.0}]
    if compensated:
        if world.sharded:
            raise ConfigError("train.master_weights: bf16_compensated is for one GPU; with several, FSDP2 keeps fp32 master weights sharded (use fp32)")
        optimizer = CompensatedAdamW(params, lr=cfg.train.lr, betas=cfg.train.adam_betas, eps=cfg.train.adam_eps)
        log("master weights: bf16 with compensated (Kahan) AdamW updates")
    else:
        optimizer = torch.optim.AdamW(params, lr=cfg.train.lr, betas=cfg.train.adam_betas, eps=cfg.train.adam_eps)
    scheduler = torch.optim.lr_scheduler.LambdaLR(optimizer, lambda s: lr_factor(s, steps, warm, cfg.train.schedule))
    return Optimizer(masters, optimizer, scheduler, [[n for n, _ in g] for g in groups])


class Checkpoints:
    """Writes the run's checkpoints, on every rank. Plain (one process): at once. Sharded: a periodic checkpoint is
    written in the background (sharded_checkpoint.py) and published at the first step boundary where every rank's
    part is on disk; a preemption's checkpoint and the last one wait for it and are written at once. Rank 0 prunes
    old checkpoints and emits the `checkpoint` event (with its size and how long it took) when one is published."""

    def __init__(self, cfg: Config, fence: Fence, world: World, tm: Any, opt: Optimizer, data: DataOrder):
        self.cfg, self.fence, self.world, self.tm, self.opt, self.data = cfg, fence, world, tm, opt, data
        self.pending = None  # a sharded checkpoint being written in the background (sharded_checkpoint.Save)

    def save(self, step: int, background: bool = False) -> None:
        self.wait()
        cfg, world, opt = self.cfg, self.world, self.opt
        state = {"scheduler": opt.scheduler.state_dict(), "data": self.data.state_dict(), "step": step, "world_size": world.size}
        history = Path(cfg.output_dir) / METRICS_FILE
        if world.sharded:
            from ..checkpoints import sharded_checkpoint as sharded  # torch.distributed.checkpoint: imported only when sharded

            self.pending = sharded.begin(cfg.checkpoints_dir, step, world, self.tm.container, opt.optimizer, state, rng_state(),
                                         history, background)
            if not background:
                self.wait()
            return
        start = time.perf_counter()

        def write(folder):
            digests = {}
            if history.is_file():  # the metrics history travels with the checkpoint (to another machine, via a store)
                shutil.copyfile(history, folder / METRICS_FILE)
            for name, obj in (("trainable.pt", opt.masters.state()), ("optimizer.pt", opt.optimizer.state_dict()),
                              ("trainer_state.pt", {**state, "rng": rng_state()})):
                ckpt.save_hashed(obj, folder, name, digests)  # hashed as written, never read back
            return digests

        ckpt.make_room(cfg.checkpoints_dir)
        path = ckpt.save(cfg.checkpoints_dir, step, write, self.fence, {"run_id": cfg.run_id})
        self._published(step, path, ckpt.size_of(path), time.perf_counter() - start)

    def poll(self) -> None:
        """At a step boundary, on every rank: publishes the background checkpoint once every rank has written it."""
        if self.pending is None:
            return
        from ..checkpoints import sharded_checkpoint as sharded

        if sharded.all_written(self.pending, self.world):
            self.wait()

    def wait(self) -> None:
        """Every rank: waits for the background checkpoint, if any, and publishes it."""
        if self.pending is None:
            return
        from ..checkpoints import sharded_checkpoint as sharded

        save, self.pending = self.pending, None
        path, size, seconds = sharded.finish(save, self.world, self.fence, self.cfg.run_id)
        self._published(save.step, path, size, seconds)

    def _published(self, step: int, path: Path, size: int, seconds: float) -> None:
        if self.world.main:
            ckpt.prune(self.cfg.checkpoints_dir, self.cfg.train.keep_checkpoints)
        if self.world.speaks:
            emit_checkpoint(step, str(path), size, seconds)
        if self.world.main:
            warn_over_half_grace(self.cfg, f"checkpoint {step}", seconds, "a stop could be cut short before its checkpoint is written")


def warn_over_half_grace(cfg: Config, what: str, seconds: float, risk: str) -> None:
    """A stop (preemption, Ctrl-C, cancel) waits for a checkpoint, or the part of final/ in hand, within
    train.preempt_grace_s, on a machine that may be as busy as now: one that took over half of it is warned about,
    with the grace that keeps a margin of twice its time."""
    grace = cfg.train.preempt_grace_s
    if seconds > grace / 2:
        log(f"warning: {what} took {seconds:.1f} s, more than half of train.preempt_grace_s ({grace} s): {risk}; "
            f"set train.preempt_grace_s to at least {int(2 * seconds) + 1}")


def read_checkpoint(path: Path) -> tuple[dict, dict, dict]:
    """The three files of a plain checkpoint, loaded (raises when one cannot be read)."""
    return tuple(ckpt.load_file(path / name) for name in ("trainable.pt", "optimizer.pt", "trainer_state.pt"))


def load_checkpoint(path: Path, world: World, tm: Any, opt: Optimizer, data: DataOrder, seed: int) -> int:
    """Loads a checkpoint, plain or sharded, into this process's (possibly sharded) model and optimizer. A rank the
    checkpoint has no RNG states for (it was written by fewer ranks) is seeded from `seed`, its rank and the step."""
    if ckpt.is_sharded(path):
        if not world.sharded:
            raise ValueError("a sharded checkpoint needs a sharded model")
        from ..checkpoints import sharded_checkpoint as sharded

        state, rng = sharded.load(path, world, tm.container, opt.optimizer)
    else:
        files = read_checkpoint(path)
        if world.sharded:
            from ..checkpoints import sharded_checkpoint as sharded

            sharded.load_plain(files, opt.masters.names, opt.group_names, tm.container, opt.optimizer)
        else:
            opt.masters.load_state(files[0])
            opt.optimizer.load_state_dict(files[1])
        state = files[2]
        rng = state["rng"] if world.rank == 0 else None
    opt.scheduler.load_state_dict(state["scheduler"])
    data.load_state_dict(state["data"])
    step = int(state["step"])
    if rng is not None:
        set_rng_state(rng)
    else:
        seed_everything((seed + world.rank * 1_000_003 + step) % 2**31)
    return step


class CheckpointLoadError(TrainerError):
    """Complete checkpoints exist but none loads into this model: a retry on another machine would fail the same way
    (and starting over would prune them), so the run stops with exit 2 and says what to do."""

    exit_code = EXIT_INVALID

    def __init__(self, checkpoints_dir: str, failures: list[tuple[Path, str]]):
        newest, why = failures[0]
        super().__init__("config", f"none of the {len(failures)} complete checkpoint(s) in {checkpoints_dir} loads into this "
                                   f"model; the newest, {newest.name}: {why}. Nothing was trained. If the recipe's model or "
                                   f"method changed since they were written, move {checkpoints_dir} away to start the run over")


def resume(cfg: Config, world: World, tm: Any, opt: Optimizer, data: DataOrder) -> tuple[int, Path | None]:
    """Loads the newest valid checkpoint; one whose files verify but do not load falls back to the one before.
    Returns the step to continue from (0 for a fresh start) and the checkpoint it came from. Raises
    CheckpointLoadError when valid checkpoints exist and none loads. Sharded: rank 0 verifies and picks, every rank
    loads that one, and they fall back together when one rank could not load it."""
    candidates = ckpt.valid_checkpoints(cfg.checkpoints_dir) if world.main else iter(())
    failures: list[tuple[Path, str]] = []
    while True:
        found = world.broadcast(next(candidates, None))
        if found is None:
            break
        path = found[1]
        try:
            step, problem = load_checkpoint(path, world, tm, opt, data, cfg.train.seed), None
        except Exception as e:  # noqa: BLE001 - a listed-complete checkpoint that does not load is skipped
            step, problem = 0, f"{type(e).__name__}: {e}"
        if world.any(problem is not None):
            problem = problem or "another rank could not load it"
            log(f"warning: checkpoint {path} is complete but does not load ({problem}); trying the one before")
            failures.append((path, problem))
            continue
        if world.main:
            log(f"resumed from {path} (step {step}{f', {world.size} rank(s)' if world.sharded else ''})")
        return step, path
    if failures:
        raise CheckpointLoadError(cfg.checkpoints_dir, failures)
    return 0, None


def run(cfg: Config, fence: Fence, stop: StopFlag | None = None, publish: bool = True, world: World | None = None,
        recompute_all: bool = False) -> int:
    """Trains; returns the exit code. `fence` (fence.py) has claimed the run for this attempt. `world`: this rank
    of a sharded run (distributed.py); a single process without one. `recompute_all`: every layer recomputes its
    activations from the start (the launcher's second start of ranks whose first step ran out of memory).
    publish=False (benchmarks): the same steps and events, but nothing is written (no base/, checkpoints or final/)."""
    stop = stop or StopFlag().install()
    world = world or World()
    device = world.device() if world.sharded else pick_device()
    manifest = load_manifest(cfg)
    train_shard, val_shard = open_shards(cfg)

    seed_everything(cfg.train.seed)
    metrics = Metrics(cfg) if publish and world.main else None  # before the model: a tracker that cannot start fails at once
    tm, recompute = prepare_model(cfg, manifest, device, fence, world, keep_base=publish and world.main, recompute_all=recompute_all)

    # One optimizer step takes per_rank batches on every rank, in the order of one shared seeded plan.
    data = DataOrder(train_shard, cfg.train.batch_tokens, cfg.train.seed)
    per_rank = batches_per_rank(cfg, world)
    steps = total_steps(cfg, data.batches_per_epoch, per_rank * world.size)
    opt = build_optimizer(cfg, tm, steps, warmup_steps(cfg, steps), world)

    step, resumed_from = resume(cfg, world, tm, opt, data) if publish else (0, None)
    if metrics is not None:
        metrics.start(step, resumed_from)
    if world.speaks:
        emit_start(steps, step, world.size)
    events = StepEvents(device, deferred=cfg.train.step_sync == "deferred", metrics=metrics, world=world)
    checkpoints = Checkpoints(cfg, fence, world, tm, opt, data)
    ending = Ending(stop, publish, world, events, checkpoints, metrics, start_step=step)

    while step < steps:
        docs = [data.next_docs() for _ in range(per_rank * world.size)]
        loss_tokens = sum(data.loss_tokens(d) for d in docs)
        loss_sum, grad_norm = optimizer_step(cfg, tm, opt, recompute, device, world, train_shard, docs, loss_tokens)
        step += 1
        events.add(step, loss_sum, loss_tokens, opt.scheduler.get_last_lr()[0], grad_norm, sum(data.tokens(d) for d in docs))
        if cfg.eval.every and step % cfg.eval.every == 0 and step < steps:
            events.flush()
            val = evaluate(tm, val_shard, cfg.train.batch_tokens, device)  # this step's: kept with its checkpoint
            if val is not None:
                events.eval(step, val)
            events.restart_clock()
        if not publish:
            continue
        checkpoints.poll()
        if ending.stopping():
            return ending.preempted(step, "")
        if step % cfg.train.checkpoint_every == 0 and step < steps:
            events.flush()
            checkpoints.save(step, background=True)
            events.restart_clock()

    events.flush()
    if not publish:
        return EXIT_DONE
    return finish(cfg, manifest, tm, fence, world, opt, val_shard, device, step, ending)


def batches_per_rank(cfg: Config, world: World) -> int:
    """Batches each rank takes per optimizer step: train.json's `step_batches` shared by the ranks (a run started or
    resumed on another GPU count trains the same global batch: an elastic run), or train.grad_accum when absent."""
    if cfg.step_batches is None:
        return cfg.train.grad_accum
    if cfg.step_batches % world.size:
        raise ConfigError(f"step_batches {cfg.step_batches} cannot be shared equally by {world.size} ranks: start the run "
                          "on a GPU count that divides it (resources.min_gpus and resources.gpus give the counts)")
    return cfg.step_batches // world.size


def open_shards(cfg: Config) -> tuple[Shard, Shard | None]:
    """The train split (not empty, every document within train.batch_tokens) and the val split, if any."""
    train_shard = Shard(cfg.shards["train"])
    if len(train_shard) == 0:
        raise DataError(f"{cfg.shards['train']}: the train split has no documents")
    longest = int(train_shard.lengths().max())
    if longest > cfg.train.batch_tokens:
        raise DataError(f"a train document has {longest} tokens, more than train.batch_tokens {cfg.train.batch_tokens}")
    return train_shard, Shard(cfg.shards["val"]) if cfg.shards.get("val") else None


def prepare_model(cfg: Config, manifest: Any, device: torch.device, fence: Fence, world: World, keep_base: bool,
                  recompute_all: bool) -> tuple[Any, Recompute]:
    """The model to train: built (LoRA or full, behavior-token rows), compiled per layer if asked, sharded over the
    ranks (FSDP2) when there are several, in training mode; and which of its layers recompute their activations."""
    from ..modeling.model import build as build_model, compile_layers, resolve_dtype

    tm = build_model(cfg, manifest, device, fence, keep_base=keep_base, sharded=world.sharded)
    n_layers = len(tm.layers)
    recompute = Recompute(cfg, tm, device, world, all_layers=recompute_all)
    if cfg.train.compile:
        compile_layers(tm)
        log(f"torch.compile: each of the {n_layers} decoder layers (regional)")
    if world.sharded:
        from ..parallel.sharding import shard

        shard(tm, resolve_dtype(cfg.model.dtype, device), cfg.train.cpu_offload)
        if tm.fill is not None:  # built on the meta device: each rank fills its own shard (materialize.py)
            from ..modeling.materialize import materialize

            materialize(tm, tm.fill, device, torch.device("cpu") if cfg.train.cpu_offload else device)
        log(f"FSDP2: {n_layers} decoder layers and the root sharded over {world.size} rank(s)"
            f"{', offloaded to host memory' if cfg.train.cpu_offload else ''}")
    tm.train(True)
    return tm, recompute


def optimizer_step(cfg: Config, tm: Any, opt: Optimizer, recompute: Recompute, device: torch.device, world: World,
                   train_shard: Shard, docs: list, loss_tokens: int) -> tuple[torch.Tensor, torch.Tensor]:
    """One optimizer step over the step's documents (`docs`: every rank's batches, `loss_tokens` in all; this rank
    takes its block): forward and backward of each batch (again with every layer recomputed when the first step runs
    out of memory), gradients clipped, AdamW on the fp32 masters. Returns the summed loss and the gradient norm, on
    the device."""
    per_rank = len(docs) // world.size
    micro = [make_batch(train_shard, d) for d in docs[world.rank * per_rank:(world.rank + 1) * per_rank]]
    # Sharded gradients are averaged over the ranks: each rank's share is scaled back up by the world size.
    divisor = max(1, loss_tokens) / world.size
    recompute.before_step()
    try:
        loss_sum = forward_backward(tm, micro, device, divisor)
    except RuntimeError as e:
        if not recompute.retries(e):
            raise
        retry = True
    else:
        retry = False
    if retry:  # outside the except block, which holds the failed step's tensors
        opt.masters.zero_grad()
        torch.cuda.empty_cache()
        recompute.apply(len(tm.layers))
        loss_sum = forward_backward(tm, micro, device, divisor)
    opt.masters.grads_to_masters()
    grad_norm = full_value(torch.nn.utils.clip_grad_norm_(opt.masters.parameters(), cfg.train.grad_clip))
    opt.optimizer.step()
    opt.scheduler.step()
    opt.masters.masters_to_model()
    opt.masters.zero_grad()
    recompute.after_step()
    return loss_sum, grad_norm


class Ending:
    """How a run stops early: every rank agrees on a stop request (SIGTERM/SIGINT) at the same point; a preempted
    run writes the checkpoint of the step it reached (unless it resumed there and trained nothing) and exits 75,
    saying how long after the request it got there."""

    def __init__(self, stop: StopFlag, publish: bool, world: World, events: StepEvents, checkpoints: Checkpoints,
                 metrics: Metrics | None, start_step: int):
        self.stop, self.publish, self.world, self.events = stop, publish, world, events
        self.checkpoints, self.metrics, self.start_step = checkpoints, metrics, start_step

    def stopping(self) -> bool:
        return self.publish and self.world.any(self.stop.signal is not None)  # every rank stops at the same point

    def since_request(self) -> str:
        return f"{time.monotonic() - self.stop.at:.1f} s after the stop request was handled" if self.stop.at is not None else ""

    def preempted(self, step: int, why: str) -> int:
        self.events.flush()
        if step > self.start_step:  # (a run resumed at its last step has that checkpoint already)
            self.checkpoints.save(step)
        if self.metrics is not None:
            self.metrics.close()
        log(f"preempted at step {step}{why}: checkpoint written, exiting {EXIT_PREEMPTED} ({self.since_request()})")
        return EXIT_PREEMPTED


def finish(cfg: Config, manifest: Any, tm: Any, fence: Fence, world: World, opt: Optimizer, val_shard: Shard | None,
           device: torch.device, step: int, ending: Ending) -> int:
    """After the last step: the final evaluation, the last step's checkpoint, then final/. A stop request ends the
    attempt with the checkpoint on disk (the next attempt resumes at the last step, trains nothing and writes
    final/): at once before final/, after the part of final/ in hand while it is written (one process). Each part's
    seconds are logged."""
    took: dict[str, float] = {}
    t = time.monotonic()
    # A stop request after the last step ends with its checkpoint on disk, at once: the final evaluation and final/
    # are the next attempt's.
    if ending.stopping():
        return ending.preempted(step, " (stop requested after the last step, before the final evaluation)")
    val = evaluate(tm, val_shard, cfg.train.batch_tokens, device, ending.stopping)
    if val is None and ending.stopping():
        return ending.preempted(step, " (stop requested after the last step, during the final evaluation)")
    if val is not None:
        ending.events.eval(step, val)
    took["evaluation"], t = time.monotonic() - t, time.monotonic()
    if ending.metrics is not None:
        ending.metrics.close()
    if step > ending.start_step:
        ending.checkpoints.save(step)
    took["checkpoint"], t = time.monotonic() - t, time.monotonic()
    if ending.stopping():
        log(f"stop requested after the last step: its checkpoint is written, final/ is the next attempt's; exiting "
            f"{EXIT_PREEMPTED} ({ending.since_request()})")
        return EXIT_PREEMPTED
    from ..checkpoints.save import FinalAbandoned, save_final

    try:
        # One process asks between final/'s parts (a sharded run's ranks cannot: rank 0 writes while the others wait).
        final = save_final(cfg, manifest, tm, fence, world, masters=opt.masters.state(),
                           stopping=(lambda: False) if world.sharded else ending.stopping)
    except FinalAbandoned as e:
        log(f"stop requested while final/ was written (after {e}): left to the next attempt, which resumes at the last "
            f"step and writes it; exiting {EXIT_PREEMPTED} ({ending.since_request()})")
        return EXIT_PREEMPTED
    took["final/"] = time.monotonic() - t
    if world.main:
        warn_over_half_grace(cfg, "final/", took["final/"], "a stop while it is written could be cut short")
        parts = ", ".join(f"{k} {v:.1f} s" for k, v in took.items())
        log(f"after the last step: {parts}" + (f"; a stop requested during final/'s last part waited for it: exiting {ending.since_request()}" if ending.stop.at is not None else ""))
    if world.speaks:  # the other machines' first ranks too: rank 0 wrote final/ (on the run's shared folder)
        emit_done(str(final) if final is not None else cfg.final_dir)
    return EXIT_DONE


def forward_backward(tm: Any, micro: list, device: torch.device, divisor: float) -> torch.Tensor:
    """Forward and backward of this process's micro-batches of one optimizer step, each batch's summed loss divided
    by `divisor` (the step's loss tokens). Returns the summed loss on the device, unread."""
    pin = device.type == "cuda"
    loss_sum = torch.zeros((), device=device)
    for batch in micro:
        batch = (batch.pin_memory() if pin else batch).to(device, non_blocking=pin)
        loss = tm.loss_sum(batch)
        (loss / divisor).backward()
        loss_sum += loss.detach()
    return loss_sum
