"""The metrics history (metrics.jsonl) and the experiment trackers, on the toy model."""
import importlib.util
import json

import pytest

from conftest import events_of, limit, main_with, make_run, sigterm_at, trainer


def _lines(run_dir):
    return [json.loads(line) for line in (run_dir / "metrics.jsonl").read_text().splitlines()]


def test_metrics_jsonl_holds_every_step_and_eval_once_across_a_preemption(tmp_path):
    cfg = make_run(tmp_path, train={"max_steps": 8, "checkpoint_every": 3}, eval_={"every": 4})
    code, seen, err = sigterm_at(cfg, "step", 4)
    assert code == 75, err
    p = trainer("train", cfg)
    out, err = p.communicate(timeout=limit(300))
    assert p.returncode == 0, err
    events = seen + events_of(out)
    lines = _lines(tmp_path)
    steps = [r for r in lines if r["kind"] == "step"]
    assert [r["step"] for r in steps] == list(range(1, 9))  # each step once, though the preempted attempt ran past its checkpoint
    # the values of each step are those of the attempt that kept it (the resumed one, after its checkpoint)
    last = {e["step"]: e for e in events if e["event"] == "step"}
    for r in steps:
        assert r["loss"] == last[r["step"]]["loss"] and r["lr"] == last[r["step"]]["lr"]
        assert set(r) == {"kind", "step", "time", "loss", "lr", "grad_norm", "tokens_per_s", "mem_gib"}
    evals = [r for r in lines if r["kind"] == "eval"]
    assert [r["step"] for r in evals] == [4, 8]


def test_the_history_travels_with_the_checkpoint_to_a_machine_without_it(tmp_path):
    """A run resumed elsewhere from a store's checkpoint (no metrics.jsonl in its folder) keeps its earlier steps."""
    cfg = make_run(tmp_path, train={"max_steps": 6, "checkpoint_every": 3})
    code, seen, err = sigterm_at(cfg, "step", 4)
    assert code == 75, err
    newest = sorted((tmp_path / "checkpoints").glob("step-*"))[-1]
    assert [r["step"] for r in json.loads("[" + ",".join((newest / "metrics.jsonl").read_text().splitlines()) + "]")][:3] == [1, 2, 3]
    (tmp_path / "metrics.jsonl").unlink()  # the other machine has the checkpoint only
    p = trainer("train", cfg)
    out, err = p.communicate(timeout=limit(300))
    assert p.returncode == 0, err
    assert [r["step"] for r in _lines(tmp_path) if r["kind"] == "step"] == [1, 2, 3, 4, 5, 6]


@pytest.mark.skipif(importlib.util.find_spec("tensorboard") is None, reason="needs the tensorboard package")
def test_tensorboard_event_files_hold_the_step_values(tmp_path):
    from tensorboard.backend.event_processing.event_accumulator import EventAccumulator

    cfg = make_run(tmp_path, train={"max_steps": 5}, eval_={"every": 2})
    c = json.loads(cfg.read_text())
    c["tracking"] = ["tensorboard"]
    cfg.write_text(json.dumps(c))
    p = trainer("train", cfg)
    out, err = p.communicate(timeout=limit(300))
    assert p.returncode == 0, err
    acc = EventAccumulator(str(tmp_path / "tensorboard"))
    acc.Reload()
    steps = {e["step"]: e for e in events_of(out) if e["event"] == "step"}
    loss = acc.Scalars("train/loss")
    assert [s.step for s in loss] == [1, 2, 3, 4, 5]
    for s in loss:
        assert s.value == pytest.approx(steps[s.step]["loss"], rel=1e-6)
    assert [s.step for s in acc.Scalars("train/lr")] == [1, 2, 3, 4, 5]
    assert [s.step for s in acc.Scalars("eval/loss")] == [2, 4, 5]


@pytest.mark.parametrize("tracker", ["wandb", "mlflow"])
def test_a_tracker_whose_package_is_missing_fails_before_training_naming_it(tmp_path, tracker):
    cfg = make_run(tmp_path, train={"max_steps": 2})
    c = json.loads(cfg.read_text())
    c["tracking"] = [tracker]
    cfg.write_text(json.dumps(c))
    # the package made unimportable, whether or not this machine has it
    code, events, err = main_with(f"import sys; sys.modules[{tracker!r}] = None", "train", cfg)
    assert code == 2, err
    (event,) = events
    assert event["kind"] == "config" and f"pip install {tracker}" in event["message"]
    assert not (tmp_path / "checkpoints").exists()


@pytest.mark.skipif(importlib.util.find_spec("mlflow") is None, reason="needs the mlflow package")
def test_mlflow_runs_hold_the_step_values(tmp_path):
    import mlflow

    cfg = make_run(tmp_path, train={"max_steps": 3})
    c = json.loads(cfg.read_text())
    c["tracking"] = ["mlflow"]
    cfg.write_text(json.dumps(c))
    p = trainer("train", cfg, env={"MLFLOW_TRACKING_URI": (tmp_path / "mlruns").as_uri()})
    out, err = p.communicate(timeout=limit(300))
    assert p.returncode == 0, err
    mlflow.set_tracking_uri((tmp_path / "mlruns").as_uri())
    (run,) = mlflow.search_runs(experiment_names=["bsft"], output_format="list")
    history = mlflow.MlflowClient().get_metric_history(run.info.run_id, "train_loss")
    assert sorted(m.step for m in history) == [1, 2, 3]
