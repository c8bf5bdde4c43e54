"""The throughput benchmark and the GPU check script, exercised on the CPU (their GPU runs happen on the device
machine: scripts/gpu-check.sh)."""
import importlib.util
import json
import os
import subprocess
import sys
from pathlib import Path

import pytest
import torch
from conftest import limit

ROOT = Path(__file__).resolve().parents[2]
HAVE_HF = all(importlib.util.find_spec(m) is not None for m in ("transformers", "peft"))


@pytest.mark.hf
@pytest.mark.skipif(not HAVE_HF, reason="needs transformers and peft")
def test_throughput_benchmark_prints_both_rows_on_the_tiny_model(tmp_path):
    out = tmp_path / "throughput.json"
    p = subprocess.run([sys.executable, str(ROOT / "trainer-python" / "bench" / "throughput.py"), "--device", "cpu",
                        "--steps", "2", "--warmup", "1", "--json", str(out)],
                       capture_output=True, text=True, timeout=limit(600), env={**os.environ, "PYTHONUNBUFFERED": "1"})
    assert p.returncode == 0, p.stderr[-3000:]
    table = [line for line in p.stdout.splitlines() if line.startswith("| ")]
    assert [line.split("|")[1].strip() for line in table] == ["run", "bsft", "hf-default"], p.stdout
    result = json.loads(out.read_text())
    assert result["shape"] == "tiny" and result["packing_rel_diff"] < 1e-5
    for row in result["rows"].values():
        assert row["tokens_per_s"] > 0 and row["tokens"] > 0 and row["steps"] == 2
    assert result["rows"]["hf-default"]["vs_hf_default"] == 1.0
    print(p.stdout)


@pytest.mark.hf
@pytest.mark.skipif(not HAVE_HF, reason="needs transformers and peft")
def test_predict_benchmark_runs_both_engines_on_the_same_prompts(tmp_path):
    out = tmp_path / "predict.json"
    p = subprocess.run([sys.executable, str(ROOT / "trainer-python" / "bench" / "predict.py"), "--device", "cpu", "--prompts", "10",
                        "--min-len", "20", "--max-len", "300", "--max-new-tokens", "16", "--batch-size", "4", "--json", str(out)],
                       capture_output=True, text=True, timeout=limit(600), env={**os.environ, "PYTHONUNBUFFERED": "1"})
    assert p.returncode == 0, p.stderr[-3000:]
    result = json.loads(out.read_text())
    static, continuous = result["rows"]
    assert (static["engine"], continuous["engine"]) == ("static", "continuous")
    # The same greedy replies from both engines, of varied lengths, the same tokens counted.
    assert continuous["same_replies_as_static"] == 10 and continuous["generated_tokens"] == static["generated_tokens"]
    assert static["ratio_to_static"] == 1.0 and continuous["tokens_per_s"] > 0
    assert "continuous / static:" in p.stdout and "distinct)" in p.stdout
    print(p.stdout)


def test_gpu_check_dry_run_lists_every_step():
    p = subprocess.run(["bash", str(ROOT / "scripts" / "gpu-check.sh"), "--dry-run"], capture_output=True, text=True, timeout=limit(60))
    assert p.returncode == 0, p.stderr
    steps = [line.split(".", 1)[1].strip().split(" ")[0] for line in p.stdout.splitlines() if line[:4].strip().rstrip(".").isdigit()]
    assert steps == ["environment:", "gpu-tests", "qwen-7b-shape", "throughput", "predict-bench", "hf-tests", "fsdp2"], p.stdout
    assert "pip install --no-deps" in p.stdout and "report.md" in p.stdout


@pytest.mark.skipif(torch.cuda.is_available(), reason="checks the refusal on a machine without a GPU")
def test_gpu_check_refuses_a_machine_without_a_gpu(tmp_path):
    p = subprocess.run(["bash", str(ROOT / "scripts" / "gpu-check.sh"), str(tmp_path / "report")], capture_output=True,
                       text=True, timeout=limit(120), env={**os.environ, "BSFT_PYTHON": sys.executable})
    assert p.returncode == 2 and "no CUDA GPU" in p.stderr and "--allow-cpu" in p.stderr
