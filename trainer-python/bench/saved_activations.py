"""Activation bytes a decoder layer keeps for backward, per token: the measurement behind the memory plan's
activation term (orchestrator/src/recipe/memory-plan.ts ACTIVATION_BYTES).

One decoder layer of a transformers model (default: Qwen2.5-7B's shape, recipes/models/qwen2.5-7b-shape) is built
in bf16 on the CPU as the trainer builds it (full fine-tuning: every weight trains; LoRA: frozen base, peft adapters
on all linear layers with the recipe's rank and dropout, computing in the model's dtype), and one forward of
--tokens tokens runs under `torch.autograd.graph.saved_tensors_hooks`: every tensor autograd keeps is counted once
(by its storage), weights and the rotary tables (computed once per model, shared by its layers) left out.

Attention is the one part that differs between the CPU and the GPU: on the GPU the trainer calls the varlen flash
kernel, which keeps its inputs q, k, v (k and v with the key/value heads only), its output and the softmax's
log-sum-exp (fp32, one per head and token). The layer runs here with a stand-in that keeps exactly those tensors
(its forward is plain causal attention), so the count is the GPU's; the CPU's per-document fallback keeps more.

  python trainer-python/bench/saved_activations.py                       # full, LoRA, LoRA without dropout
  python trainer-python/bench/saved_activations.py --config path/config.json --tokens 64 --json out.json

Printed per method: bytes per token and layer, and the plan's formula beside it (memory-plan.ts, read from
--plan-json when given: the orchestrator's test passes its own figures).
"""
from __future__ import annotations

import argparse
import json
import sys
import time
from pathlib import Path

import torch

ROOT = Path(__file__).resolve().parents[2]
SHAPE_7B = ROOT / "recipes" / "models" / "qwen2.5-7b-shape" / "config.json"
# (name, method, lora dropout, lora compute dtype): the recipe default is LoRA r16 on all linear layers with dropout
# 0.05, computing in the model's dtype (train.lora.compute_dtype "model"; "float32" is peft's default).
METHODS = (("full", "full", 0.0, "model"), ("lora", "lora", 0.05, "model"), ("lora-no-dropout", "lora", 0.0, "model"),
           ("lora-float32", "lora", 0.05, "float32"), ("lora-float32-no-dropout", "lora", 0.0, "float32"))


class _GpuDropout(torch.nn.Dropout):
    """Dropout as it runs on a GPU (`native_dropout`: the mask kept as bool). On a CPU, `F.dropout` keeps a mask in
    the input's dtype (twice the bytes in bf16)."""

    def forward(self, x):
        return torch.native_dropout(x, self.p, self.training)[0] if self.training and self.p > 0 else x


