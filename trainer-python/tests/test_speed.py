"""The trainer's speed and memory switches, on the CPU: each gives the plain path's losses and gradients.

- `activation_checkpointing: auto` decides from the first step's measured memory (a fake device memory here),
  and recomputes only as many layers as needed;
- `step_sync: deferred` emits the same step events as `every_step`;
- `compile: true` (regional torch.compile) gives the eager losses;
- fp32 master weights keep small updates of bf16 parameters (precision.py);
- a CUDA out-of-memory error is a config error (exit 2) that names what to change.
"""
import json
import shutil
from pathlib import Path

import pytest
import torch

from bsft_trainer.data import config as config_mod
from bsft_trainer.training import memory, train
from bsft_trainer.process.fence import Fence
from bsft_trainer.training.precision import CompensatedAdamW, MasterWeights
from conftest import events_of, main_with, make_run

ROOT = Path(__file__).resolve().parents[2]


def _steps(events):
    return [(e["step"], e["loss"], e["grad_norm"]) for e in events if e["event"] == "step"]


def _train_in_process(cfg_path, capsys):
    cfg = config_mod.load(str(cfg_path))
    fence = Fence(cfg.output_dir, None)
    fence.claim()
    capsys.readouterr()
    code = train.run(cfg, fence)
    out, err = capsys.readouterr()
    assert code == 0, err
    return events_of(out), err


class FakeMemory:
    """A device whose first step peaks at `peak` bytes with `static` bytes kept between steps, and `budget` usable."""

    def __init__(self, peak, static, budget):
        self.values = (peak, static, budget)
        self.resets = 0

    def reset_peak(self):
        self.resets += 1

    def peak(self):
        return self.values[0]

    def allocated(self):
        return self.values[1]

    def budget(self):
        return self.values[2]


def test_layers_to_recompute_follows_the_measured_peak():
    gib = 2**30
    assert memory.layers_to_recompute(peak=70 * gib, static=20 * gib, budget=80 * gib, n_layers=28) == 0
    # 50 GiB of step memory over 28 layers; 10 GiB over budget -> ceil(1.25 * 10 / (50 / 28)) = 7 layers
    assert memory.layers_to_recompute(peak=90 * gib, static=40 * gib, budget=80 * gib, n_layers=28) == 7
    assert memory.layers_to_recompute(peak=300 * gib, static=40 * gib, budget=80 * gib, n_layers=28) == 28


@pytest.mark.parametrize("peak,expected", [(10 * 2**30, 1), (7 * 2**30, 0)])
def test_auto_checkpointing_decides_after_the_first_step_from_measured_memory(tmp_path, capsys, monkeypatch, peak, expected):
    """The decision is taken once, after step 1 (its peak includes the optimizer states step 1 allocated), and the
    recomputed layers give the same losses as none."""
    fake = FakeMemory(peak=peak, static=2 * 2**30, budget=8 * 2**30)
    monkeypatch.setattr(memory, "probe", lambda device: fake)
    events, err = _train_in_process(make_run(tmp_path / "auto", train={"max_steps": 4}), capsys)
    state = f"on for {expected} of 2 layers" if expected else "off"
    assert f"activation checkpointing: {state} (first step peaked at {peak / 2**30:.1f} GiB" in err, err
    assert fake.resets == 1
    monkeypatch.setattr(memory, "probe", lambda device: None)
    plain, _ = _train_in_process(make_run(tmp_path / "plain", train={"max_steps": 4, "activation_checkpointing": False}), capsys)
    for (s1, l1, g1), (s2, l2, g2) in zip(_steps(events), _steps(plain), strict=True):
        assert s1 == s2 and l1 == pytest.approx(l2, rel=1e-6) and g1 == pytest.approx(g2, rel=1e-5)


def _with_plan(cfg_path, gpus, peaks):
    values = json.loads(cfg_path.read_text())
    values["memory_plan"] = {"gpus": gpus, "peak_bytes": peaks}
    cfg_path.write_text(json.dumps(values))
    return cfg_path


