"""A tiny pure-PyTorch causal LM with the Qwen2 layout (RMSNorm, RoPE, GQA attention, SwiGLU MLP, untied head).

Used by the trainer's own tests and CI, where transformers is not installed: a config.json with
`"model_type": "bsft-toy"` selects it. It runs the same training loop, packing, attention and checkpoints as the
real models; it is not a model anyone should fine-tune.
"""
from __future__ import annotations

import torch
import torch.utils.checkpoint
from torch import nn

from ..training.attention import packed_attention
from torch import Tensor


class RMSNorm(nn.Module):
    def __init__(self, dim, eps=1e-6):
        super().__init__()
        self.weight = nn.Parameter(torch.ones(dim))
        self.eps = eps

    def forward(self, x):
        var = x.float().pow(2).mean(-1, keepdim=True)
        return (x.float() * torch.rsqrt(var + self.eps)).to(x.dtype) * self.weight


def rope(x: Tensor, positions: Tensor, theta: float = 10000.0) -> Tensor:
    """x [T, H, D], positions [T]."""
    dim = x.shape[-1]
    inv = 1.0 / (theta ** (torch.arange(0, dim, 2, device=x.device, dtype=torch.float32) / dim))
    ang = positions.float()[:, None] * inv[None, :]
    cos, sin = ang.cos()[:, None, :], ang.sin()[:, None, :]
    x1, x2 = x[..., : dim // 2].float(), x[..., dim // 2:].float()
    return torch.cat([x1 * cos - x2 * sin, x2 * cos + x1 * sin], dim=-1).to(x.dtype)


class Block(nn.Module):
    def __init__(self, c):
        super().__init__()
        h, self.nh, self.nkv = c["hidden_size"], c["num_attention_heads"], c["num_key_value_heads"]
        self.hd = h // self.nh
        self.input_layernorm = RMSNorm(h)
        self.q_proj = nn.Linear(h, self.nh * self.hd)
        self.k_proj = nn.Linear(h, self.nkv * self.hd)
        self.v_proj = nn.Linear(h, self.nkv * self.hd)
        self.o_proj = nn.Linear(self.nh * self.hd, h, bias=False)
        self.post_attention_layernorm = RMSNorm(h)
        self.gate_proj = nn.Linear(h, c["intermediate_size"], bias=False)
        self.up_proj = nn.Linear(h, c["intermediate_size"], bias=False)
        self.down_proj = nn.Linear(c["intermediate_size"], h, bias=False)

    def forward(self, x, positions, cu_seqlens, max_seqlen):
        t = x.shape[0]
        y = self.input_layernorm(x)
        q = rope(self.q_proj(y).view(t, self.nh, self.hd), positions)
        k = rope(self.k_proj(y).view(t, self.nkv, self.hd), positions)
        v = self.v_proj(y).view(t, self.nkv, self.hd)
        x = x + self.o_proj(packed_attention(q, k, v, cu_seqlens, max_seqlen).reshape(t, -1))
        y = self.post_attention_layernorm(x)
        return x + self.down_proj(nn.functional.silu(self.gate_proj(y)) * self.up_proj(y))


class ToyLM(nn.Module):
    def __init__(self, config):
        super().__init__()
        self.config = dict(config)
        self.embed_tokens = nn.Embedding(config["vocab_size"], config["hidden_size"])
        self.layers = nn.ModuleList(Block(config) for _ in range(config["num_hidden_layers"]))
        self.norm = RMSNorm(config["hidden_size"])
        self.lm_head = nn.Linear(config["hidden_size"], config["vocab_size"], bias=False)
        std = config.get("initializer_range", 0.02)
        for m in self.modules():
            if isinstance(m, (nn.Linear, nn.Embedding)):
                nn.init.normal_(m.weight, std=std)
                if getattr(m, "bias", None) is not None:
                    nn.init.zeros_(m.bias)

    def hidden(self, inputs_embeds, position_ids, cu_seqlens, max_seqlen, recompute=0):
        """inputs_embeds [T, H] -> final hidden states [T, H]; the first `recompute` layers recompute their
        activations in backward."""
        x = inputs_embeds
        for i, layer in enumerate(self.layers):
            if i < recompute and self.training:
                x = torch.utils.checkpoint.checkpoint(layer, x, position_ids, cu_seqlens, max_seqlen, use_reentrant=False)
            else:
                x = layer(x, position_ids, cu_seqlens, max_seqlen)
        return self.norm(x)