class _FlashLike(torch.autograd.Function):
    """Causal attention that keeps for backward what the varlen flash kernel keeps: q, k, v, out, lse (fp32)."""

    @staticmethod
    def forward(ctx, q, k, v, scale):  # q [T, Hq, D], k/v [T, Hkv, D]
        hq, hkv = q.shape[1], k.shape[1]
        qh = q.transpose(0, 1).float()
        kh = k.repeat_interleave(hq // hkv, dim=1).transpose(0, 1).float()
        vh = v.repeat_interleave(hq // hkv, dim=1).transpose(0, 1).float()
        s = (qh @ kh.transpose(-1, -2)) * scale
        n = q.shape[0]
        s = s.masked_fill(~torch.ones(n, n, dtype=torch.bool).tril(), float("-inf"))
        lse = torch.logsumexp(s, dim=-1)  # [Hq, T]
        out = (torch.softmax(s, dim=-1) @ vh).transpose(0, 1).to(q.dtype).contiguous()
        ctx.save_for_backward(q, k, v, out, lse)
        return out

    @staticmethod
    def backward(ctx, grad):  # never called: the count needs the forward only
        raise NotImplementedError


def _attention(module, query, key, value, attention_mask, scaling=None, dropout=0.0, **kwargs):
    """transformers AttentionInterface: query [1, H, T, D] -> ([1, T, H, D], None)."""
    q, k, v = (x[0].transpose(0, 1) for x in (query, key, value))
    scale = scaling if scaling is not None else q.shape[-1] ** -0.5
    return _FlashLike.apply(q, k, v, scale)[None], None


def layer_of(config_path: Path, method: str, dropout: float, compute_dtype: str = "model", r: int = 16, alpha: float = 32,
             overrides: dict | None = None):
    """One decoder layer of the model in `config_path` (bf16, CPU; weights left uninitialised: only shapes and dtypes
    matter here) and its rotary embedding module."""
    from transformers import AttentionInterface, AutoConfig, AutoModelForCausalLM

    AttentionInterface.register("bsft_saved_count", _attention)
    try:
        from transformers.masking_utils import AttentionMaskInterface

        AttentionMaskInterface.register("bsft_saved_count", lambda *a, **k: None)
    except ImportError:
        pass
    values = json.loads(config_path.read_text())
    values.update(overrides or {})
    values.update(num_hidden_layers=1, vocab_size=256, tie_word_embeddings=False, bos_token_id=None, eos_token_id=None)
    values.pop("layer_types", None)
    config = AutoConfig.for_model(**values)
    with torch.device("meta"):
        model = AutoModelForCausalLM.from_config(config, dtype=torch.bfloat16, attn_implementation="bsft_saved_count")
    model = model.to_empty(device="cpu")
    if method == "lora":
        from peft import LoraConfig, get_peft_model

        for p in model.parameters():
            p.requires_grad_(False)
        lora = LoraConfig(r=r, lora_alpha=alpha, lora_dropout=dropout, target_modules="all-linear", bias="none",
                          task_type="CAUSAL_LM")
        model = get_peft_model(model, lora, autocast_adapter_dtype=compute_dtype == "float32")
        model.train()
        for module in model.modules():
            if isinstance(getattr(module, "lora_dropout", None), torch.nn.ModuleDict):
                for name, d in module.lora_dropout.items():
                    if isinstance(d, torch.nn.Dropout):
                        module.lora_dropout[name] = _GpuDropout(d.p)
        base = model.get_base_model()
    else:
        model.train()
        base = model
    decoder = base.get_decoder()
    return decoder.layers[0], decoder.rotary_emb, config


def saved_bytes(config_path: Path, method: str, dropout: float, compute_dtype: str, tokens: int,
                overrides: dict | None = None) -> dict:
    """Bytes one decoder layer keeps for backward over `tokens` tokens, by dtype, and per token."""
    layer, rotary, config = layer_of(config_path, method, dropout, compute_dtype, overrides=overrides)
    x = torch.randn(1, tokens, config.hidden_size, dtype=torch.bfloat16, requires_grad=True)
    positions = torch.arange(tokens)[None]
    with torch.no_grad():
        cos, sin = rotary(x, positions)
    excluded = {t.untyped_storage().data_ptr() for t in (*layer.parameters(), *layer.buffers(), cos, sin)}
    seen: dict[int, tuple[int, str]] = {}

    def pack(t):
        if t.device.type == "cpu" and t.numel():
            s = t.untyped_storage()
            if s.data_ptr() not in excluded:
                seen[s.data_ptr()] = (s.nbytes(), str(t.dtype).replace("torch.", ""))
        return t

    started = time.monotonic()
    with torch.autograd.graph.saved_tensors_hooks(pack, lambda t: t):
        out = layer(x, position_embeddings=(cos, sin), position_ids=positions, attention_mask=None)
    out = out[0] if isinstance(out, tuple) else out
    assert out.requires_grad
    by_dtype: dict[str, int] = {}
    for nbytes, dtype in seen.values():
        by_dtype[dtype] = by_dtype.get(dtype, 0) + nbytes
    total = sum(by_dtype.values())
    return {"tokens": tokens, "bytes": total, "per_token": total / tokens, "by_dtype": by_dtype,
            "hidden_size": config.hidden_size, "intermediate_size": config.intermediate_size,
            "num_attention_heads": config.num_attention_heads, "num_key_value_heads": config.num_key_value_heads,
            "forward_s": round(time.monotonic() - started, 2)}


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--config", type=Path, default=SHAPE_7B, help="a transformers config.json (default: Qwen2.5-7B's)")
    ap.add_argument("--tokens", type=int, default=32)
    ap.add_argument("--set", default="{}", help='config overrides as JSON, e.g. \'{"hidden_size": 5120}\'')
    ap.add_argument("--methods", default=",".join(m[0] for m in METHODS), help="comma-separated: " + ", ".join(m[0] for m in METHODS))
    ap.add_argument("--plan-json", type=Path, help="the plan's bytes per token and layer by method, printed beside")
    ap.add_argument("--json", type=Path, help="write the figures here")
    args = ap.parse_args(argv)
    torch.set_num_threads(max(1, torch.get_num_threads()))
    plan = json.loads(args.plan_json.read_text()) if args.plan_json else {}
    wanted = args.methods.split(",")
    results = {}
    print(f"{'method':<26}{'measured B/token/layer':>24}{'plan':>12}{'plan/measured':>15}   ({args.config}, {args.tokens} tokens)")
    for name, method, dropout, compute_dtype in METHODS:
        if name not in wanted:
            continue
        res = saved_bytes(args.config, method, dropout, compute_dtype, args.tokens, json.loads(args.set))
        results[name] = res
        p = plan.get(name)
        per = res["per_token"]
        print(f"{name:<26}{per:>24,.0f}{(f'{p:,.0f}' if p else '-'):>12}{(f'{p / per:.3f}' if p else '-'):>15}"
              f"   by dtype {res['by_dtype']}", flush=True)
    if args.json:
        args.json.write_text(json.dumps(results, indent=1))
    return 0


if __name__ == "__main__":
    sys.exit(main())
