"""Contract 4 end to end through `python -m bsft_trainer` subprocesses on the bsft-toy model (CPU, fp32)."""
import json
import re
import shutil
import subprocess
import sys

from pathlib import Path

from bsft_trainer.checkpoints import checkpoint as ckpt
from conftest import SRC, assert_checkpointing_changes_nothing, events_of, limit, main_with, make_run, sigterm_at, trainer


def _finish(p, timeout=limit(300)):
    out, err = p.communicate(timeout=timeout)
    return p.returncode, events_of(out), err


def _losses(events):
    return {e["step"]: e["loss"] for e in events if e["event"] == "step"}


def test_straight_run_emits_only_events_checkpoints_and_learns(run_dir):
    cfg = make_run(run_dir, train={"max_steps": 40, "checkpoint_every": 10})
    code, events, err = _finish(trainer("train", cfg))
    assert code == 0, err
    kinds = [e["event"] for e in events]
    assert kinds[0] == "start" and kinds[-1] == "done"
    assert events[0] == {"event": "start", "total_steps": 40, "resumed_from_step": 0, "world_size": 1}
    steps = [e for e in events if e["event"] == "step"]
    assert [e["step"] for e in steps] == list(range(1, 41))
    assert set(steps[0]) == {"event", "step", "loss", "lr", "grad_norm", "tokens_per_s", "mem_gib", "mem_alloc_gib"}
    assert 0 < steps[-1]["mem_alloc_gib"] <= steps[-1]["mem_gib"]  # in use now (here the process's RSS) within the peak
    assert [e["step"] for e in events if e["event"] == "checkpoint"] == [10, 20, 30, 40]
    assert any(e["event"] == "eval" for e in events)
    losses = [e["loss"] for e in steps]
    assert sum(losses[-5:]) / 5 < 0.8 * sum(losses[:5]) / 5
    # keep_checkpoints: 2, each complete and verified
    kept = ckpt.list_steps(run_dir / "checkpoints")
    assert [s for s, _ in kept] == [40, 30]
    assert all(ckpt.verify(p) is None for _, p in kept)
    final = Path(events[-1]["final_path"])
    assert (final / "COMPLETE").is_file() and ckpt.verify(final) is None


def test_sigterm_checkpoints_exits_75_and_resume_continues_the_same_loss_curve(tmp_path):
    straight_dir, killed_dir = tmp_path / "straight", tmp_path / "killed"
    cfg_a = make_run(straight_dir, train={"max_steps": 16, "checkpoint_every": 100})
    cfg_b = make_run(killed_dir, train={"max_steps": 16, "checkpoint_every": 100})
    code, straight, err = _finish(trainer("train", cfg_a))
    assert code == 0, err

    code, seen, err = sigterm_at(cfg_b, "step", 5)
    assert code == 75, err
    stopped_at = [e for e in seen if e["event"] == "checkpoint"][-1]["step"]
    assert stopped_at >= 5 and seen[-1]["event"] == "checkpoint"

    code, resumed, err = _finish(trainer("train", cfg_b))
    assert code == 0, err
    assert resumed[0]["resumed_from_step"] == stopped_at
    a, b = _losses(straight), {**_losses(seen), **_losses(resumed)}
    assert sorted(b) == list(range(1, 17))
    assert [b[s] for s in range(1, 17)] == [a[s] for s in range(1, 17)]  # exactly equal on CPU fp32


def test_corrupt_or_half_written_checkpoints_are_skipped(run_dir):
    cfg = make_run(run_dir, train={"max_steps": 12, "checkpoint_every": 4, "keep_checkpoints": 5})
    assert sigterm_at(cfg, "checkpoint", 8)[0] == 75
    checkpoints = run_dir / "checkpoints"
    newest = checkpoints / ckpt.step_dir_name(ckpt.list_steps(checkpoints)[0][0])
    (newest / "optimizer.pt").write_bytes(b"corrupted")
    (checkpoints / "step-000099").mkdir()  # a folder without COMPLETE does not exist
    code, events, err = _finish(trainer("train", cfg))
    assert code == 0
    assert events[0]["resumed_from_step"] == 8 or events[0]["resumed_from_step"] == 4
    assert events[0]["resumed_from_step"] < int(newest.name.split("-")[1])
    assert "skipping checkpoint" in err and "does not match its sha256" in err


