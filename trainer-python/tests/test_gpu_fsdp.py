"""FSDP2 on GPUs: the 7B-shaped model sharded on one GPU (a torchrun world of one: the code path of every rank of
a multi-GPU run), its peak memory printed for trainer-python/README.md; two GPUs against one process where there
are two. Skipped (and counted) without a GPU; `scripts/gpu-check.sh` runs them."""
import importlib.util
import json
import shutil
import subprocess
import sys
from pathlib import Path

import pytest
import torch

from conftest import SRC, events_of, limit, make_run, trainer

ROOT = Path(__file__).resolve().parents[2]
TOKENIZER = ROOT / "recipes" / "models" / "qwen2.5-tokenizer"
SHAPE = ROOT / "recipes" / "models" / "qwen2.5-7b-shape" / "config.json"
HAVE_HF = all(importlib.util.find_spec(m) is not None for m in ("transformers", "peft"))
pytestmark = [pytest.mark.gpu, pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA GPU"),
              pytest.mark.skipif(not HAVE_HF, reason="needs transformers and peft")]


def _run_7b(tmp, method, layers=None, steps=3):
    model = tmp / "qwen7b"
    model.mkdir(parents=True)
    shutil.copy(SHAPE, model / "config.json")
    cfg = make_run(tmp / "run", qwen=True, model_dir=model, tokenizer=TOKENIZER, n_train=64, context=(256, 3072),
                   train={"method": method, "lr": 1e-5, "max_steps": steps, "checkpoint_every": 2, "batch_tokens": 16384,
                          "activation_checkpointing": "auto"},
                   eval_={"max_new_tokens": 2})
    c = json.loads(cfg.read_text())
    c["model"].update({"dtype": "bfloat16", "init": "random", **({"config_overrides": {"num_hidden_layers": layers}} if layers else {})})
    cfg.write_text(json.dumps(c))
    return cfg


def _torchrun(cfg, n):
    env = {"PYTHONPATH": str(SRC), "PYTHONUNBUFFERED": "1"}
    import os

    return subprocess.run([sys.executable, "-m", "torch.distributed.run", "--standalone", "--nproc-per-node", str(n),
                           "-m", "bsft_trainer", "train", "--config", str(cfg)], capture_output=True, text=True,
                          timeout=limit(1200), env={**os.environ, **env})


@pytest.mark.parametrize("method,layers", [("lora", None), ("full", 4)])
def test_fsdp2_on_one_gpu_trains_the_7b_shape_and_reports_its_peak_memory(tmp_path, method, layers):
    cfg = _run_7b(tmp_path, method, layers)
    p = _torchrun(cfg, 1)
    assert p.returncode == 0, p.stderr[-4000:]
    events = events_of(p.stdout)
    steps = [e for e in events if e["event"] == "step"]
    checkpoints = [e for e in events if e["event"] == "checkpoint"]
    assert len(steps) == 3 and checkpoints and events[-1]["event"] == "done"
    print(f"FSDP2, 1 GPU, Qwen2.5-7B shape{f' ({layers} layers)' if layers else ''}, {method}, 16384 tokens a step: "
          f"peak {max(e['mem_gib'] for e in steps):.1f} GiB; {max(e['tokens_per_s'] for e in steps):,.0f} tok/s at best; "
          f"checkpoints {[(c['step'], round(c['size_bytes'] / 2**30, 2), c['save_s']) for c in checkpoints]} (step, GiB, s)")


@pytest.mark.skipif(torch.cuda.device_count() < 2, reason="needs 2 GPUs")
def test_two_gpus_give_the_update_of_one_gpu_over_the_same_global_batch(tmp_path):
    from test_hf import TINY

    def cfg(d, accum):
        return make_run(d, qwen=True, model_dir=TINY, tokenizer=TOKENIZER, n_train=48,
                        train={"method": "full", "lr": 1e-4, "max_steps": 4, "batch_tokens": 512, "grad_accum": accum},
                        eval_={"max_new_tokens": 2})

    one = trainer("train", cfg(tmp_path / "one", 2))
    out1, err1 = one.communicate(timeout=limit(900))
    assert one.returncode == 0, err1
    two = trainer("train", cfg(tmp_path / "two", 1), "--nproc-per-node", "2")
    out2, err2 = two.communicate(timeout=limit(900))
    assert two.returncode == 0, err2
    a = {e["step"]: e["loss"] for e in events_of(out1) if e["event"] == "step"}
    b = {e["step"]: e["loss"] for e in events_of(out2) if e["event"] == "step"}
    assert sorted(a) == sorted(b)
    for s in a:  # bf16 compute: the sums differ in order
        assert b[s] == pytest.approx(a[s], rel=2e-2)
