import pytest
from types import SimpleNamespace
import torch

from bsft_trainer.training.loss import chunked_ce_sum, reference_ce_sum
from bsft_trainer.training.packing import make_batch
from bsft_trainer.data.shards import Shard
from bsft_trainer.modeling.token_rows import TokenRows, init_rows_in_place, row_sources
from bsft_trainer.modeling.toy import ToyLM
from conftest import VOCAB, make_docs, write_shard

CONFIG = {"vocab_size": VOCAB, "hidden_size": 32, "num_hidden_layers": 2, "num_attention_heads": 4,
          "num_key_value_heads": 2, "intermediate_size": 64}


def _model():
    torch.manual_seed(0)
    return ToyLM(CONFIG).double()


def _loss(model, batch):
    h = model.hidden(model.embed_tokens(batch.input_ids), batch.position_ids, batch.cu_seqlens, batch.max_seqlen)
    return chunked_ce_sum(h, batch.labels, model.lm_head.weight, chunk=7)


def test_packed_loss_equals_the_sum_of_per_document_losses(tmp_path):
    docs, _ = make_docs(6, 1)
    write_shard(tmp_path / "s.safetensors", docs)
    shard = Shard(tmp_path / "s.safetensors")
    model = _model()
    packed = _loss(model, make_batch(shard, list(range(6))))
    alone = sum(_loss(model, make_batch(shard, [d])) for d in range(6))
    assert torch.allclose(packed, alone, rtol=1e-12, atol=1e-10)
    # Without document masking the two would differ: the check has teeth.
    b = make_batch(shard, list(range(6)))
    b.cu_seqlens = torch.tensor([0, b.n_tokens], dtype=torch.int32)
    b.position_ids = torch.arange(b.n_tokens)
    assert not torch.allclose(_loss(model, b), alone)


def test_packed_gradients_equal_per_document_gradients(tmp_path):
    docs, _ = make_docs(4, 2)
    write_shard(tmp_path / "s.safetensors", docs)
    shard = Shard(tmp_path / "s.safetensors")
    m1, m2 = _model(), _model()
    _loss(m1, make_batch(shard, [0, 1, 2, 3])).backward()
    for d in range(4):
        _loss(m2, make_batch(shard, [d])).backward()
    for (n, p1), (_, p2) in zip(m1.named_parameters(), m2.named_parameters()):
        assert torch.allclose(p1.grad, p2.grad, rtol=1e-9, atol=1e-12), n


def test_chunked_ce_equals_full_logits_reference():
    torch.manual_seed(1)
    h = torch.randn(50, 16, dtype=torch.float64)
    w = torch.randn(VOCAB, 16, dtype=torch.float64)
    y = torch.randint(0, VOCAB, (50,))
    y[::3] = -100
    assert torch.allclose(chunked_ce_sum(h, y, w, chunk=8), reference_ce_sum(h @ w.t(), y).double())


def test_token_rows_are_initialised_by_id_and_only_they_learn():
    torch.manual_seed(2)
    embed = torch.nn.Embedding(VOCAB, 8)
    head = torch.nn.Linear(8, VOCAB, bias=False)
    for p in (*embed.parameters(), *head.parameters()):
        p.requires_grad_(False)
    before = embed.weight.clone()
    rows = TokenRows(embed.weight, head.weight, 256, 3)
    assert torch.allclose(rows.embed, embed.weight[:256].mean(0).expand(3, -1))
    assert torch.allclose(rows.out, head.weight[:256].mean(0).expand(3, -1))
    ids = torch.tensor([5, 256, 7, 258])
    emb = rows.embed_ids(ids, embed(ids))
    assert torch.equal(emb[0], embed.weight[5]) and torch.equal(emb[1], rows.embed[0]) and torch.equal(emb[3], rows.embed[2])
    h = emb * 1.0
    labels = torch.tensor([256, 257, -100, 9])
    chunked_ce_sum(h, labels, head.weight, rows.output()).backward()
    assert rows.embed.grad is not None and rows.out.grad is not None
    assert torch.equal(embed.weight, before)


def test_token_init_description_starts_each_row_from_its_description_tokens():
    torch.manual_seed(3)
    embed = torch.nn.Embedding(VOCAB, 8).weight.detach()
    head = torch.nn.Linear(8, VOCAB, bias=False).weight.detach()
    manifest = SimpleNamespace(behavior_ids={"proactive": 257, "reactive": 256, "restraint": 258},
                               behavior_descriptions={"reactive": [5, 6], "proactive": [7], "restraint": [8, 9, 10]})
    sources = row_sources("description", manifest)
    assert sources == [[5, 6], [7], [8, 9, 10]]  # in ID order, whatever the manifest's key order
    rows = TokenRows(embed, head, 256, 3, sources)
    assert torch.allclose(rows.embed[0], embed[[5, 6]].mean(0)) and torch.equal(rows.embed[1], embed[7])
    assert torch.allclose(rows.out[2], head[[8, 9, 10]].mean(0))
    full_e, full_h = embed.clone(), head.clone()
    init_rows_in_place(full_e, full_h, 256, 3, sources)
    assert torch.allclose(full_e[256:259], rows.embed) and torch.allclose(full_h[256:259], rows.out)
    assert torch.equal(full_e[:256], embed[:256])
    assert row_sources("mean", manifest) is None


