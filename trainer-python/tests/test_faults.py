"""Faults the queue must survive (issue 13), through real `python -m bsft_trainer` processes on the toy model:
the lease (stdin heartbeats), fencing of racing attempts, and what a checkpoint folder must hold to count."""
import errno
import json
import os
import re
import shutil
import signal
import subprocess
import sys
import threading
import time
from contextlib import contextmanager
from pathlib import Path

import pytest

from bsft_trainer.checkpoints import checkpoint as ckpt
from bsft_trainer.process.fence import Fence, Fenced, NoFence
from bsft_trainer.process.lease import EXIT_LEASE_LOST
from conftest import SRC, events_of, gone, limit, make_run, sigterm_at, trainer, wait_gone


def _finish(p, timeout=limit(300)):
    out, err = p.communicate(timeout=timeout)
    return p.returncode, events_of(out), err


class Heartbeat:
    """Writes a heartbeat line to a trainer's stdin every `every` s until stopped (the pipe stays open)."""

    def __init__(self, proc, every=0.2):
        self.proc, self.every, self.on = proc, every, True
        threading.Thread(target=self._beat, daemon=True).start()

    def _beat(self):
        while self.on:
            try:
                self.proc.stdin.write("\n")
                self.proc.stdin.flush()
            except (BrokenPipeError, ValueError, OSError):
                return
            time.sleep(self.every)


# ------------------------------------------------------------------------------------------------------ lease

def test_end_of_stdin_during_start_up_ends_the_trainer_at_once_writing_nothing(run_dir):
    """The worker died while the trainer was still importing torch: no heartbeat ever comes, stdin is closed."""
    cfg = make_run(run_dir, train={"max_steps": 100000, "checkpoint_every": 1000})
    started = time.monotonic()
    p = trainer("train", cfg, "--lease-s", "30", stdin=subprocess.PIPE)
    p.stdin.close()
    p.stdin = None
    out, err = p.communicate(timeout=limit(60))
    assert p.returncode == EXIT_LEASE_LOST
    assert out == "" and err == ""  # nothing written to any pipe
    assert time.monotonic() - started < 20  # EOF is seen at once, long before the 30 s lease
    assert not (run_dir / "checkpoints").exists()


def test_heartbeats_keep_the_trainer_going_and_their_absence_stops_it_within_the_lease(run_dir):
    """A frozen or partitioned worker sends no heartbeat but keeps the pipe open."""
    cfg = make_run(run_dir, train={"max_steps": 100000, "checkpoint_every": 100000})
    p = trainer("train", cfg, "--lease-s", "1.5", stdin=subprocess.PIPE)
    beat = Heartbeat(p)
    steps = 0
    started = time.monotonic()
    for line in p.stdout:
        e = json.loads(line)
        steps += e["event"] == "step"
        if time.monotonic() - started > 4 and steps > 10:
            break  # trained for > 2 leases on heartbeats alone
    beat.on = False
    stopped = time.monotonic()
    p.stdout.read()
    p.wait(timeout=limit(30))
    assert p.returncode == EXIT_LEASE_LOST
    assert time.monotonic() - stopped < 1.5 + 2.5
    assert not ckpt.list_steps(run_dir / "checkpoints") and not (run_dir / "final").exists()


