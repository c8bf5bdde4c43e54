"""Fixtures: hand-made Contract 3 shards and a tiny bsft-toy model, so the trainer is tested without the
orchestrator and without transformers."""
import json
import os
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pytest

SRC = Path(__file__).resolve().parents[1] / "src"
sys.path.insert(0, str(SRC))

from bsft_trainer.data.contract import schema  # noqa: E402
from bsft_trainer.data.synthetic import manifest_for, with_defaults, write_shard  # noqa: E402,F401 - tests import them from here



def _time_scale() -> float:
    """One factor for every time limit of the suite (as orchestrator/test/helpers/time-scale.ts), so that limits follow
    the machine: BSFT_TEST_TIME_SCALE sets it; otherwise the one-minute load average per core when the suite starts,
    at least 1, at most 5. It only stretches limits written for an idle 2-core machine."""
    try:
        set_ = float(os.environ.get("BSFT_TEST_TIME_SCALE", ""))
        if set_ > 0:
            return max(1.0, set_)
    except ValueError:
        pass
    return min(5.0, max(1.0, os.getloadavg()[0] / (os.cpu_count() or 1)))


TIME_SCALE = _time_scale()


def limit(seconds: float) -> float:
    """A time limit in seconds, stretched by the suite's factor."""
    return seconds * TIME_SCALE


VOCAB = 300
BEHAVIORS = {"reactive": 256, "proactive": 257, "restraint": 258}
EOS = 259
HEADER = [1, 2, 3]  # stands for <|im_start|>assistant\n


def make_docs(n, seed, min_len=8, max_len=40, behaviors=None, eos=None, header=None, vocab_low=10, cue=0,
              reply_tokens=4):
    """Synthetic conversations: random context tokens, the assistant header, then a reply that starts with the
    behavior token and follows a learnable rule (behavior determined by the first context token), `reply_tokens`
    tokens after it, then the end token."""
    behaviors = behaviors or BEHAVIORS
    eos = EOS if eos is None else eos
    header = header or HEADER
    rng = np.random.default_rng(seed)
    docs, ids_out = [], []
    names = list(behaviors)
    for i in range(n):
        ctx_len = int(rng.integers(min_len, max_len))
        ctx = rng.integers(vocab_low, vocab_low + 240, ctx_len)
        # The behavior (and the reply) follow from one context token: the first (cue=0), or the last (cue=-1), which
        # is then one of three cue tokens (an easy rule for a tiny model to pick up).
        if cue == -1:
            ctx[-1] = vocab_low + int(ctx[-1]) % 3
        behavior = names[int(ctx[cue]) % 3]
        reply = [behaviors[behavior]] + [vocab_low + (int(ctx[cue]) + k) % 200 for k in range(reply_tokens)] + [eos]
        ids = [int(x) for x in ctx] + list(header) + reply + [4]
        mask = [0] * (ctx_len + len(header)) + [1] * len(reply) + [0]
        docs.append((ids, mask))
        ids_out.append(f"d{i:04d}")
    return docs, ids_out


QWEN = {"behaviors": {"reactive": 151665, "proactive": 151666, "restraint": 151667}, "eos": 151645,
        "header": [151644, 77091, 198], "vocab_low": 1000, "cue": -1}


def make_run(tmp, n_train=96, n_val=12, train=None, eval_=None, seed=0, model_dir=None, tokenizer=None, qwen=False,
             context=(8, 40), reply_tokens=4):
    """A run folder with a dataset, a model (the toy one unless model_dir) and train.json; returns the config path.
    `context`: the range of context lengths (tokens before the reply) of the documents; `reply_tokens`: tokens of
    each reply after its behavior token."""
    tmp = Path(tmp)
    ids_kw = QWEN if qwen else {}
    behavior_ids = QWEN["behaviors"] if qwen else BEHAVIORS
    ds = tmp / "dataset"
    ds.mkdir(parents=True, exist_ok=True)
    documents = {}
    for split, n, s in (("train", n_train, seed), ("val", n_val, seed + 1), ("test", n_val, seed + 2)):
        docs, ids = make_docs(n, s, min_len=context[0], max_len=context[1], reply_tokens=reply_tokens, **ids_kw)
        write_shard(ds / f"{split}.tokens.safetensors", docs)
        documents[split] = ids
    (ds / "manifest.json").write_text(json.dumps(manifest_for(behavior_ids, QWEN["eos"] if qwen else EOS, documents)))
    model = Path(model_dir) if model_dir else tmp / "model"
    model.mkdir(exist_ok=True)
    if not model_dir:
        (model / "config.json").write_text(json.dumps({"model_type": "bsft-toy", "vocab_size": VOCAB, "hidden_size": 32,
                                                    "num_hidden_layers": 2, "num_attention_heads": 4,
                                                    "num_key_value_heads": 2, "intermediate_size": 64}))
    config = {
        "run_id": "test-run",
        "model": {"name_or_path": str(model), "dtype": "float32", "init": "random"},
        "tokenizer": str(tokenizer or model),
        "train": {"method": "full", "lr": 3e-3, "schedule": "cosine", "warmup_steps": 2, "max_steps": 12,
                  "batch_tokens": 256, "grad_accum": 2, "grad_clip": 1.0, "checkpoint_every": 4, "keep_checkpoints": 2,
                  "preempt_grace_s": 30, "seed": 7, **(train or {})},
        "eval": {"every": 0, "splits": ["test"], "max_new_tokens": 3, "batch_size": 4, **(eval_ or {})},
        "conditioning": "token",
        "max_seq_len": max(128, context[1] + 16),
        "behaviors": {k: f"<|behavior:{k}|>" for k in behavior_ids},
        "dataset": {"manifest": str(ds / "manifest.json"),
                    "shards": {s: str(ds / f"{s}.tokens.safetensors") for s in ("train", "val", "test")},
                    "messages": {s: str(ds / f"{s}.messages.jsonl") for s in ("train", "val", "test")}},
        "output_dir": str(tmp),
        "predictions_dir": str(tmp / "predictions"),
    }
    path = tmp / "train.json"
    path.write_text(json.dumps(with_defaults(config, schema("train"))))
    return path


