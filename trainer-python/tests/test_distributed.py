"""Sharded training with 2 ranks on the CPU (torchrun, gloo, FSDP2, DCP): the same update as one process over the
same global batch, preemption, a killed rank, resumes across world sizes and half-written sharded checkpoints.

Skipped (and counted) where torch has no FSDP2 (Debian's torch 1.13)."""
import importlib.util
import json
import os
import shutil
import signal
import subprocess
from pathlib import Path

import pytest
import torch

from bsft_trainer.checkpoints import checkpoint as ckpt
from bsft_trainer.parallel.distributed import available
from bsft_trainer.parallel.launch import combined_exit
from conftest import SRC, events_of, limit, make_run, sigterm_at, trainer, wait_gone

pytestmark = pytest.mark.skipif(available() is not None, reason=str(available()))
HAVE_HF = all(importlib.util.find_spec(m) is not None for m in ("transformers", "peft", "safetensors"))


def _finish(p, timeout=limit(600)):
    out, err = p.communicate(timeout=timeout)
    return p.returncode, events_of(out), err


def _ranks(cfg, n=2):
    return trainer("train", cfg, "--nproc-per-node", str(n))


def _steps(events):
    return {e["step"]: (e["loss"], e["grad_norm"]) for e in events if e["event"] == "step"}


def _same_steps(a, b, rel=1e-5, grad_rel=1e-4):
    assert sorted(a) == sorted(b)
    for s in a:
        assert b[s][0] == pytest.approx(a[s][0], rel=rel), (s, a[s], b[s])
        assert b[s][1] == pytest.approx(a[s][1], rel=grad_rel), (s, a[s], b[s])


def _same_weights(a: dict, b: dict):
    """fp32 weights of two runs that summed the same numbers in another order: the whole model within 1e-5
    relative, and each tensor within 1e-4 (Adam divides by the root of the squared gradients: an element whose
    gradient is near zero moves by a different sign; measured 6e-5 on a zero-initialised bias of the tiny Qwen2).
    Exempt per tensor: the key projection's bias, whose gradient is zero in exact arithmetic (a softmax does not
    change when one constant is added to every score of a query): both runs' updates of it are rounding noise."""
    assert a.keys() == b.keys()
    diff = total = 0.0
    for k in a:
        x, y = a[k].double(), b[k].double()
        d, n = float((y - x).norm()), float(x.norm())
        assert d <= 1e-4 * n + 1e-9 or k.endswith("k_proj.bias"), (k, d, n)
        diff, total = diff + d * d, total + n * n
    assert diff ** 0.5 <= 1e-5 * total ** 0.5, (diff ** 0.5, total ** 0.5)


def _toy(tmp, **train):
    return make_run(tmp, train={"max_steps": 8, "checkpoint_every": 4, "keep_checkpoints": 3, **train})


def _weights(final):
    return torch.load(final / "toy_model.pt", map_location="cpu")


def test_two_ranks_give_the_update_of_one_process_over_the_same_global_batch(tmp_path):
    code, one, err = _finish(trainer("train", _toy(tmp_path / "one", grad_accum=2)))
    assert code == 0, err
    code, two, err = _finish(_ranks(_toy(tmp_path / "two", grad_accum=1)))
    assert code == 0, err
    assert two[0] == {"event": "start", "total_steps": 8, "resumed_from_step": 0, "world_size": 2}
    assert [e["event"] for e in two].count("done") == 1  # rank 0 alone speaks
    _same_steps(_steps(one), _steps(two))
    checkpoints = [e for e in two if e["event"] == "checkpoint"]
    assert [e["step"] for e in checkpoints] == [4, 8] and all(e["size_bytes"] > 0 and e["save_s"] >= 0 for e in checkpoints)
    newest = tmp_path / "two" / "checkpoints" / "step-000008"
    assert ckpt.verify(newest) is None and (newest / "dcp" / "__1_0.distcp").is_file()
    assert ckpt.read_complete(newest)["world_size"] == 2
    _same_weights(_weights(tmp_path / "one" / "final"), _weights(tmp_path / "two" / "final"))  # consolidated, as from one process


