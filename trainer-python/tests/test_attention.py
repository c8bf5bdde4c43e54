"""Document-masked attention: the exact CPU path against a dense masked reference, and the CUDA varlen path's
adaptation to each torch release's `varlen_attn` signature (checked on the CPU with stand-ins that compute the
reference, since the flash kernel itself runs on CUDA only)."""
import inspect

import pytest
import torch

from bsft_trainer.training.attention import packed_attention, varlen_attention

CU = torch.tensor([0, 5, 6, 13, 20])
HQ, HKV, D = 4, 2, 8


def _qkv(seed=0):
    g = torch.Generator().manual_seed(seed)
    t = int(CU[-1])
    return (torch.randn(t, HQ, D, generator=g, dtype=torch.float64), torch.randn(t, HKV, D, generator=g, dtype=torch.float64),
            torch.randn(t, HKV, D, generator=g, dtype=torch.float64))


def _dense_reference(q, k, v, cu, scale=None):
    """One [T, T] mask: causal and same document. q [T, Hq, D], k/v [T, Hkv, D]."""
    t = q.shape[0]
    doc = torch.repeat_interleave(torch.arange(len(cu) - 1), cu[1:] - cu[:-1])
    allowed = (doc[:, None] == doc[None, :]) & torch.ones(t, t, dtype=torch.bool).tril()
    k = k.repeat_interleave(q.shape[1] // k.shape[1], dim=1)
    v = v.repeat_interleave(q.shape[1] // v.shape[1], dim=1)
    s = torch.einsum("thd,shd->hts", q, k) * (scale if scale is not None else q.shape[-1] ** -0.5)
    s = s.masked_fill(~allowed, float("-inf"))
    return torch.einsum("hts,shd->thd", torch.softmax(s, -1), v)


def test_cpu_path_is_exact_document_masked_causal_attention():
    q, k, v = _qkv()
    for scale in (None, 0.3):
        out = packed_attention(q, k, v, CU, int((CU[1:] - CU[:-1]).max()), scale=scale)
        assert torch.allclose(out, _dense_reference(q, k, v, CU, scale), atol=1e-12)


# Stand-ins with the signatures of torch's varlen_attn across releases; each checks what it is given the way
# that release does, then computes the reference.

def _torch_2_10(query, key, value, cu_seq_q, cu_seq_k, max_q, max_k, is_causal=False, return_aux=None):
    assert is_causal, "2.10 has no scale or window_size: causal is is_causal, a scale is folded into q"
    return _dense_reference(query, key, value, cu_seq_q)


def _torch_2_11(query, key, value, cu_seq_q, cu_seq_k, max_q, max_k, *, return_aux=None, scale=None,
                window_size=(-1, -1)):
    assert tuple(window_size) == (-1, 0) and key.shape[1] == HKV  # GQA natively (GPU-NOTES: 28 q / 4 kv heads)
    return _dense_reference(query, key, value, cu_seq_q, scale)


def _torch_2_12(query, key, value, cu_seq_q, cu_seq_k, max_q, max_k, *, return_aux=None, scale=None,
                window_size=(-1, -1), enable_gqa=False, seqused_k=None, block_table=None, num_splits=None):
    if not enable_gqa and query.shape[1] != key.shape[1]:
        raise ValueError("Expect query and key/value to have the same number of heads. Try setting enable_gqa=True")
    assert tuple(window_size) == (-1, 0) and cu_seq_q.dtype == torch.int32
    return _dense_reference(query, key, value, cu_seq_q, scale)


@pytest.mark.parametrize("fn", [_torch_2_10, _torch_2_11, _torch_2_12], ids=["2.10", "2.11", "2.12+"])
@pytest.mark.parametrize("scale", [None, 0.3])
def test_varlen_call_adapts_to_each_torch_signature(fn, scale):
    q, k, v = _qkv(1)
    out = varlen_attention(fn, q, k, v, CU, 7, scale=scale)
    assert torch.allclose(out, _dense_reference(q, k, v, CU, scale), atol=1e-12)


def test_installed_torch_varlen_attn_accepts_the_arguments_we_build():
    varlen = pytest.importorskip("torch.nn.attention.varlen", reason="this torch has no varlen_attn (torch < 2.10)")
    seen = {}

    def spy(*args, **kwargs):
        seen["bound"] = inspect.signature(varlen.varlen_attn).bind(*args, **kwargs)
        return args[0]

    spy.__signature__ = inspect.signature(varlen.varlen_attn)
    q, k, v = _qkv(2)
    varlen_attention(spy, q, k, v, CU, 7, scale=0.3)
    args = seen["bound"].arguments
    params = inspect.signature(varlen.varlen_attn).parameters
    assert args["key"].shape[1] == HKV  # never repeated: the kernel shares k/v heads itself
    if "enable_gqa" in params:
        assert args["enable_gqa"] is True
    assert args.get("window_size", (-1, 0)) == (-1, 0) or args.get("is_causal") is True
