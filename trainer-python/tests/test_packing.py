import numpy as np
import torch

from bsft_trainer.training.packing import IGNORE, DataOrder, make_batch, plan_epoch
from bsft_trainer.data.shards import Shard
from conftest import make_docs, write_shard


def test_plan_is_seeded_covers_every_document_once_and_respects_the_budget():
    lengths = np.random.default_rng(0).integers(5, 60, 200)
    a = plan_epoch(lengths, 128, seed=1, epoch=0)
    assert a == plan_epoch(lengths, 128, seed=1, epoch=0)
    assert a != plan_epoch(lengths, 128, seed=1, epoch=1)
    assert a != plan_epoch(lengths, 128, seed=2, epoch=0)
    assert sorted(d for b in a for d in b) == list(range(200))
    assert all(sum(lengths[d] for d in b) <= 128 for b in a)


def test_batch_positions_restart_and_labels_never_cross_documents(tmp_path):
    docs = [([5, 6, 7, 8], [0, 0, 1, 1]), ([9, 10, 11], [0, 1, 1])]
    write_shard(tmp_path / "s.safetensors", docs)
    shard = Shard(tmp_path / "s.safetensors")
    b = make_batch(shard, [0, 1])
    assert b.input_ids.tolist() == [5, 6, 7, 8, 9, 10, 11]
    assert b.position_ids.tolist() == [0, 1, 2, 3, 0, 1, 2]
    assert b.cu_seqlens.tolist() == [0, 4, 7]
    # position t predicts token t+1 of its own document, only where that token is in the loss
    assert b.labels.tolist() == [IGNORE, 7, 8, IGNORE, 10, 11, IGNORE]
    assert b.n_loss_tokens == 4


def test_data_order_resumes_the_same_sequence(tmp_path):
    docs, _ = make_docs(50, 3)
    write_shard(tmp_path / "s.safetensors", docs)
    shard = Shard(tmp_path / "s.safetensors")
    a = DataOrder(shard, 200, seed=4)
    straight = [a.next_docs() for _ in range(40)]
    b = DataOrder(shard, 200, seed=4)
    first = [b.next_docs() for _ in range(13)]
    c = DataOrder(shard, 200, seed=4)
    c.load_state_dict(b.state_dict())
    assert first + [c.next_docs() for _ in range(27)] == straight


def test_shard_rejects_bad_files(tmp_path):
    import pytest

    from bsft_trainer.process.events import DataError

    (tmp_path / "bad").write_bytes(b"\x01")
    with pytest.raises(DataError):
        Shard(tmp_path / "bad")
    with pytest.raises(DataError, match="not found"):
        Shard(tmp_path / "missing")
    assert torch.is_tensor(make_batch(Shard(_one(tmp_path)), [0]).input_ids)


def _one(tmp_path):
    write_shard(tmp_path / "one.safetensors", [([1, 2, 3], [0, 1, 1])])
    return tmp_path / "one.safetensors"
