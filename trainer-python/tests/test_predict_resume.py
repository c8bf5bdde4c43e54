"""Resumable predict on the bsft-toy model (CPU): a predict killed, preempted or fenced mid-way continues at its next
chunk and ends with the same bytes as one that ran straight through."""
import json
import shutil

import pytest

from conftest import events_of, limit, main_with, make_run, trainer


def _finish(p, timeout=limit(300)):
    out, err = p.communicate(timeout=timeout)
    return p.returncode, events_of(out), err


@pytest.fixture(scope="module")
def trained(tmp_path_factory):
    """One trained toy run for the module, and the bytes of a predict that ran straight through. 30 test tasks in
    chunks (batches) of 4: 8 chunks."""
    run_dir = tmp_path_factory.mktemp("resume")
    cfg = make_run(run_dir, n_val=30, train={"max_steps": 12}, eval_={"max_new_tokens": 4, "batch_size": 4})
    assert _finish(trainer("train", cfg))[0] == 0
    code, _, err = _finish(trainer("predict", cfg))
    assert code == 0, err
    return run_dir, cfg, (run_dir / "predictions" / "test.jsonl").read_bytes()


@pytest.fixture
def fresh(trained):
    """The trained run without predictions or predict progress, and its eval settings as trained."""
    run_dir, cfg, straight = trained
    for d in ("predictions", "predict-progress"):
        shutil.rmtree(run_dir / d, ignore_errors=True)
    c = json.loads(cfg.read_text())
    c["eval"]["max_new_tokens"] = 4
    cfg.write_text(json.dumps(c))
    (run_dir / "EPOCH").write_text("1\n")
    return run_dir, cfg, straight


# Replaces the toy decoder with one that runs `then` after its `after`-th chunk.
HOOK = """
import os, signal
import bsft_trainer.inference.predict as p
real, calls = p.greedy_toy, [0]
def hooked(*a, **k):
    out = real(*a, **k)
    calls[0] += 1
    if calls[0] == {after}:
        {then}
    return out
p.greedy_toy = hooked
"""


def test_a_killed_predict_continues_at_its_next_chunk_with_the_same_bytes(fresh):
    run_dir, cfg, straight = fresh
    # Killed (no handler runs) after the third chunk: three chunks are kept.
    code, events, err = main_with(HOOK.format(after=3, then="os._exit(9)"), "predict", cfg)
    assert code == 9
    assert not (run_dir / "predictions" / "test.jsonl").exists()
    record = json.loads((run_dir / "predict-progress" / "test.jsonl.json").read_text())
    assert record["chunks"] == 2  # the third chunk's rows were made, but the process died before they were appended
    code, events, err = _finish(trainer("predict", cfg))
    assert code == 0, err
    assert "continuing after 2 of 8 chunks (8 of 30 tasks done)" in err
    assert (run_dir / "predictions" / "test.jsonl").read_bytes() == straight
    assert [e for e in events if e["event"] == "progress"][0] == {"event": "progress", "done": 12, "total": 30}
    rec = json.loads((run_dir / "predictions" / "predict.json").read_text())["test.jsonl"]
    assert rec["engine"] == "static" and rec["resumed_after_chunks"] == 2 and rec["tasks"] == 30
    # Done once: a further predict with the same model, prompts and settings leaves the file as it is.
    code, _, err = _finish(trainer("predict", cfg))
    assert code == 0 and "already made from the same model, prompts and settings" in err
    assert "to make: nothing" in err  # the model is not even loaded
    assert (run_dir / "predictions" / "test.jsonl").read_bytes() == straight


def test_sigterm_finishes_the_chunk_in_hand_exits_75_and_the_next_predict_continues(fresh):
    run_dir, cfg, straight = fresh
    code, events, err = main_with(HOOK.format(after=5, then="os.kill(os.getpid(), signal.SIGTERM)"), "predict", cfg)
    assert code == 75, err
    assert "stopped by signal 15 after 5 of 8 chunks" in err
    assert json.loads((run_dir / "predict-progress" / "test.jsonl.json").read_text())["chunks"] == 5
    code, _, err = _finish(trainer("predict", cfg))
    assert code == 0, err
    assert (run_dir / "predictions" / "test.jsonl").read_bytes() == straight


def test_a_torn_tail_is_dropped_and_other_settings_start_over(fresh):
    run_dir, cfg, straight = fresh
    main_with(HOOK.format(after=4, then="os._exit(9)"), "predict", cfg)
    part = run_dir / "predict-progress" / "test.jsonl.part"
    with open(part, "ab") as f:
        f.write(b'7\t{"id": "cut sho')  # a write the kill cut short, never recorded
    code, _, err = _finish(trainer("predict", cfg))
    assert code == 0, err
    assert (run_dir / "predictions" / "test.jsonl").read_bytes() == straight
    # Another max_new_tokens: the old progress is not reused.
    main_with(HOOK.format(after=2, then="os._exit(9)"), "predict", cfg)
    c = json.loads(cfg.read_text())
    c["eval"]["max_new_tokens"] = 2
    cfg.write_text(json.dumps(c))
    code, _, err = _finish(trainer("predict", cfg))
    assert code == 0 and "continuing" not in err
    rows = [json.loads(line) for line in (run_dir / "predictions" / "test.jsonl").read_text().splitlines()]
    assert all(len(r["raw_token_ids"]) <= 2 for r in rows)


def test_a_newer_attempt_stops_a_stale_predict_before_it_appends(fresh):
    run_dir, cfg, _ = fresh
    # After its second chunk, another attempt claims the run (a newer epoch): this one may not append or publish.
    claim = "open(os.path.join({out!r}, 'EPOCH'), 'w').write('99')".format(out=str(run_dir))
    code, events, err = main_with(HOOK.format(after=2, then=claim), "predict", cfg)
    assert code == 76, err
    assert "epoch 99 owns this run" in events[-1]["message"]
    assert json.loads((run_dir / "predict-progress" / "test.jsonl.json").read_text())["chunks"] == 1
    assert not (run_dir / "predictions" / "test.jsonl").exists()