def test_auto_checkpointing_follows_the_memory_plan_before_step_1(tmp_path, capsys, monkeypatch):
    """The plan needs 10 GiB without recomputation, 7 GiB with one of the two layers recomputed; the budget is 8 GiB:
    one layer recomputes from step 1 on and nothing is measured. A plan for another GPU count is not used."""
    gib = 2**30
    fake = FakeMemory(peak=10 * gib, static=2 * gib, budget=8 * gib)
    monkeypatch.setattr(memory, "probe", lambda device: fake)
    events, err = _train_in_process(_with_plan(make_run(tmp_path / "plan", train={"max_steps": 4}), 1, [10 * gib, 7 * gib, 5 * gib]), capsys)
    assert ("activation checkpointing: on for 1 of 2 layers (before step 1: the memory plan needs 10.0 GiB per GPU "
            "without it, 7.0 GiB with it; budget 8.0 GiB)") in err, err
    assert fake.resets == 0 and "first step peaked" not in err
    plain, _ = _train_in_process(make_run(tmp_path / "plain", train={"max_steps": 4, "activation_checkpointing": False}), capsys)
    assert _steps(events) == pytest.approx(_steps(plain), rel=1e-5)
    _, err = _train_in_process(_with_plan(make_run(tmp_path / "other", train={"max_steps": 2}), 4, [10 * gib, 7 * gib, 5 * gib]), capsys)
    assert "before step 1" not in err and "on for 1 of 2 layers (first step peaked at 10.0 GiB" in err and fake.resets == 1


def test_the_trainers_auto_decision_is_the_plans(tmp_path):
    """memory.planned_recompute and the orchestrator's recomputeToFit (recipe/memory-plan.ts) on the same cases
    (orchestrator/test/fixtures/recompute-cases.json, which the orchestrator's suite checks too)."""
    from bsft_trainer.data.config import MemoryPlan

    cases = json.loads((ROOT / "orchestrator" / "test" / "fixtures" / "recompute-cases.json").read_text())
    assert len(cases) >= 4
    for case in cases:
        plan = MemoryPlan(gpus=1, peak_bytes=case["peaks"])
        assert memory.planned_recompute(plan, case["budget"], 1, len(case["peaks"]) - 1) == case["recomputed"], case
    plan = MemoryPlan(gpus=1, peak_bytes=[3, 2, 1])
    assert memory.planned_recompute(plan, 2, 2, 2) is None and memory.planned_recompute(plan, 2, 1, 3) is None


def test_auto_checkpointing_retries_a_first_step_that_runs_out_of_memory(tmp_path, capsys, monkeypatch):
    fake = FakeMemory(peak=0, static=0, budget=1)
    monkeypatch.setattr(memory, "probe", lambda device: fake)
    calls = []
    real = train.forward_backward

    def oom_once(tm, micro, device, divisor):
        calls.append(tm.recompute)
        if len(calls) == 1:
            raise torch.cuda.OutOfMemoryError("CUDA out of memory. Tried to allocate 9.00 GiB")
        return real(tm, micro, device, divisor)

    monkeypatch.setattr(train, "forward_backward", oom_once)
    monkeypatch.setattr(torch.cuda, "empty_cache", lambda: None)
    events, err = _train_in_process(make_run(tmp_path, train={"max_steps": 3}), capsys)
    assert "retrying it with all 2 layers recomputed" in err
    assert calls == [0, 2, 2, 2] and [s for s, _, _ in _steps(events)] == [1, 2, 3]


def test_deferred_step_events_equal_immediate_ones_and_come_before_checkpoints(tmp_path, capsys):
    runs = {}
    for mode in ("deferred", "every_step"):
        events, _ = _train_in_process(make_run(tmp_path / mode, train={"max_steps": 6, "checkpoint_every": 2,
                                                                        "step_sync": mode}, eval_={"every": 3}), capsys)
        runs[mode] = events
        order = [(e["event"], e.get("step")) for e in events if e["event"] in ("step", "checkpoint", "eval")]
        for kind, step in order:
            if kind != "step":  # an eval or checkpoint of step N comes after step N's event
                assert order.index(("step", step)) < order.index((kind, step)), order
    assert _steps(runs["deferred"]) == _steps(runs["every_step"])