def test_a_heartbeat_counts_from_when_the_worker_checked_its_lock_not_from_when_it_is_read(run_dir):
    """Heartbeats stamped with a lock check older than the lease extend nothing (a late-read beat cannot keep a
    trainer alive past the lock), while fresh stamps do."""
    cfg = make_run(run_dir, train={"max_steps": 100000, "checkpoint_every": 100000})
    p = trainer("train", cfg, "--lease-s", "1.5", stdin=subprocess.PIPE)
    stale = {"on": False}

    def beat():
        while p.poll() is None:
            age = 1.4 if stale["on"] else 0.0
            try:
                p.stdin.write(f"{(time.monotonic() - age) * 1000:.0f}\n")
                p.stdin.flush()
            except (BrokenPipeError, ValueError, OSError):
                return
            time.sleep(0.2)

    threading.Thread(target=beat, daemon=True).start()
    assert json.loads(p.stdout.readline())["event"] == "start"
    time.sleep(2.5)  # fresh stamps: alive past the lease
    assert p.poll() is None
    stale["on"] = True  # each stamp now says the lock was checked 1.4 s ago: 0.1 s of lease left
    stopped = time.monotonic()
    p.stdout.read()
    p.wait(timeout=limit(30))
    assert p.returncode == EXIT_LEASE_LOST
    assert time.monotonic() - stopped < 2.5  # the last fresh stamp + 1.5 s; counted from reading, it would never end


def test_a_worker_killed_with_sigkill_during_the_trainers_import_leaves_no_trainer(tmp_path):
    cfg = make_run(tmp_path, train={"max_steps": 100000, "checkpoint_every": 1000})
    worker = f"""
import subprocess, sys, time
p = subprocess.Popen([sys.executable, "-m", "bsft_trainer", "train", "--config", {str(cfg)!r}, "--lease-s", "60"],
                     stdin=subprocess.PIPE, stdout=subprocess.PIPE, stderr=subprocess.PIPE, env={{"PYTHONPATH": {str(SRC)!r}}})
print(p.pid, flush=True)
time.sleep(600)
"""
    w = subprocess.Popen([sys.executable, "-c", worker], stdout=subprocess.PIPE, text=True)
    pid = int(w.stdout.readline())
    w.kill()  # SIGKILL: the trainer is most likely still importing torch
    w.wait()
    assert wait_gone(pid, 20), "the orphaned trainer kept running"


def test_a_stop_between_the_last_step_and_final_ends_with_a_checkpoint_at_once(tmp_path):
    """SIGTERM when the last step's event arrives, while the final evaluation (a large val split: seconds) would
    follow: the trainer does not evaluate nor write final/ then, but writes the last step's checkpoint and exits 75 at
    once; the next attempt trains nothing, evaluates and writes final/."""
    cfg = make_run(tmp_path, n_val=8000, train={"max_steps": 12, "checkpoint_every": 100})
    p = trainer("train", cfg)
    seen = []
    for line in p.stdout:
        seen.append(json.loads(line))
        if seen[-1]["event"] == "step" and seen[-1]["step"] == 12:
            p.send_signal(signal.SIGTERM)
            stopped = time.monotonic()
            break
    rest, err = p.communicate(timeout=limit(300))
    took = time.monotonic() - stopped
    events = seen + events_of(rest)
    assert p.returncode == 75, err
    assert [e["step"] for e in events if e["event"] == "checkpoint"] == [12]
    assert not [e for e in events if e["event"] == "eval"] and not (tmp_path / "final").exists()
    assert "stop requested after the last step" in err
    # The trainer says how long after the request it got out (its own clock, from the signal handler).
    own = float(re.search(r"exiting 75 \((\d+\.\d) s after the stop request was handled\)", err).group(1))
    assert own <= took + 0.1, (own, took)

    p = trainer("train", cfg)
    again, times = [], []
    for line in p.stdout:
        again.append(json.loads(line))
        times.append(time.monotonic())
    p.wait(timeout=limit(300))
    assert p.returncode == 0, p.stderr.read()
    assert again[0]["resumed_from_step"] == 12
    assert [e["event"] for e in again] == ["start", "eval", "done"], again  # the checkpoint of step 12 is not written again
    # Where the end's seconds went, in the log: the evaluation, no checkpoint (step 12's is there), final/.
    parts = re.search(r"after the last step: evaluation (\d+\.\d) s, checkpoint (\d+\.\d) s, final/ (\d+\.\d) s", p.stderr.read())
    assert parts and float(parts.group(2)) < 0.5, parts
    assert ckpt.verify(tmp_path / "final") is None
    # The stopped attempt did not wait for the evaluation (measured here, on this machine, by the next attempt).
    evaluation = times[1] - times[0]
    assert took < evaluation / 2, f"exited {took:.1f} s after SIGTERM; the evaluation takes {evaluation:.1f} s"