def _free_port() -> int:
    import socket

    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def test_two_machines_of_one_rank_each_give_the_update_of_one_process_and_both_report_it(tmp_path):
    """Two launchers as two machines (BSFT_TORCHRUN_ARGS: c10d rendezvous, 2 nodes, one GPU each, as the queue starts
    a run across machines): torchrun starts with one process each; both launchers report every step (each machine's
    first rank speaks), with the one-process run's losses; rank 0 alone writes final/."""
    code, one, err = _finish(trainer("train", _toy(tmp_path / "one", grad_accum=2)))
    assert code == 0, err
    cfg = _toy(tmp_path / "two", grad_accum=1)
    args = f"--nnodes 2 --rdzv-backend c10d --rdzv-endpoint 127.0.0.1:{_free_port()} --rdzv-id two-machines"
    # One fencing epoch for the run's machines (the queue gives each the gang's); without it each takes the next.
    machines = [trainer("train", cfg, "--epoch", "1", env={"BSFT_TORCHRUN_ARGS": f"{args} --rdzv-conf is_host={int(i == 0)}"})
                for i in range(2)]
    ended = [_finish(p) for p in machines]
    for code, events, err in ended:
        assert code == 0, err
        assert events[0] == {"event": "start", "total_steps": 8, "resumed_from_step": 0, "world_size": 2}
        _same_steps(_steps(one), _steps(events))
        assert [e["step"] for e in events if e["event"] == "checkpoint"] == [4, 8]
        assert [e for e in events if e["event"] == "done"] == [{"event": "done", "final_path": str(tmp_path / "two" / "final")}]
    _same_weights(_weights(tmp_path / "one" / "final"), _weights(tmp_path / "two" / "final"))


def test_sigterm_writes_a_sharded_checkpoint_exits_75_and_resumes_on_one_process_then_two(tmp_path):
    code, straight, err = _finish(trainer("train", _toy(tmp_path / "straight", max_steps=12, grad_accum=2, checkpoint_every=100)))
    assert code == 0, err
    cfg = _toy(tmp_path / "run", max_steps=12, grad_accum=1, checkpoint_every=100)
    code, first, err = sigterm_at(cfg, "step", 3, "--nproc-per-node", "2")  # 2 ranks, stopped
    assert code == 75, err
    stopped = [e for e in first if e["event"] == "checkpoint"][-1]["step"]
    assert ckpt.read_complete(tmp_path / "run" / "checkpoints" / ckpt.step_dir_name(stopped))["world_size"] == 2

    # 2 -> 1: one process, two micro-batches a step; the sharded checkpoint is resharded onto it.
    one = json.loads(cfg.read_text())
    one["train"]["grad_accum"] = 2
    cfg.write_text(json.dumps(one))
    code, second, err = sigterm_at(cfg, "step", stopped + 3)
    assert code == 75, err
    assert second[0]["resumed_from_step"] == stopped and second[0]["world_size"] == 1
    stopped2 = [e for e in second if e["event"] == "checkpoint"][-1]["step"]

    # 1 -> 2
    one["train"]["grad_accum"] = 1
    cfg.write_text(json.dumps(one))
    code, third, err = _finish(_ranks(cfg))
    assert code == 0, err
    assert third[0]["resumed_from_step"] == stopped2 and third[0]["world_size"] == 2
    _same_steps(_steps(straight), {**_steps(first), **_steps(second), **_steps(third)})


def test_a_plain_checkpoint_resumes_on_two_ranks(tmp_path):
    code, straight, err = _finish(trainer("train", _toy(tmp_path / "straight", grad_accum=2)))
    assert code == 0, err
    cfg = _toy(tmp_path / "run", grad_accum=2)
    code, first, err = sigterm_at(cfg, "checkpoint", 4)
    assert code == 75 and not (tmp_path / "run" / "checkpoints" / "step-000004" / "dcp").exists(), err
    plain = json.loads(cfg.read_text())
    plain["train"]["grad_accum"] = 1
    cfg.write_text(json.dumps(plain))
    code, second, err = _finish(_ranks(cfg))
    assert code == 0, err
    assert second[0]["resumed_from_step"] == [e for e in first if e["event"] == "checkpoint"][-1]["step"]
    _same_steps(_steps(straight), {**_steps(first), **_steps(second)})