def test_kill_during_a_save_leaves_the_previous_checkpoint_in_use(tmp_path):
    script = f"""
import sys, time
sys.path.insert(0, {str(SRC)!r})
from bsft_trainer.checkpoints import checkpoint as ckpt
from bsft_trainer.process.fence import NoFence
ckpt.save({str(tmp_path)!r}, 1, lambda d: (d / "w.bin").write_bytes(b"one"), NoFence())
def slow(d):
    (d / "w.bin").write_bytes(b"two" * 1000)
    print("writing", flush=True)
    time.sleep(60)
ckpt.save({str(tmp_path)!r}, 2, slow, NoFence())
"""
    p = subprocess.Popen([sys.executable, "-c", script], stdout=subprocess.PIPE, text=True)
    assert p.stdout.readline().strip() == "writing"
    p.kill()
    p.wait()
    assert (tmp_path / "step-000002.tmp").is_dir()
    step, path = ckpt.latest_valid(tmp_path)
    assert step == 1 and (path / "w.bin").read_bytes() == b"one"
    # A crash between the rename and COMPLETE: the folder exists but does not count.
    shutil.copytree(tmp_path / "step-000002.tmp", tmp_path / "step-000002")
    assert ckpt.latest_valid(tmp_path)[0] == 1


def test_config_and_data_errors_exit_2_with_an_error_event(run_dir):
    cfg = make_run(run_dir)
    bad = json.loads(cfg.read_text())
    del bad["train"]["lr"]
    cfg.write_text(json.dumps(bad))
    code, events, _ = _finish(trainer("train", cfg))
    assert code == 2 and events == [{"event": "error", "kind": "config", "message": "train.lr: required"}]

    cfg = make_run(run_dir / "b")
    good = json.loads(cfg.read_text())
    Path(good["dataset"]["shards"]["train"]).unlink()
    code, events, _ = _finish(trainer("train", cfg))
    assert code == 2 and events[0]["kind"] == "data" and "shard not found" in events[0]["message"]

    code, events, _ = _finish(trainer("train", run_dir / "nope.json"))
    assert code == 2 and events[0]["kind"] == "config"

    cfg = make_run(run_dir / "c", train={"token_init": "description"})  # a manifest without behavior_descriptions
    code, events, _ = _finish(trainer("train", cfg))
    assert code == 2 and events[0]["kind"] == "data" and "rebuild the dataset" in events[0]["message"]


def test_predict_writes_contract_7_predictions_from_the_first_generated_token(run_dir):
    cfg = make_run(run_dir, train={"max_steps": 30})
    assert _finish(trainer("train", cfg))[0] == 0
    code, events, err = _finish(trainer("predict", cfg))
    assert code == 0, err
    assert [e["event"] for e in events][-1] == "done"
    assert [e for e in events if e["event"] == "progress"][-1] == {"event": "progress", "done": 12, "total": 12}
    rows = [json.loads(line) for line in (run_dir / "predictions" / "test.jsonl").read_text().splitlines()]
    manifest = json.loads((run_dir / "dataset" / "manifest.json").read_text())
    assert [r["id"] for r in rows] == manifest["documents"]["test"]
    by_id = {v: k for k, v in manifest["behavior_ids"].items()}
    for r in rows:
        assert r["predicted_behavior"] == by_id.get(r["raw_token_ids"][0])
    _check_behavior_probs(run_dir, rows, manifest)
    code, _, err = _finish(trainer("predict", cfg, "--force", "proactive"))
    assert code == 0, err
    forced = [json.loads(line) for line in (run_dir / "predictions" / "test.forced-proactive.jsonl").read_text().splitlines()]
    assert all(r["forced"] and r["predicted_behavior"] == "proactive" for r in forced)
    # A forced prompt ends with its behavior token: no choice was made, no probabilities are kept.
    assert not any("behavior_probs" in r or "behavior_logprobs" in r for r in forced)
    assert _finish(trainer("predict", cfg, "--force", "bold"))[0] == 2