SLOW_IMPORT = Path(__file__).resolve().parents[2] / "orchestrator" / "test" / "fixtures" / "slow-import"


def _slow_env(tmp, spec):
    """Environment of a trainer whose imports named in `spec` ("torch:20") hold the interpreter lock that long."""
    log = tmp / "slow-import.log"
    return {"PYTHONPATH": f"{SRC}:{SLOW_IMPORT}", "BSFT_SLOW_IMPORT": spec, "BSFT_SLOW_IMPORT_LOG": str(log)}, log


def _wait_for(predicate, timeout):
    end = time.monotonic() + timeout
    while time.monotonic() < end:
        if predicate():
            return True
        time.sleep(0.02)
    return False


def _stand_in_worker(cfg, env, extra=()):
    """A process that starts the trainer as a worker does (its pid in BSFT_PARENT_PID, a lease on stdin renewed every
    second, an empty line meaning "now") and prints the trainer's pid. Without the heartbeats the lease would end the
    trainer 5 s in, before a loaded machine has it where the test wants it."""
    code = f"""
import os, subprocess, sys, time
env = {{**{env!r}, "BSFT_PARENT_PID": str(os.getpid())}}
p = subprocess.Popen([sys.executable, "-m", "bsft_trainer", "train", "--config", {str(cfg)!r}, "--lease-s", "5", *{list(extra)!r}],
                     stdin=subprocess.PIPE, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, env=env)
print(p.pid, flush=True)
for _ in range(600):
    try:
        p.stdin.write(b"\\n")
        p.stdin.flush()
    except OSError:
        pass
    time.sleep(1)
"""
    w = subprocess.Popen([sys.executable, "-c", code], stdout=subprocess.PIPE, text=True)
    return w, int(w.stdout.readline())


def test_a_trainer_dies_with_its_worker_even_inside_an_import_that_holds_the_interpreter_lock(tmp_path):
    """The worker is killed while the trainer's `import torch` holds the interpreter lock for 20 s (so the lease's
    watchdog thread cannot run): the kernel ends the trainer within 2 s (lifeline.py), not after the import."""
    cfg = make_run(tmp_path, train={"max_steps": 100000, "checkpoint_every": 1000})
    env, log = _slow_env(tmp_path, "torch:20")
    w, pid = _stand_in_worker(cfg, env)
    assert _wait_for(lambda: log.is_file() and str(pid) in log.read_text(), limit(60)), "the trainer never reached the import"
    time.sleep(0.5)
    w.kill()
    killed = time.monotonic()
    w.wait()
    assert wait_gone(pid, 2), "the trainer outlived its worker"
    assert time.monotonic() - killed < 2


def test_a_trainer_whose_worker_died_before_it_started_exits_at_once(tmp_path):
    """BSFT_PARENT_PID names the process that started it: a trainer that finds another parent (the worker died
    between starting it and the kernel's watch) exits 76, writing no event and no file."""
    cfg = make_run(tmp_path, train={"max_steps": 100000, "checkpoint_every": 1000})
    p = trainer("train", cfg, env={"BSFT_PARENT_PID": "1"})
    out, err = p.communicate(timeout=limit(60))
    assert p.returncode == EXIT_LEASE_LOST
    assert out == "" and "now the child of" in err
    assert not (tmp_path / "EPOCH").exists() and not (tmp_path / "checkpoints").exists()


