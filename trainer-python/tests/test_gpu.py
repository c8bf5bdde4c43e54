"""What only a CUDA GPU can check: the varlen flash kernel's document masking in bf16, a training step free of
host synchronisation, `activation_checkpointing: auto` measuring real device memory, and regional compilation on
the GPU. Skipped (and counted) without a GPU; `scripts/gpu-check.sh` runs them on the project's GPU machine."""
import importlib.util
from pathlib import Path

import pytest
import torch

from bsft_trainer.data import synthetic
from conftest import events_of, limit, trainer

ROOT = Path(__file__).resolve().parents[2]
TINY = ROOT / "recipes" / "models" / "qwen2.5-tiny"
TOKENIZER = ROOT / "recipes" / "models" / "qwen2.5-tokenizer"
BEHAVIORS = {"reactive": 151665, "proactive": 151666, "restraint": 151667}
HAVE_HF = all(importlib.util.find_spec(m) is not None for m in ("transformers", "peft"))
pytestmark = [pytest.mark.gpu, pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA GPU")]
needs_hf = pytest.mark.skipif(not HAVE_HF, reason="needs transformers and peft")


def _tiny_run(tmp, **train):
    docs = synthetic.conversations(64, 32, 200, 151000, seed=0)
    return synthetic.write_run(tmp, {"train": docs, "val": docs[:4], "test": docs[:8]}, BEHAVIORS, 151645, {
        "run_id": "gpu-test",
        "model": {"name_or_path": str(TINY), "dtype": "bfloat16", "init": "random"},
        "tokenizer": str(TOKENIZER),
        "train": {"method": "lora", "lr": 1e-3, "max_steps": 4, "batch_tokens": 1024, **train},
    })


def test_varlen_flash_attention_is_document_masked_in_bf16():
    from bsft_trainer.training import attention

    assert attention._varlen_attn is not None, f"torch {torch.__version__} has no torch.nn.attention.varlen"
    torch.manual_seed(0)
    lengths = [700, 31, 1200, 5]
    cu = torch.tensor([0] + list(torch.tensor(lengths).cumsum(0)), dtype=torch.int32, device="cuda")
    t = sum(lengths)
    q = torch.randn(t, 28, 128, device="cuda", dtype=torch.bfloat16)
    k, v = (torch.randn(t, 4, 128, device="cuda", dtype=torch.bfloat16) for _ in range(2))
    out = attention.packed_attention(q, k, v, cu, max(lengths))
    ref = attention._per_document(q.double(), k.double(), v.double(), cu, None)
    rel = float((out.double() - ref).norm() / ref.norm())
    assert rel < 1e-2, rel


@needs_hf
def test_packed_bf16_loss_equals_the_documents_run_alone(tmp_path):
    from bsft_trainer.data import config as config_mod
    from bsft_trainer.process.fence import NoFence
    from bsft_trainer.training.loss import chunked_ce_sum
    from bsft_trainer.modeling.model import build
    from bsft_trainer.training.packing import make_batch
    from bsft_trainer.data.shards import Shard

    cfg = config_mod.load(str(_tiny_run(tmp_path)))
    tm = build(cfg, config_mod.load_manifest(cfg), torch.device("cuda"), NoFence(), keep_base=False)
    shard = Shard(cfg.shards["train"])

    def loss(ids):
        b = make_batch(shard, ids).to("cuda")
        w, rows = tm.output()
        return float(chunked_ce_sum(tm.hidden(b), b.labels, w, rows, index=b.loss_index))

    with torch.no_grad():
        packed, alone = loss(list(range(6))), sum(loss([d]) for d in range(6))
    assert abs(packed - alone) / alone < 5e-3, (packed, alone)


@needs_hf
def test_a_training_step_needs_no_host_synchronisation(tmp_path):
    """After the first step (optimizer states allocated), forward, backward, clipping and the optimizer step queue
    work without waiting for the device: torch's sync debug mode raises on any synchronising call."""
    from bsft_trainer.data import config as config_mod
    from bsft_trainer.process.fence import NoFence
    from bsft_trainer.modeling.model import build
    from bsft_trainer.training.packing import DataOrder
    from bsft_trainer.training.precision import MasterWeights
    from bsft_trainer.data.shards import Shard
    from bsft_trainer.training.train import forward_backward

    cfg = config_mod.load(str(_tiny_run(tmp_path)))
    device = torch.device("cuda")
    tm = build(cfg, config_mod.load_manifest(cfg), device, NoFence(), keep_base=False)
    tm.train(True)
    masters = MasterWeights(tm.named_trainable())
    optimizer = torch.optim.AdamW(masters.parameters(), lr=1e-4)
    data = DataOrder(Shard(cfg.shards["train"]), cfg.train.batch_tokens, 0)

    def step():
        batch = data.next_batch()
        forward_backward(tm, [batch], device, max(1, batch.n_loss_tokens))
        masters.grads_to_masters()
        torch.nn.utils.clip_grad_norm_(masters.parameters(), 1.0)
        optimizer.step()
        masters.masters_to_model()
        masters.zero_grad()

    step()
    torch.cuda.synchronize()
    torch.cuda.set_sync_debug_mode("error")
    try:
        step()
    finally:
        torch.cuda.set_sync_debug_mode("default")
    torch.cuda.synchronize()


@needs_hf
def test_auto_checkpointing_measures_the_first_step_on_the_device(tmp_path):
    p = trainer("train", _tiny_run(tmp_path))
    out, err = p.communicate(timeout=limit(600))
    assert p.returncode == 0, err
    assert "activation checkpointing: off (first step peaked at" in err, err
    steps = [e for e in events_of(out) if e["event"] == "step"]
    assert len(steps) == 4 and all(e["mem_gib"] > 0 for e in steps)


@needs_hf
def test_regional_compile_gives_the_eager_losses_on_the_gpu(tmp_path):
    runs = {}
    for compiled in (False, True):
        p = trainer("train", _tiny_run(tmp_path / str(compiled), compile=compiled, activation_checkpointing=False))
        out, err = p.communicate(timeout=limit(900))
        assert p.returncode == 0, err
        runs[compiled] = [e["loss"] for e in events_of(out) if e["event"] == "step"]
    for a, b in zip(runs[False], runs[True], strict=True):
        assert b == pytest.approx(a, rel=2e-2)
    print(f"eager losses {runs[False]}; compiled {runs[True]}")