def _toy_first_logits(run_dir, split="test"):
    """The final toy model's logits (float64) at each prompt's first generated position, each prompt run alone (not
    packed with others, as predict does)."""
    import torch

    from bsft_trainer.data.shards import Shard
    from bsft_trainer.inference.final_model import load_toy
    from bsft_trainer.inference.predict import prompts

    model = load_toy(run_dir / "final", torch.device("cpu"))
    out = []
    for prompt in prompts(Shard(run_dir / "dataset" / f"{split}.tokens.safetensors")):
        x = torch.tensor(prompt)
        with torch.no_grad():
            h = model.hidden(model.embed_tokens(x), torch.arange(len(prompt)), torch.tensor([0, len(prompt)], dtype=torch.int32), len(prompt))
            out.append((h[-1] @ model.lm_head.weight.t()).double())
    return out


def _check_behavior_probs(run_dir, rows, manifest):
    """Each row's behavior log-probabilities and renormalised probabilities against a computation of its own:
    log p = logit - logsumexp(logits) of the toy model run on each prompt alone."""
    import torch

    names = list(manifest["behavior_ids"])
    ids = [manifest["behavior_ids"][n] for n in names]
    for r, logits in zip(rows, _toy_first_logits(run_dir)):
        lp = logits[ids] - torch.logsumexp(logits, 0)
        renorm = lp.exp() / lp.exp().sum()
        assert list(r["behavior_logprobs"]) == names and list(r["behavior_probs"]) == names
        for n, a, b in zip(names, lp.tolist(), renorm.tolist()):
            assert abs(r["behavior_logprobs"][n] - a) < 2e-6 and abs(r["behavior_probs"][n] - b) < 2e-6, (r, n, a, b)
        assert abs(sum(r["behavior_probs"].values()) - 1) < 1e-5
        if r["predicted_behavior"] is not None:  # greedy chose a behavior token: the likeliest of them
            assert max(r["behavior_probs"], key=r["behavior_probs"].get) == r["predicted_behavior"]


def test_an_operating_point_changes_the_first_token_as_the_arithmetic_says(run_dir):
    """eval.behavior_offsets (bsft predict --balanced) adds each behavior's offset to its token's logit: the first
    token is the argmax of the logits plus the offsets, computed here on the model itself; the recorded
    probabilities stay the model's own, and predict.json names the point."""
    import torch

    cfg = make_run(run_dir, train={"max_steps": 20})
    assert _finish(trainer("train", cfg))[0] == 0
    assert _finish(trainer("predict", cfg))[0] == 0
    read = lambda: [json.loads(line) for line in (run_dir / "predictions" / "test.jsonl").read_text().splitlines()]  # noqa: E731
    plain = read()
    manifest = json.loads((run_dir / "dataset" / "manifest.json").read_text())
    # A proactive offset halfway between two prompts' margins (proactive logit - the best other one), of the sign
    # that moves the choice of about half of them.
    p = manifest["behavior_ids"]["proactive"]
    margins = sorted(float(l[p] - torch.cat([l[:p], l[p + 1:]]).max()) for l in _toy_first_logits(run_dir))
    k = len(margins) // 2
    assert margins[k - 1] < margins[k], margins
    offsets = {"proactive": round(-(margins[k - 1] + margins[k]) / 2, 6), "restraint": -1.5}
    c = json.loads(cfg.read_text())
    c["eval"]["behavior_offsets"] = offsets
    cfg.write_text(json.dumps(c))
    code, _, err = _finish(trainer("predict", cfg))
    assert code == 0, err
    assert "operating point" in err
    shifted = read()
    expected = []
    for logits in _toy_first_logits(run_dir):
        for b, v in offsets.items():
            logits[manifest["behavior_ids"][b]] += v
        expected.append(int(logits.argmax()))
    assert [r["raw_token_ids"][0] for r in shifted] == expected
    assert [r["raw_token_ids"][0] for r in shifted] != [r["raw_token_ids"][0] for r in plain]  # the point matters here
    assert [r["behavior_logprobs"] for r in shifted] == [r["behavior_logprobs"] for r in plain]
    record = json.loads((run_dir / "predictions" / "predict.json").read_text())["test.jsonl"]
    assert record["behavior_offsets"] == offsets