def test_a_launchers_ranks_die_with_it_even_inside_an_import_that_holds_the_interpreter_lock(tmp_path):
    """The launcher (train --nproc-per-node 2) is killed while its ranks import their torch-side module with the
    interpreter lock held for 20 s: torchrun's agent and both ranks are gone within 2 s."""
    from bsft_trainer.parallel.distributed import available

    if available() is not None:
        pytest.skip(str(available()))
    cfg = make_run(tmp_path, train={"max_steps": 100000, "checkpoint_every": 1000})
    # Only the ranks import bsft_trainer.parallel.distributed (the launcher never imports torch).
    env, log = _slow_env(tmp_path, "bsft_trainer.parallel.distributed:20")
    w, launcher = _stand_in_worker(cfg, env, ["--nproc-per-node", "2"])
    started = lambda: log.is_file() and len(log.read_text().splitlines()) == 2  # noqa: E731 - both ranks inside
    assert _wait_for(started, limit(120)), f"the ranks never reached the import: {log.read_text() if log.is_file() else 'no import'}"
    others = [pid for pid in _pids_with(str(cfg)) if pid not in (launcher, w.pid)]  # torchrun's agent and the ranks
    assert len(others) == 3, others
    time.sleep(0.5)
    w.kill()  # the worker first: the launcher is then an orphan, which the kernel kills too (its lifeline)
    w.wait()
    killed = time.monotonic()
    assert _wait_for(lambda: all(gone(pid) for pid in [launcher, *others]), 2), [p for p in [launcher, *others] if not gone(p)]
    assert time.monotonic() - killed < 2


def _pids_with(text):
    """Live (not zombie) processes whose command line contains `text`."""
    found = []
    for entry in os.listdir("/proc"):
        if not entry.isdigit():
            continue
        try:
            cmdline = Path(f"/proc/{entry}/cmdline").read_bytes().replace(b"\0", b" ").decode()
            state = Path(f"/proc/{entry}/status").read_text()
        except OSError:
            continue
        if text in cmdline and "\nState:\tZ" not in state:
            found.append(int(entry))
    return found


# ---------------------------------------------------------------------------------------------------- fencing

def test_two_attempts_racing_on_one_run_cannot_mix_their_results(tmp_path):
    """Attempt 2 (epoch 2) resumes a run; attempt 3 (epoch 3) takes the same run while 2 still trains. Only 3
    publishes: 2 stops at its first checkpoint without writing it, and the result equals an uninterrupted run."""
    straight_dir, raced_dir = tmp_path / "straight", tmp_path / "raced"
    train = {"max_steps": 24, "checkpoint_every": 4, "keep_checkpoints": 10}
    code, straight, err = _finish(trainer("train", make_run(straight_dir, train=train)))
    assert code == 0, err

    cfg = make_run(raced_dir, train=train)
    code, _, err = sigterm_at(cfg, "checkpoint", 4)  # attempt 1 (epoch 1) stops at step 4 or later
    assert code == 75, err

    two = trainer("train", cfg, "--epoch", "2")
    first = json.loads(two.stdout.readline())
    assert first["event"] == "start"
    two.send_signal(signal.SIGSTOP)  # frozen before its first checkpoint
    code, three, err = _finish(trainer("train", cfg, "--epoch", "3"))
    assert code == 0, err
    assert three[0]["resumed_from_step"] == first["resumed_from_step"]
    two.send_signal(signal.SIGCONT)  # wakes up and goes on training the run it no longer owns
    code, rest, err = _finish(two)
    assert code == EXIT_LEASE_LOST
    assert rest[-1]["event"] == "error" and "epoch 2 is stale: epoch 3 owns this run" in rest[-1]["message"]
    assert not any(e["event"] == "checkpoint" for e in rest)

    for _, path in ckpt.list_steps(raced_dir / "checkpoints"):
        assert ckpt.verify(path) is None
        assert ckpt.epoch_of(path) in (1, 3)
    final = raced_dir / "final"
    assert ckpt.verify(final) is None and ckpt.epoch_of(final) == 3
    assert (final / "toy_model.pt").read_bytes() == (straight_dir / "final" / "toy_model.pt").read_bytes()