def trainer(command, config, *extra, env=None, **kwargs):
    """`python -m bsft_trainer <command> --config <config> ...` with pipes for stdin (when asked), stdout, stderr.
    A plain start is a child of the warm trainer (warm_trainer.py: the imports done once per session); a start with
    its own environment, other Popen arguments, or BSFT_TEST_COLD_TRAINER=1 is a fresh interpreter."""
    argv = [command, "--config", str(config), *extra]
    warm = env is None and set(kwargs) <= {"stdin"} and kwargs.get("stdin", subprocess.PIPE) == subprocess.PIPE
    env = {**os.environ, "PYTHONPATH": str(SRC), "PYTHONUNBUFFERED": "1", **(env or {})}
    if warm and os.environ.get("BSFT_TEST_COLD_TRAINER") != "1":
        from warm_trainer import WarmProcess

        return WarmProcess(argv, env, stdin=kwargs.get("stdin"))
    return subprocess.Popen([sys.executable, "-m", "bsft_trainer", *argv],
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, env=env, **kwargs)


def main_with(prelude, command, config, timeout=limit(300)):
    """Runs `python -m bsft_trainer <command> --config <config>` in-process after the Python `prelude` (which may
    replace a function or hide a package); returns (exit code, events, stderr)."""
    code = f"{prelude}\nimport sys\nfrom bsft_trainer.__main__ import main\nsys.exit(main([{command!r}, '--config', {str(config)!r}]))\n"
    p = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=timeout,
                       env={"PYTHONPATH": str(SRC), "PATH": "/usr/bin:/bin"})
    return p.returncode, events_of(p.stdout), p.stderr


def sigterm_at(config, event, step, *extra, timeout=limit(600)):
    """Runs `train` (with `extra` arguments), sends SIGTERM once `event` for `step` is seen; returns (exit code,
    every event, stderr)."""
    import signal

    p = trainer("train", config, *extra)
    seen = []
    for line in p.stdout:
        seen.append(json.loads(line))
        if seen[-1]["event"] == event and seen[-1].get("step") == step:
            p.send_signal(signal.SIGTERM)
            break
    rest, err = p.communicate(timeout=timeout)
    return p.returncode, seen + events_of(rest), err


def gone(pid):
    """True once `pid` has exited (gone, or a zombie waiting for its new parent)."""
    try:
        state = Path(f"/proc/{pid}/status").read_text()
    except FileNotFoundError:
        return True
    return "\nState:\tZ" in state


def wait_gone(pid, timeout):
    end = time.monotonic() + timeout
    while time.monotonic() < end:
        if gone(pid):
            return True
        time.sleep(0.05)
    return False


def events_of(stdout):
    return [json.loads(line) for line in stdout.splitlines() if line.strip()]


@pytest.fixture
def run_dir(tmp_path):
    return tmp_path


def assert_checkpointing_changes_nothing(config_for):
    """Trains the run `config_for(on)` with activation checkpointing off, then on: same losses and grad norms."""
    runs = {}
    for on in (False, True):
        p = trainer("train", config_for(on))
        out, err = p.communicate(timeout=limit(900))
        assert p.returncode == 0, err
        assert ("activation checkpointing: on" in err) == on
        runs[on] = [(e["loss"], e["grad_norm"]) for e in events_of(out) if e["event"] == "step"]
    assert len(runs[True]) == len(runs[False]) > 0
    for (la, ga), (lb, gb) in zip(runs[False], runs[True]):
        assert lb == pytest.approx(la, rel=1e-6) and gb == pytest.approx(ga, rel=1e-5)


TEST_BUDGET_S = 60  # a test over this on an idle 2-core machine (stretched by the suite's time scale) is named


def pytest_terminal_summary(terminalreporter):
    """After --durations' slowest list: every test over the budget, so that a test that grows is seen in the run
    that made it grow (as the orchestrator's suite does)."""
    budget = limit(TEST_BUDGET_S)
    over = []
    for reports in terminalreporter.stats.values():
        for r in reports:
            if getattr(r, "when", None) == "call" and getattr(r, "duration", 0) > budget:
                over.append((r.duration, r.nodeid))
    if over:
        terminalreporter.write_sep("-", f"{len(over)} test(s) over the budget of {budget:.0f} s")
        for seconds, name in sorted(over, reverse=True):
            terminalreporter.write_line(f"{seconds:8.1f} s  {name}")