def test_token_init_description_needs_descriptions_below_the_new_ids():
    from bsft_trainer.process.events import DataError

    ids = {"reactive": 256, "proactive": 257, "restraint": 258}
    for descriptions, message in (
        (None, "no behavior_descriptions"),
        ({"reactive": [1], "proactive": [], "restraint": [2]}, "behavior_descriptions.proactive"),
        ({"reactive": [1], "proactive": [2], "restraint": [257]}, "behavior_descriptions.restraint"),
    ):
        manifest = SimpleNamespace(behavior_ids=ids, behavior_descriptions=descriptions or {})
        with pytest.raises(DataError, match=message):
            row_sources("description", manifest)


def _saved_bytes(fn):
    """Bytes of the tensors autograd keeps for the backward pass of `fn()`."""
    sizes = []

    def pack(t):
        sizes.append(t.numel() * t.element_size())
        return t

    with torch.autograd.graph.saved_tensors_hooks(pack, lambda t: t):
        out = fn()
    return out, sum(sizes)


@pytest.mark.parametrize("dtype", [torch.float32, torch.bfloat16])
def test_chunked_loss_keeps_hidden_sized_state_per_loss_token_not_vocabulary_sized(dtype):
    """The loss and its gradient are computed chunk by chunk: what backward keeps grows by H values (in the hidden
    states' dtype) and one 8-byte index per loss token — 7.2 KB at Qwen2.5-7B's H = 3584 in bf16 — not by a chunk of
    fp32 logits (V values per token, 608 KB at Qwen2.5's vocabulary). Besides, when the output weight trains, the
    fp32 vocabulary x hidden gradient (and the rows') is held from the forward to the backward whatever the tokens
    (2.18 GB at 7B; the orchestrator's memory plan counts both)."""
    torch.manual_seed(3)
    hdim, vocab, n_rows = 16, 4000, 3
    w = torch.randn(vocab, hdim, requires_grad=True, dtype=dtype)
    rows = torch.randn(n_rows, hdim, requires_grad=True, dtype=dtype)

    def kept(n):
        h = torch.randn(n, hdim, requires_grad=True, dtype=dtype)
        y = torch.randint(0, vocab, (n,))
        return _saved_bytes(lambda: chunked_ce_sum(h, y, w, (100, rows), chunk=32))[1]

    per_token = (kept(512) - kept(128)) / 384
    element = torch.finfo(dtype).bits // 8
    assert per_token == hdim * element + 8, per_token  # vocabulary logits would be 16,000 B per token here
    assert kept(128) - 128 * per_token == (vocab + n_rows) * hdim * 4  # the fp32 weight and rows gradients


@pytest.mark.parametrize("with_rows", [False, True])
def test_chunked_loss_gradients_equal_the_full_logits_reference(with_rows):
    torch.manual_seed(4)
    n, hdim, vocab, first = 40, 12, 300, 256
    h = torch.randn(n, hdim, dtype=torch.float64, requires_grad=True)
    w = torch.randn(vocab, hdim, dtype=torch.float64, requires_grad=True)
    rows = torch.randn(3, hdim, dtype=torch.float64, requires_grad=True) if with_rows else None
    y = torch.randint(0, vocab, (n,))
    y[::4] = -100
    y[1] = first + 1  # a behavior-token label
    new_rows = (first, rows) if with_rows else None
    fused = chunked_ce_sum(h, y, w, new_rows, chunk=7) * 0.5  # a scaled loss: backward multiplies by grad_out
    grads = torch.autograd.grad(fused, [t for t in (h, w, rows) if t is not None])
    ref_logits = h @ w.t()
    if with_rows:
        ref_logits = torch.cat([ref_logits[:, :first], h @ rows.t(), ref_logits[:, first + 3:]], dim=1)
    ref = reference_ce_sum(ref_logits, y) * 0.5
    ref_grads = torch.autograd.grad(ref, [t for t in (h, w, rows) if t is not None])
    assert torch.allclose(fused, ref, rtol=1e-12)
    for g, r in zip(grads, ref_grads):
        assert torch.allclose(g, r, rtol=1e-10, atol=1e-12)


def test_chunked_loss_without_gradients_gives_the_same_value():
    torch.manual_seed(5)
    h, w = torch.randn(30, 8, requires_grad=True), torch.randn(VOCAB, 8, requires_grad=True)
    y = torch.randint(0, VOCAB, (30,))
    with torch.no_grad():
        plain = chunked_ce_sum(h, y, w, chunk=4)
    assert torch.allclose(plain, chunked_ce_sum(h, y, w, chunk=4).detach(), rtol=1e-6)