def test_a_stale_epoch_is_refused_at_start_and_a_newer_epoch_wins_the_checkpoint_order(tmp_path):
    Fence(tmp_path, 5).claim()
    with pytest.raises(Fenced):
        Fence(tmp_path, 4).claim()
    assert Fence(tmp_path).claim() == 6  # no epoch given (bsft run, by hand): the next one
    ck = tmp_path / "checkpoints"
    ckpt.save(ck, 30, lambda d: (d / "w").write_bytes(b"old"), Fence(tmp_path, 6))
    newer = Fence(tmp_path, 7)
    newer.claim()
    ckpt.save(ck, 20, lambda d: (d / "w").write_bytes(b"new"), newer)
    # step 30 of epoch 6 was fine when written, but epoch 7 resumed from an earlier one: its line wins
    assert ckpt.latest_valid(ck)[0] == 20
    with pytest.raises(Fenced):
        ckpt.save(ck, 40, lambda d: (d / "w").write_bytes(b"stale"), Fence(tmp_path, 6))
    assert not (ck / "step-000040").exists()


# ----------------------------------------------------------------------------------- what counts as complete

def test_a_file_that_complete_does_not_list_makes_the_folder_invalid(tmp_path):
    ckpt.save_atomic(tmp_path / "final", lambda d: (d / "a.bin").write_bytes(b"a"), NoFence())
    assert ckpt.verify(tmp_path / "final") is None
    (tmp_path / "final" / "extra.bin").write_bytes(b"sneaked in")
    assert ckpt.verify(tmp_path / "final") == "extra.bin is not listed in COMPLETE"


def test_a_complete_checkpoint_that_does_not_load_falls_back_to_the_previous_one(run_dir):
    cfg = make_run(run_dir, train={"max_steps": 12, "checkpoint_every": 4, "keep_checkpoints": 5})
    code, _, err = sigterm_at(cfg, "checkpoint", 8)
    assert code == 75, err
    newest = ckpt.list_steps(run_dir / "checkpoints")[0][1]
    (newest / "optimizer.pt").write_bytes(b"not a torch file")
    ckpt.write_complete(newest, {"epoch": ckpt.epoch_of(newest)})  # listed and hashed: "complete"
    assert ckpt.verify(newest) is None
    code, events, err = _finish(trainer("train", cfg))
    assert code == 0, err
    assert events[0]["resumed_from_step"] < int(newest.name.split("-")[1])
    assert "is complete but does not load" in err
    # None loads: exit 2 (not retried), nothing trained, the checkpoints kept.
    kept = ckpt.list_steps(run_dir / "checkpoints")
    for _, path in kept:
        (path / "optimizer.pt").write_bytes(b"not a torch file")
        ckpt.write_complete(path, {"epoch": ckpt.epoch_of(path)})
    code, events, err = _finish(trainer("train", cfg))
    assert code == 2, err
    assert [e["event"] for e in events] == ["error"] and "Nothing was trained" in events[0]["message"], events
    assert ckpt.list_steps(run_dir / "checkpoints") == kept


def test_a_plain_file_named_like_a_checkpoint_is_ignored_and_replaced(run_dir):
    cfg = make_run(run_dir, train={"max_steps": 8, "checkpoint_every": 4})
    (run_dir / "checkpoints").mkdir()
    (run_dir / "checkpoints" / "step-000008").write_text("not a folder")
    (run_dir / "checkpoints" / "step-000004").write_text("not a folder")
    code, events, err = _finish(trainer("train", cfg))
    assert code == 0, err
    assert events[0]["resumed_from_step"] == 0
    assert ckpt.verify(run_dir / "checkpoints" / "step-000008") is None


@pytest.mark.parametrize("failure", [OSError(errno.ENOSPC, "No space left on device"),
                                     RuntimeError("[enforce fail at inline_container.cc:603] . unexpected pos 64 vs 0")])