def test_a_killed_rank_fails_the_run_which_then_resumes(tmp_path):
    code, straight, err = _finish(trainer("train", _toy(tmp_path / "straight", max_steps=10, grad_accum=2, checkpoint_every=2)))
    assert code == 0, err
    cfg = _toy(tmp_path / "run", max_steps=10, grad_accum=1, checkpoint_every=2)
    p = _ranks(cfg)
    seen = []
    for line in p.stdout:
        seen.append(json.loads(line))
        if seen[-1]["event"] == "checkpoint" and seen[-1]["step"] == 4:
            os.kill(int(next((tmp_path / "run" / "ranks").glob("*/rank-00001.pid")).read_text()), signal.SIGKILL)
            break
    code, rest, err = _finish(p)
    assert code not in (0, 2, 75, 76), err  # a retryable failure
    assert rest and rest[-1]["event"] == "error" and "rank 1" in rest[-1]["message"], rest[-1:]
    code, resumed, err = _finish(_ranks(cfg))
    assert code == 0, err
    assert resumed[0]["resumed_from_step"] >= 4
    _same_steps(_steps(straight), {**_steps(seen + rest), **_steps(resumed)})


def test_a_sharded_checkpoint_missing_one_ranks_files_is_never_resumed(tmp_path):
    cfg = _toy(tmp_path, max_steps=12, checkpoint_every=2, keep_checkpoints=5)
    code, events, err = sigterm_at(cfg, "checkpoint", 4, "--nproc-per-node", "2")
    assert code == 75, err
    newest = ckpt.latest_complete(tmp_path / "checkpoints")
    (newest / "dcp" / "__1_0.distcp").unlink()  # one rank's shards gone
    half = tmp_path / "checkpoints" / "step-000099.tmp"  # a save that never finished
    half.mkdir()
    (half / "dcp").mkdir()
    code, resumed, err = _finish(_ranks(cfg))
    assert code == 0, err
    assert resumed[0]["resumed_from_step"] < int(newest.name.split("-")[1]), resumed[0]
    assert "skipping checkpoint" in err and "__1_0.distcp is missing" in err


def test_when_the_launchers_lease_ends_every_rank_ends_with_it(tmp_path):
    cfg = _toy(tmp_path, max_steps=100000, checkpoint_every=100000)
    p = trainer("train", cfg, "--nproc-per-node", "2", "--lease-s", "30", stdin=subprocess.PIPE)
    for line in p.stdout:
        if json.loads(line)["event"] == "step":
            break
    pids = [int(f.read_text()) for f in sorted((tmp_path / "ranks").glob("*/rank-*.pid"))]
    assert len(pids) == 2
    p.stdin.close()  # the worker is gone: end of stdin
    assert p.wait(timeout=limit(60)) == 76
    assert all(wait_gone(pid, 20) for pid in pids)
    p.stdout.close()
    p.stderr.close()


def test_a_relaunch_asked_just_before_torchrun_exits_is_not_lost(tmp_path, monkeypatch):
    """A rank asks for a relaunch with every layer recomputed and torchrun ends within the launcher's poll interval
    (a fake torchrun writes both ranks' reports and exits at once): the request is read from the final reports, so
    the ranks are started again instead of the attempt failing."""
    import sys

    from bsft_trainer.process import events
    from bsft_trainer.parallel import launch

    starts, real_popen = [], subprocess.Popen

    def fake_torchrun(cmd, **kwargs):
        starts.append(cmd)
        rank_dir = cmd[cmd.index("--rank-dir") + 1]
        script = (f"from pathlib import Path\nfrom bsft_trainer.parallel.launch import record_exit\nd = Path({rank_dir!r})\n"
                  "record_exit(d, 0, 0, 1, ('oom', 'out of memory'), 'recompute_all')\nrecord_exit(d, 1, 1, 1, ('internal', 'peer gone'))\n")
        return real_popen([sys.executable, "-c", script], env={**os.environ, "PYTHONPATH": str(SRC)},
                                stdin=subprocess.DEVNULL, start_new_session=True)

    monkeypatch.setattr(launch.subprocess, "Popen", fake_torchrun)
    monkeypatch.setattr(events, "_events", open(os.devnull, "w"))
    for trial in range(5):  # the request must never be lost, whatever the timing
        code, failure, relaunch = launch._run_ranks("train.json", str(tmp_path), 2, 1, [], [], {})
        assert relaunch == "recompute_all", (trial, code, failure)
    assert len(starts) == 5