def test_regional_compile_gives_the_eager_losses(tmp_path, capsys):
    pytest.importorskip("torch._inductor")
    if shutil.which("cc") is None and shutil.which("gcc") is None:
        pytest.skip("torch.compile's CPU backend needs a C compiler")
    compiled, err = _train_in_process(make_run(tmp_path / "c", train={"max_steps": 3, "compile": True}), capsys)
    assert "torch.compile: each of the 2 decoder layers" in err
    eager, _ = _train_in_process(make_run(tmp_path / "e", train={"max_steps": 3}), capsys)
    for (s1, l1, g1), (s2, l2, g2) in zip(_steps(compiled), _steps(eager), strict=True):
        assert s1 == s2 and l1 == pytest.approx(l2, rel=1e-4) and g1 == pytest.approx(g2, rel=1e-3)


def _adam_updates(use_masters, steps=20, lr=1e-5, compensated=False):
    torch.manual_seed(0)
    p = torch.nn.Parameter((torch.randn(256, 256) * 0.02).bfloat16())
    start = p.detach().clone()
    masters = MasterWeights([("w", p)]) if use_masters else None
    params = masters.parameters() if masters else [p]
    opt = CompensatedAdamW(params, lr=lr) if compensated else torch.optim.AdamW(params, lr=lr, weight_decay=0.0)
    ref = torch.nn.Parameter(start.double())  # the exact update, in fp64
    ref_opt = torch.optim.AdamW([ref], lr=lr, weight_decay=0.0)
    g = torch.Generator().manual_seed(1)
    for _ in range(steps):
        grad = torch.randn(256, 256, generator=g) * 1e-3
        p.grad = grad.bfloat16()
        ref.grad = grad.bfloat16().double()
        if masters:
            masters.grads_to_masters()
        opt.step()
        ref_opt.step()
        if masters:
            masters.masters_to_model()
    weights = masters.masters[0] if masters else p
    if compensated:  # what the optimizer holds: the bf16 weight plus the update it has not applied yet
        weights = p.detach().double() + opt.state[p]["compensation"].double()
    delta, ref_delta = (weights.detach().double() - start.double()).flatten(), (ref.detach() - start.double()).flatten()
    changed = float((p.detach() != start).float().mean())
    cosine = float(torch.nn.functional.cosine_similarity(delta, ref_delta, dim=0))
    return changed, cosine


def test_fp32_master_weights_keep_small_updates_of_bf16_parameters():
    plain_changed, plain_cos = _adam_updates(use_masters=False)
    changed, cos = _adam_updates(use_masters=True)
    # Measured: with masters about half of the bf16 elements have moved after 20 steps (the masters' update has
    # cosine 1.000 to the fp64 one); plain bf16 AdamW moves 15% of them, in a direction of cosine ~0.5.
    assert cos >= 0.99, cos
    assert changed > 0.4 and changed > 2 * plain_changed, (changed, plain_changed)
    assert plain_cos < 0.9, plain_cos  # plain bf16 AdamW loses most of it: the check has teeth


def test_compensated_bf16_adamw_keeps_small_updates_without_fp32_copies():
    plain_changed, _ = _adam_updates(use_masters=False)
    changed, cos = _adam_updates(use_masters=False, compensated=True)
    # Measured: cosine 0.9999 to the fp64 update, and as many bf16 elements move as with fp32 masters.
    assert cos >= 0.99, cos
    assert changed > 0.4 and changed > 2 * plain_changed, (changed, plain_changed)


def test_cuda_out_of_memory_is_a_config_error_naming_what_to_change(tmp_path):
    cfg = make_run(tmp_path, train={"batch_tokens": 256})
    code, events, err = main_with(
        "import torch\nfrom bsft_trainer.training import train\n"
        "def run(*a, **k):\n    raise torch.cuda.OutOfMemoryError('CUDA out of memory. Tried to allocate 9.00 GiB')\n"
        "train.run = run", "train", cfg)
    assert code == 2, err
    (event,) = events
    assert event["event"] == "error" and event["kind"] == "oom"
    assert "train.batch_tokens (256)" in event["message"] and "train.activation_checkpointing" in event["message"]
    assert "Tried to allocate 9.00 GiB" in event["message"]