def test_disk_full_while_saving_says_so_and_leaves_nothing_behind(tmp_path, failure):
    def write(d):
        (d / "part").write_bytes(b"x")
        raise failure

    with pytest.raises(ckpt.DiskFullError) as info:
        ckpt.save(tmp_path / "checkpoints", 3, write, NoFence())
    assert str(info.value).startswith(f"no space left on the disk of {tmp_path / 'checkpoints'} (")
    assert info.value.kind == "disk" and info.value.exit_code == 74
    assert list((tmp_path / "checkpoints").iterdir()) == []


@contextmanager
def small_disk(path: Path, kib: int):
    """A tmpfs of `kib` KiB mounted at `path` (root with the right to mount; skipped elsewhere)."""
    path.mkdir(parents=True, exist_ok=True)
    done = subprocess.run(["mount", "-t", "tmpfs", "-o", f"size={kib}k", "tmpfs", str(path)], capture_output=True, text=True)
    if done.returncode != 0:
        pytest.skip(f"cannot mount a tmpfs here: {done.stderr.strip() or done.returncode}")
    try:
        yield path
    finally:
        subprocess.run(["umount", "-l", str(path)], capture_output=True)


def _leftovers(folder: Path):
    return sorted(str(p.relative_to(folder)) for p in folder.rglob("*") if p.name.endswith(".tmp") or ".tmp" in p.name)


def test_a_full_disk_while_checkpointing_exits_74_naming_the_path_and_leaves_nothing_half_written(tmp_path):
    """A real full disk (a 256 KiB tmpfs holds the run but not its first 0.5 MB checkpoint): exit 74, an error event
    of kind `disk` naming the path and the free space, no checkpoint folder or temporary left."""
    with small_disk(tmp_path / "disk", 256) as disk:
        cfg = make_run(disk / "run", train={"max_steps": 8, "checkpoint_every": 4})
        code, events, err = _finish(trainer("train", cfg))
        assert code == 74, err
        error = events[-1]
        assert error["event"] == "error" and error["kind"] == "disk", events[-1:]
        assert re.fullmatch(rf"no space left on the disk of {re.escape(str(disk / 'run' / 'checkpoints'))} \(\d+\.\d MiB free there\): "
                            r"free disk space on this machine", error["message"]), error["message"]
        assert not [e for e in events if e["event"] == "checkpoint"]
        assert ckpt.list_steps(disk / "run" / "checkpoints") == [] and _leftovers(disk) == []