def test_the_launcher_exit_code_follows_the_ranks():
    ok, pre, bad, lost = {"exit": 0}, {"exit": 75}, {"rank": 1, "exit": 2, "kind": "data", "message": "bad"}, {"exit": 76}
    assert combined_exit({0: ok, 1: ok}, 2) == (0, None)
    assert combined_exit({0: pre, 1: pre}, 2) == (75, None)
    assert combined_exit({0: ok, 1: bad}, 2) == (2, {**bad, "local_rank": 1})
    on_second_machine = {"rank": 9, "exit": 1, "kind": "internal", "message": "x"}
    # named by its global rank; its local rank tells the launcher whether it wrote its own error event (local rank 0)
    assert combined_exit({0: ok, 1: on_second_machine}, 2) == (1, {**on_second_machine, "local_rank": 1})
    assert combined_exit({0: lost, 1: pre}, 2)[0] == 76
    code, failure = combined_exit({0: pre}, 2)  # rank 1 was killed: no report
    assert code == 1 and failure["rank"] == 1 and "killed" in failure["message"] and failure["unreported"]
    code, failure = combined_exit({0: {"exit": 1, "kind": "internal", "message": "Connection reset by peer"}}, 2)
    assert code == 1 and failure["rank"] == 1  # the killed rank is the cause, not the one that lost its peer


@pytest.mark.hf
@pytest.mark.skipif(not HAVE_HF, reason="needs transformers, peft and safetensors")
# LoRA without recomputation on two ranks is the LoRA resume test's (1->2->2->1 ranks against one process).
@pytest.mark.parametrize("method,recompute", [("full", False), ("lora", True)])
def test_tiny_qwen2_on_two_ranks_matches_one_process(tmp_path, method, recompute):
    from safetensors.torch import load_file
    from test_hf import TINY, TOKENIZER

    def cfg(d, accum, checkpointing=False):
        return make_run(d, qwen=True, model_dir=TINY, tokenizer=TOKENIZER, n_train=48,
                        train={"method": method, "lr": 1e-3, "max_steps": 4, "checkpoint_every": 2, "batch_tokens": 512,
                               "grad_accum": accum, "lora": {"dropout": 0.0}, "activation_checkpointing": checkpointing},
                        eval_={"max_new_tokens": 2})

    code, one, err = _finish(trainer("train", cfg(tmp_path / "one", 2)))
    assert code == 0, err
    # Recomputed layers gather their shards again in backward: the same update.
    code, two, err = _finish(_ranks(cfg(tmp_path / "two", 1, recompute)))
    assert code == 0, err
    assert ("activation checkpointing: on" in err) == recompute
    _same_steps(_steps(one), _steps(two))
    name = "adapter_model.safetensors" if method == "lora" else "model.safetensors"
    _same_weights(load_file(tmp_path / "one" / "final" / name), load_file(tmp_path / "two" / "final" / name))
    if method == "lora":
        rows_a = load_file(tmp_path / "one" / "final" / "behavior_rows.safetensors")
        rows_b = load_file(tmp_path / "two" / "final" / "behavior_rows.safetensors")
        _same_weights(rows_a, rows_b)


def _tiny_qwen(d, method, accum, **train):
    from test_hf import TINY, TOKENIZER

    return make_run(d, qwen=True, model_dir=TINY, tokenizer=TOKENIZER, n_train=48,
                    train={"method": method, "lr": 1e-3, "max_steps": 8, "checkpoint_every": 100, "batch_tokens": 512,
                           "grad_accum": accum, "lora": {"dropout": 0.0}, **train},
                    eval_={"max_new_tokens": 2})


def _set_accum(cfg, accum):
    c = json.loads(cfg.read_text())
    c["train"]["grad_accum"] = accum
    cfg.write_text(json.dumps(c))