def test_predict_before_training_is_a_config_error(run_dir):
    cfg = make_run(run_dir)
    code, events, _ = _finish(trainer("predict", cfg))
    assert code == 2 and "train first" in events[0]["message"]


def test_activation_checkpointing_gives_the_same_steps_on_the_toy_model(tmp_path):
    assert_checkpointing_changes_nothing(
        lambda on: make_run(tmp_path / str(on), train={"max_steps": 3, "activation_checkpointing": on}))


def test_predict_reads_the_first_token_from_one_forward_pass_when_only_the_behavior_is_wanted(run_dir):
    """eval.max_new_tokens 1 takes one packed forward pass per batch (no decoding loop): the same first tokens as
    decoding, in the split's order."""
    cfg = make_run(run_dir, train={"max_steps": 20}, eval_={"max_new_tokens": 3, "batch_size": 5})
    assert _finish(trainer("train", cfg))[0] == 0
    runs = {}
    for max_new in (3, 1):
        c = json.loads(cfg.read_text())
        c["eval"]["max_new_tokens"] = max_new
        cfg.write_text(json.dumps(c))
        code, _, err = _finish(trainer("predict", cfg))
        assert code == 0, err
        runs[max_new] = [json.loads(line) for line in (run_dir / "predictions" / "test.jsonl").read_text().splitlines()]
    assert [r["id"] for r in runs[1]] == [r["id"] for r in runs[3]]
    assert [r["raw_token_ids"] for r in runs[1]] == [r["raw_token_ids"][:1] for r in runs[3]]
    assert [r["predicted_behavior"] for r in runs[1]] == [r["predicted_behavior"] for r in runs[3]]
    assert [r["behavior_probs"] for r in runs[1]] == [r["behavior_probs"] for r in runs[3]]


def test_a_checkpoint_slower_than_half_the_stop_grace_says_what_grace_to_set(run_dir):
    """A stop writes a checkpoint within train.preempt_grace_s; one that takes over half of it is warned about, with
    the grace that keeps a margin of twice its time (a save slowed to 0.7 s here, the grace 1 s)."""
    cfg = make_run(run_dir, train={"max_steps": 4, "checkpoint_every": 2, "preempt_grace_s": 1})
    prelude = ("import time\nimport bsft_trainer.checkpoints.checkpoint as c\n_save = c.save\n"
               "def slow(*a, **k):\n    time.sleep(0.7)\n    return _save(*a, **k)\nc.save = slow\n")
    code, events, err = main_with(prelude, "train", cfg)
    assert code == 0, err
    saves = [e["save_s"] for e in events if e["event"] == "checkpoint"]
    assert saves and all(s >= 0.7 for s in saves), saves
    assert "more than half of train.preempt_grace_s (1 s)" in err and "set train.preempt_grace_s to at least 2" in err, err
    code, _, err = main_with("", "train", make_run(run_dir / "quick", train={"max_steps": 4, "checkpoint_every": 2}))
    assert code == 0 and "preempt_grace_s" not in err  # a 30 s grace and a quick save: nothing to say