def test_a_full_disk_while_writing_final_exits_74_and_leaves_no_final(tmp_path):
    """The run trained to its last step elsewhere, then resumed on a disk with room for the run but not for final/:
    it trains nothing, writes no checkpoint again, and fails at final/ with exit 74 and nothing half-written."""
    done = tmp_path / "done"
    code, _, err = _finish(trainer("train", make_run(done, train={"max_steps": 4, "checkpoint_every": 100})))
    assert code == 0, err
    shutil.rmtree(done / "final")
    used_kib = sum(-(-p.stat().st_size // 4096) * 4 for p in done.rglob("*") if p.is_file()) + 4 * sum(1 for p in done.rglob("*") if p.is_dir())
    with small_disk(tmp_path / "disk", used_kib + 64) as disk:
        shutil.copytree(done, disk / "run")
        cfg = disk / "run" / "train.json"
        cfg.write_text(cfg.read_text().replace(str(done), str(disk / "run")))
        code, events, err = _finish(trainer("train", cfg))
        assert code == 74, err
        assert events[0]["resumed_from_step"] == 4 and events[-1]["kind"] == "disk", events
        assert str(disk / "run") in events[-1]["message"]
        assert not (disk / "run" / "final").exists() and _leftovers(disk / "run") == []


# ------------------------------------------------------------------------------ base/ of the real model path

HAVE_HF = all(__import__("importlib").util.find_spec(m) is not None for m in ("transformers", "peft", "safetensors"))
ROOT = Path(__file__).resolve().parents[2]


@pytest.mark.hf
@pytest.mark.skipif(not HAVE_HF, reason="needs transformers, peft and safetensors")
def test_a_trainer_killed_while_saving_base_leaves_no_base_and_the_next_attempt_finishes(tmp_path):
    """LoRA on a randomly initialised tiny Qwen2: the base model is saved first (the adapter is useless without
    it). A kill -9 in the middle of that save, then a base/ left half-written by an older bsft, cost nothing."""
    cfg = make_run(tmp_path, qwen=True, model_dir=ROOT / "recipes" / "models" / "qwen2.5-tiny",
                   tokenizer=ROOT / "recipes" / "models" / "qwen2.5-tokenizer",
                   train={"method": "lora", "lr": 1e-2, "max_steps": 2, "checkpoint_every": 2, "batch_tokens": 512, "grad_accum": 1})
    slow_save = f"""
import sys, time
sys.path.insert(0, {str(SRC)!r})
from bsft_trainer.checkpoints import weight_files
original = weight_files.write_model_folder
def write_model_folder(folder, *a, **k):
    original(folder, *a, **k)
    print("saved into", folder, file=sys.stderr, flush=True)
    time.sleep(600)
weight_files.write_model_folder = write_model_folder
from bsft_trainer.__main__ import main
sys.exit(main(["train", "--config", {str(cfg)!r}]))
"""
    p = subprocess.Popen([sys.executable, "-c", slow_save], stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    for line in p.stderr:
        if line.startswith("saved into"):
            assert line.strip().endswith("base.tmp")
            break
    p.kill()
    p.communicate()
    assert not (tmp_path / "base").exists() and (tmp_path / "base.tmp" / "model.safetensors").is_file()

    # What earlier versions left: base/ with its config.json but without the weights.
    (tmp_path / "base").mkdir()
    (tmp_path / "base" / "config.json").write_text((tmp_path / "base.tmp" / "config.json").read_text())
    code, events, err = _finish(trainer("train", cfg), timeout=limit(900))
    assert code == 0, err
    assert ckpt.verify(tmp_path / "base") is None
    final = Path(events[-1]["final_path"])
    assert ckpt.verify(final) is None and (final / "base" / "model.safetensors").is_file()


def test_before_a_save_old_checkpoints_go_while_the_disk_has_less_room_than_the_newest_took(tmp_path, monkeypatch):
    import shutil as shutil_mod

    for step in (2, 4, 6):
        ckpt.save(tmp_path, step, lambda d: (d / "w.bin").write_bytes(b"x" * 1000), NoFence())
    (tmp_path / "step-000008.tmp").mkdir()  # a save that never finished
    free = {"bytes": 500}
    real = shutil_mod.disk_usage

    def usage(path):
        u = real(path)
        return type(u)(u.total, u.used, free["bytes"])

    def rmtree(path, *a, **k):
        free["bytes"] += 0 if str(path).endswith(".tmp") else 1000  # what deleting a checkpoint gives back
        real_rmtree(path, *a, **k)

    real_rmtree = shutil_mod.rmtree
    monkeypatch.setattr(ckpt.shutil, "disk_usage", usage)
    monkeypatch.setattr(ckpt.shutil, "rmtree", rmtree)
    ckpt.make_room(tmp_path, 1100)
    assert [s for s, _ in ckpt.list_steps(tmp_path)] == [6, 4]  # the .tmp and the oldest went; enough room now
    free["bytes"] = 0
    ckpt.make_room(tmp_path, 10**9)
    assert [s for s, _ in ckpt.list_steps(tmp_path)] == [6]  # never the newest, however little room is left


def test_checkpoint_files_are_hashed_as_they_are_written(tmp_path):
    digests = {}
    with ckpt.HashingFile(tmp_path / "a.pt", digests, "a.pt") as f:
        import torch

        torch.save({"w": torch.arange(1000)}, f)
    assert digests == {"a.pt": ckpt.sha256_file(tmp_path / "a.pt")}
