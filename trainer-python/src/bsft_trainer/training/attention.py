"""Document-masked causal attention over packed batches: no token attends across a document boundary.

`packed_attention` takes q [T, Hq, D], k/v [T, Hkv, D] and the document boundaries `cu_seqlens` [D+1]. On CUDA
in bf16/fp16 with torch's varlen flash kernel (torch >= 2.10) it calls that; elsewhere (CPU, fp32) it runs causal
attention document by document (exact; one host read of the boundaries per call).

`varlen_attn`'s signature changed between torch releases: 2.10 takes `is_causal` and no `scale`; later ones take
`scale` and express causality as `window_size=(-1, 0)`. Key/value with fewer heads than the query (GQA, as in
Qwen2.5) go in as they are (measured on torch 2.11, see GPU-NOTES); from 2.12 that needs `enable_gqa=True`.
`varlen_attention` reads the signature and adapts.
"""
from __future__ import annotations

import functools
import inspect

import torch
import torch.nn.functional as F
from collections.abc import Callable
from torch import Tensor

try:  # torch >= 2.10
    from torch.nn.attention.varlen import varlen_attn as _varlen_attn
except ImportError:  # pragma: no cover - depends on the torch build
    _varlen_attn = None


def _causal(q, k, v, scale):
    """One document: q/k/v [H, L, D] -> [H, L, D]."""
    if hasattr(F, "scaled_dot_product_attention"):
        kwargs = {"scale": scale} if scale is not None else {}
        return F.scaled_dot_product_attention(q, k, v, is_causal=True, **kwargs)
    # torch < 2.0 (Debian's CPU build used in CI)
    s = (q @ k.transpose(-1, -2)) * (scale if scale is not None else q.shape[-1] ** -0.5)
    n = q.shape[1]
    s = s.masked_fill(~torch.ones(n, n, dtype=torch.bool, device=q.device).tril(), float("-inf"))
    return torch.softmax(s.float(), dim=-1).to(v.dtype) @ v


@functools.lru_cache(maxsize=None)
def _parameters(fn):
    """Parameter names of `fn`, read once: attention runs in every layer of every micro-batch."""
    return frozenset(inspect.signature(fn).parameters)


def varlen_attention(fn: Callable, q: Tensor, k: Tensor, v: Tensor, cu_seqlens: Tensor, max_seqlen: int, scale: float | None = None) -> Tensor:
    """Causal packed attention through a `varlen_attn`-like `fn`, whatever its torch release's signature."""
    params = _parameters(fn)
    hq, hkv, dim = q.shape[1], k.shape[1], q.shape[2]
    kwargs = {"window_size": (-1, 0)} if "window_size" in params else {"is_causal": True}
    if scale is not None and abs(scale - dim ** -0.5) > 1e-12:
        if "scale" in params:
            kwargs["scale"] = scale
        else:  # softmax(q k^T / sqrt(D)) with q scaled by scale * sqrt(D) is softmax(q k^T * scale)
            q = q * (scale * dim ** 0.5)
    if hkv != hq and "enable_gqa" in params:  # before 2.12 the flash kernel takes fewer k/v heads as they are
        kwargs["enable_gqa"] = True
    cu = cu_seqlens.to(device=q.device, dtype=torch.int32)
    return fn(q, k, v, cu, cu, max_seqlen, max_seqlen, **kwargs)


def _not_compiled(fn):
    """The per-document fallback slices by data-dependent boundaries: torch.compile (train.compile) leaves it eager."""
    disable = getattr(getattr(torch, "compiler", None), "disable", None)  # torch >= 2.1
    return disable(fn) if disable is not None else fn


@_not_compiled
def _per_document(q: Tensor, k: Tensor, v: Tensor, cu_seqlens: Tensor, scale: float | None) -> Tensor:
    hq, hkv = q.shape[1], k.shape[1]
    if hkv != hq:
        k = k.repeat_interleave(hq // hkv, dim=1)
        v = v.repeat_interleave(hq // hkv, dim=1)
    # Exact: attention per document, O(sum of squared document lengths).
    bounds = cu_seqlens.tolist()
    out = [_causal(q[s:e].transpose(0, 1), k[s:e].transpose(0, 1), v[s:e].transpose(0, 1), scale).transpose(0, 1)
           for s, e in zip(bounds[:-1], bounds[1:])]
    return torch.cat(out, dim=0)


def packed_attention(q: Tensor, k: Tensor, v: Tensor, cu_seqlens: Tensor, max_seqlen: int, scale: float | None = None) -> Tensor:
    """q [T, Hq, D], k/v [T, Hkv, D] -> [T, Hq, D]; causal inside each document, nothing across documents."""
    if _varlen_attn is not None and q.is_cuda and q.dtype in (torch.bfloat16, torch.float16):
        return varlen_attention(_varlen_attn, q, k, v, cu_seqlens, max_seqlen, scale)
    return _per_document(q, k, v, cu_seqlens, scale)