def test_a_stop_while_final_is_written_leaves_it_to_the_next_attempt_and_says_how_long_the_end_took(run_dir):
    """SIGTERM as final/ starts (sent by the trainer to itself there, then a 0.5 s pause): after the part in hand
    (the weights) final/ is abandoned, nothing of it left, exit 75 within the grace, saying how long after the request;
    the next attempt trains nothing and writes final/, and logs the end's parts (evaluation, checkpoint, final/), so a
    grace too short for this machine shows where its seconds went. A final/ slower than half the grace is warned
    about with the grace that keeps the margin."""
    cfg = make_run(run_dir, train={"max_steps": 3, "checkpoint_every": 100})
    prelude = ("import os, signal, time\nimport bsft_trainer.checkpoints.save as s\n_final = s.save_final\n"
               "def stopped(*a, **k):\n    os.kill(os.getpid(), signal.SIGTERM)\n    time.sleep(0.5)\n    return _final(*a, **k)\n"
               "s.save_final = stopped\n")
    code, events, err = main_with(prelude, "train", cfg)
    assert code == 75, err
    assert [e["step"] for e in events if e["event"] == "checkpoint"] == [3] and events[-1]["event"] == "checkpoint"
    assert not (run_dir / "final").exists() and not (run_dir / "final.tmp").exists()
    m = re.search(r"stop requested while final/ was written \(after the weights\): left to the next attempt.*exiting 75 "
                  r"\((\d+\.\d) s after the stop request was handled\)", err)
    assert m and float(m.group(1)) >= 0.5, err

    code, events, err = main_with("", "train", cfg)
    assert code == 0, err
    assert [e["event"] for e in events] == ["start", "eval", "done"] and events[0]["resumed_from_step"] == 3
    assert ckpt.verify(run_dir / "final") is None
    m = re.search(r"after the last step: evaluation (\d+\.\d) s, checkpoint (\d+\.\d) s, final/ (\d+\.\d) s\n", err)
    assert m and float(m.group(2)) < 0.5, err  # step 3's checkpoint was there: not written again
    assert "preempt_grace_s" not in err  # final/ took far less than half of the 30 s grace

    slow = ("import time\nimport bsft_trainer.checkpoints.save as s\n_final = s.save_final\n"
            "def slow(*a, **k):\n    time.sleep(0.6)\n    return _final(*a, **k)\ns.save_final = slow\n")
    code, _, err = main_with(slow, "train", make_run(run_dir / "short", train={"max_steps": 3, "checkpoint_every": 100, "preempt_grace_s": 1}))
    assert code == 0, err
    assert re.search(r"warning: final/ took \d+\.\d s, more than half of train.preempt_grace_s \(1 s\).*at least [2-9]", err), err


def test_a_command_that_ends_done_exits_without_the_interpreters_teardown_and_a_failure_with_it(run_dir):
    """After `done` (or a stop after a checkpoint) everything written is closed and synced: the process exits at once,
    skipping the teardown of torch and its modules (38.7 s at load 45, measured). Shown with an exit handler that
    marks a file: it never runs after a done train, and runs after a failure (whose exit handlers close what it left
    open)."""
    def start(config, marker):
        code = (f"import atexit, pathlib, runpy, sys\n"
                f"atexit.register(lambda: pathlib.Path({str(marker)!r}).write_text('teardown'))\n"
                f"sys.argv = ['bsft_trainer', 'train', '--config', {str(config)!r}]\n"
                f"runpy.run_module('bsft_trainer', run_name='__main__', alter_sys=True)\n")
        return subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=limit(300),
                              env={"PYTHONPATH": str(SRC), "PATH": "/usr/bin:/bin"})
    done = start(make_run(run_dir, train={"max_steps": 2, "checkpoint_every": 100}), run_dir / "done.marker")
    assert done.returncode == 0, done.stderr
    assert events_of(done.stdout)[-1]["event"] == "done"
    assert not (run_dir / "done.marker").exists()
    bad = run_dir / "bad.json"
    bad.write_text("{}")
    failed = start(bad, run_dir / "failed.marker")
    assert failed.returncode == 2, failed.stderr
    assert (run_dir / "failed.marker").read_text() == "teardown"