@pytest.mark.hf
@pytest.mark.skipif(not HAVE_HF, reason="needs transformers, peft and safetensors")
def test_a_lora_run_resumes_1_to_2_to_2_to_1_ranks_as_a_straight_run(tmp_path):
    """A LoRA checkpoint holds the adapters, behavior rows and their optimizer states, not the frozen base (it comes
    from the model): a plain checkpoint loads on 2 ranks, a sharded one on as many ranks as wrote it and on one
    process, each continuing the straight run's steps."""
    from safetensors.torch import load_file

    code, straight, err = _finish(trainer("train", _tiny_qwen(tmp_path / "straight", "lora", 2, max_steps=12)))
    assert code == 0, err
    cfg = _tiny_qwen(tmp_path / "run", "lora", 2, max_steps=12)
    seen, resumed_from, stopped_at = {}, [], [0]
    # Each attempt trains 2-3 steps: enough for a checkpoint to be written, resumed and continued.
    for ranks, stop_at in ((1, 2), (2, 5), (2, 8), (1, None)):
        _set_accum(cfg, 2 // ranks)
        extra = ("--nproc-per-node", "2") if ranks == 2 else ()
        if stop_at is None:
            code, events, err = _finish(trainer("train", cfg, *extra))
            assert code == 0, err
        else:
            code, events, err = sigterm_at(cfg, "step", stop_at, *extra)
            assert code == 75, err
            stopped_at.append([e for e in events if e["event"] == "checkpoint"][-1]["step"])
            newest = ckpt.latest_complete(tmp_path / "run" / "checkpoints")
            assert newest.name == ckpt.step_dir_name(stopped_at[-1]) and ckpt.is_sharded(newest) == (ranks == 2 or stop_at > 2)
        resumed_from.append(events[0]["resumed_from_step"])
        seen.update(_steps(events))
    assert resumed_from == stopped_at and stopped_at[-1] < 12, stopped_at
    _same_steps(_steps(straight), seen)
    for name in ("adapter_model.safetensors", "behavior_rows.safetensors"):
        _same_weights(load_file(tmp_path / "straight" / "final" / name), load_file(tmp_path / "run" / "final" / name))


def test_a_sharded_checkpoint_that_does_not_load_falls_back_and_none_loading_stops_the_run(tmp_path):
    """Complete (hashed) checkpoints whose weights do not fit the model: the ranks fall back together to the one
    before; when none loads the run stops with exit 2 (a retry elsewhere would fail the same way) and keeps them."""
    def config(d, intermediate, max_steps):
        cfg = _toy(d, max_steps=max_steps, checkpoint_every=2, keep_checkpoints=5, grad_accum=1)
        model = d / "model" / "config.json"
        model.write_text(model.read_text().replace('"intermediate_size": 64', f'"intermediate_size": {intermediate}'))
        return cfg

    for d, intermediate in (("run", 64), ("other", 96)):  # checkpoints at steps 2 and 4 of two models
        code, _, err = _finish(_ranks(config(tmp_path / d, intermediate, 4)))
        assert code == 0, err
    # The other model's step 4 in place of the run's own: the same files, hashed and complete, other shapes.
    newest = tmp_path / "run" / "checkpoints" / "step-000004"
    epoch = ckpt.epoch_of(newest)
    shutil.rmtree(newest)
    shutil.copytree(tmp_path / "other" / "checkpoints" / "step-000004", newest)
    ckpt.write_complete(newest, {"epoch": epoch, "world_size": 2})
    assert ckpt.verify(newest) is None
    cfg = config(tmp_path / "run", 64, 8)
    code, resumed, err = _finish(_ranks(cfg))
    assert code == 0, err
    assert resumed[0]["resumed_from_step"] == 2, resumed[0]
    assert "step-000004 is complete but does not load" in err

    # Now every checkpoint is another model's: exit 2, an error naming the newest, and the checkpoints are kept.
    cfg = config(tmp_path / "run", 80, 12)
    before = sorted(p.name for p in (tmp_path / "run" / "checkpoints").iterdir())
    code, failed, err = _finish(_ranks(cfg))
    assert code == 2, err
    assert failed[-1]["event"] == "error" and failed[-1]["kind"] == "config", failed[-1:]
    message = failed[-1]["message"]
    assert "none of the 4 complete checkpoint(s)" in message and "step-000008" in message and "Nothing was trained" in message
    assert sorted(p.name for p in (tmp_path / "run" / "checkpoints").iterdir()) == before


@pytest.mark.hf
@pytest.mark.skipif(not HAVE_HF, reason="needs transformers, peft and safetensors")
@pytest.mark.parametrize("method", ["full", "lora"])
def test_in_bf16_two_ranks_start_from_the_weights_of_one_process(tmp_path, method):
    """A sharded run builds the model as one process does (in the recipe's dtype), then keeps fp32 masters of those
    weights: the first step's loss is the one process's, and the next one stays within bf16's rounding (a bf16 step
    takes seconds on a CPU: two steps show both)."""
    def cfg(d, accum):
        c = _tiny_qwen(d, method, accum, max_steps=2)
        values = json.loads(c.read_text())
        values["model"]["dtype"] = "bfloat16"
        c.write_text(json.dumps(values))
        return c

    code, one, err = _finish(trainer("train", cfg(tmp_path / "one", 2)))
    assert code == 0, err
    code, two, err = _finish(_ranks(cfg(tmp_path / "two", 1)))
    assert code == 0, err
    one, two = _steps(one), _steps(two)
    # One process sums its two micro-batches' bf16 gradients in bf16, the ranks reduce theirs in fp32: the grad
    # norms differ from step 1 on, the losses from step 3 on (measured over 4 steps: losses within 5e-6, grad norms
    # within 6.4e-4 relative; before the ranks started from one process's weights, step 1's loss differed by 7e-6).
    assert two[1][0] == pytest.approx(one[1][0], rel=1e-7), (one[1], two[1])
    _same_steps(one, two, rel=1e-4, grad_rel=5e-3)


FAKE_MEMORY = Path(__file__).resolve().parent / "fake_gpu_memory"


def _with_fake_memory(tmp, spec):
    """trainer() environment whose ranks see a fake GPU memory (tests/fake_gpu_memory/sitecustomize.py)."""
    log = tmp / "fake-memory-log"
    log.mkdir(parents=True, exist_ok=True)
    return {"PYTHONPATH": f"{FAKE_MEMORY}:{SRC}", "BSFT_FAKE_MEMORY": json.dumps({**spec, "log": str(log)})}, log


def _recomputed(log, rank):
    return [json.loads(line)["recompute"] for line in (log / f"rank-{rank}.jsonl").read_text().splitlines()]


def test_auto_recomputation_on_two_ranks_follows_the_memory_plan_before_step_1(tmp_path):
    """The plan (train.json memory_plan) says the step needs 10 GB without recomputation, 7 GB with one layer of two
    recomputed; the fake GPU has a budget of 8 GB: every rank recomputes one layer from step 1 on, and the losses
    are those of the run without recomputation."""
    code, plain, err = _finish(_ranks(_toy(tmp_path / "plain", grad_accum=1, activation_checkpointing=False)))
    assert code == 0, err
    cfg = _toy(tmp_path / "auto", grad_accum=1, activation_checkpointing="auto")
    values = json.loads(cfg.read_text())
    values["memory_plan"] = {"gpus": 2, "peak_bytes": [10e9, 7e9, 5e9]}
    cfg.write_text(json.dumps(values))
    env, log = _with_fake_memory(tmp_path, {"budget": 8e9, "peak": 0, "static": 0})
    code, auto, err = _finish(trainer("train", cfg, "--nproc-per-node", "2", env=env))
    assert code == 0, err
    assert err.count("activation checkpointing: on for 1 of 2 layers (before step 1: the memory plan needs 9.3 GiB") == 2, err
    assert _recomputed(log, 0) == _recomputed(log, 1) == [1] * 8
    _same_steps(_steps(plain), _steps(auto))


def test_an_out_of_memory_first_step_on_two_ranks_starts_every_rank_again_with_every_layer_recomputed(tmp_path):
    """Rank 1's first step runs out of memory (rank 0's does not; it waits in a collective rank 1 left): the launcher
    stops both and starts them again with every layer recomputed; the run then ends as one without recomputation."""
    code, plain, err = _finish(_ranks(_toy(tmp_path / "plain", grad_accum=1, activation_checkpointing=False)))
    assert code == 0, err
    cfg = _toy(tmp_path / "auto", grad_accum=1, activation_checkpointing="auto")
    env, log = _with_fake_memory(tmp_path, {"budget": 8e9, "peak": 1e9, "static": 1e9, "oom_ranks": [1], "oom_below": 2})
    code, events, err = _finish(trainer("train", cfg, "--nproc-per-node", "2", env=env))
    assert code == 0, err
    assert "starting every rank again with every layer recomputed" in err
    assert not [e for e in events if e["event"] == "error"], events
    assert _recomputed(log, 1)[0] == 0 and set(_recomputed(log, 1)[1:]) == {2}  # the failed step, then all layers
    assert _recomputed(log, 0)[-8:] == [2] * 8
    _same_steps(_steps(plain), _steps(events))

    # With every layer already recomputed, an out-of-memory first step is the recipe's error: exit 2, no relaunch.
    cfg = _toy(tmp_path / "again", grad_accum=1, activation_checkpointing=True)
    env, log = _with_fake_memory(tmp_path / "again", {"budget": 8e9, "peak": 1e9, "static": 1e9, "oom_ranks": [0, 1], "oom_below": 3})
    code, events, err = _finish(trainer("train", cfg, "--nproc-per-node", "2", env=env))
    assert code == 2, err
    assert "starting every rank again" not in err
    assert events[-1]["event"] == "error" and events[-1]["kind"] == "oom", events[-1:]
