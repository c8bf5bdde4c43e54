"""A sharded run's model is built on the meta device and each rank fills only its shard (modeling/materialize.py):
the same values as the whole model built by one process (from_pretrained for a checkpoint, the seeded init for a
random model), with a rank's host memory its shard plus a block, not a model (issue 38, part 1).

The ranks are those of trainer-python/bench/sharded_load.py (2 gloo ranks, FSDP2), which compares the two builds."""
import importlib.util
import json
import subprocess
import sys
from pathlib import Path

import pytest
import torch

from bsft_trainer.parallel.distributed import available
from conftest import limit

HAVE_HF = all(importlib.util.find_spec(m) is not None for m in ("transformers", "peft", "safetensors"))
pytestmark = [pytest.mark.hf, pytest.mark.skipif(available() is not None, reason=str(available())),
              pytest.mark.skipif(not HAVE_HF, reason="needs transformers, peft and safetensors")]
BENCH = Path(__file__).resolve().parents[1] / "bench" / "sharded_load.py"
GIB = 2**30


def _bench(tmp_path, *args):
    out = tmp_path / "bench.json"
    p = subprocess.run([sys.executable, str(BENCH), *args, "--json", str(out)], capture_output=True, text=True,
                       timeout=limit(600))
    assert p.returncode == 0, p.stdout[-3000:] + p.stderr[-3000:]
    return json.loads(out.read_text())


def test_ranks_fill_their_shards_from_the_checkpoint_and_rank_0_saves_a_tensor_at_a_time(tmp_path):
    """Full fine-tuning on 2 ranks of a checkpoint of 230 M parameters (12 layers with wide MLPs, two 152,064-row
    embeddings): each rank's fp32 shard holds exactly the values of the whole model loaded by from_pretrained and
    made fp32, and building it raised the rank's resident memory by its shard and little else (imports, a block of
    rows), where building the whole model first raises it by the bf16 model and its fp32 copy. The final weights,
    gathered one tensor at a time and written by rank 0 in files of at most 64 MiB, equal those torch's full state
    dict gives, and rank 0 held a few tensors and a file's worth, not the model (measured: shards 0.43 GiB, building
    0.53-0.55 GiB against 1.36; saving 0.55 GiB on rank 0 against 1.32, 0.10 against 0.37 on rank 1)."""
    r = _bench(tmp_path, "--hidden", "256", "--intermediate", "16384", "--layers", "12", "--file-mib", "64")
    assert r["same_values"]
    model_fp32 = sum(x["shard_bytes"] for x in r["results"]["meta"])
    largest_fp32 = 152064 * 256 * 4  # an embedding
    for whole, meta in zip(r["results"]["whole"], r["results"]["meta"]):
        shard = meta["shard_bytes"]
        assert shard == whole["shard_bytes"] and shard > 0.4 * GIB
        assert meta["peak_rss"] - meta["rss_before"] < shard + 0.25 * GIB, meta
        assert whole["peak_rss"] - whole["rss_before"] > shard + 0.5 * GIB, whole  # the build this replaced
    rank0, whole0 = r["results"]["meta"][0], r["results"]["whole"][0]
    assert len(rank0["saved_digest"]) == 2 + 12 * 12 + 1  # every weight of the model was written
    assert rank0["save_peak_rss"] - rank0["save_rss_before"] < 3 * largest_fp32 + 2 * 64 * 2**20 + 0.1 * GIB, rank0
    assert whole0["save_peak_rss"] - whole0["save_rss_before"] > model_fp32, whole0  # the save this replaced
    rank1 = r["results"]["meta"][1]
    assert rank1["save_peak_rss"] - rank1["save_rss_before"] < 0.25 * GIB, rank1


def test_a_model_folder_written_a_tensor_at_a_time_loads_with_from_pretrained(tmp_path):
    """Several files and their index, as save_pretrained writes a big model: from_pretrained reads back the values."""
    from transformers import AutoConfig, AutoModelForCausalLM

    from bsft_trainer.checkpoints.weight_files import write_model_folder
    from bsft_trainer.modeling.weight_source import RandomSource
    from test_hf import TINY

    with torch.device("meta"):
        skeleton = AutoModelForCausalLM.from_config(AutoConfig.from_pretrained(TINY), dtype=torch.bfloat16)
    source = RandomSource(skeleton, 7, torch.bfloat16, torch.device("cpu"))
    write_model_folder(tmp_path, skeleton, lambda name, p: source.rows(name, 0, p.shape[0]), max_file_bytes=8 * 2**20)
    index = json.loads((tmp_path / "model.safetensors.index.json").read_text())
    assert len(set(index["weight_map"].values())) > 2 and (tmp_path / "config.json").is_file()
    model = AutoModelForCausalLM.from_pretrained(tmp_path, dtype=torch.bfloat16)
    for name, p in model.named_parameters():
        assert torch.equal(p, source.rows(name, 0, p.shape[0])), name


@pytest.mark.parametrize("init", ["pretrained", "random"])
def test_lora_with_tied_embeddings_starts_from_the_values_of_one_process(tmp_path, init):
    """The frozen base, the adapters (peft's start, seeded by name) and the one set of behavior rows of a tied
    model: each rank's shard equals the same rows of one process's build."""
    r = _bench(tmp_path, "--shape", "tiny", "--method", "lora", "--tied", "--init", init)
    assert r["same_values"]
    names = set(r["results"]["meta"][0]["digest"])
    assert "rows.embed" in names and "rows.out" not in names
    assert any(".lora_A." in n for n in names) and not any("lm_head" in n for n in names)


def test_a_checkpoint_that_does_not_fit_the_model_is_refused_naming_every_problem(tmp_path):
    from safetensors.torch import save_file

    from bsft_trainer.modeling.weight_source import CheckpointSource
    from bsft_trainer.process.events import ConfigError

    save_file({"model.embed_tokens.weight": torch.zeros(10, 4), "model.norm.weight": torch.zeros(5)},
              str(tmp_path / "model.safetensors"))
    source = CheckpointSource(tmp_path, torch.bfloat16)
    source.check({"model.embed_tokens.weight": torch.Size([10, 4])})  # fits
    with pytest.raises(ConfigError) as e:
        source.check({"model.embed_tokens.weight": torch.Size([10, 4]), "model.norm.weight": torch.Size([4]),
                      "lm_head.weight": torch.Size([10, 4])})
    assert "lacks lm_head.weight" in str(e.value) and "model.norm.weight is [5] in the checkpoint, [4] in the model" in str(e.value)
    # A bare decoder's checkpoint (no "model." prefix) is read under the causal LM's names.
    save_file({"embed_tokens.weight": torch.arange(40.0).reshape(10, 4)}, str(tmp_path / "model.safetensors"))
    rows = CheckpointSource(tmp_path, torch.bfloat16).rows("model.embed_tokens.weight", 2, 4)
    assert rows.dtype == torch.bfloat16 and rows.tolist() == [[8, 9, 10, 11], [12, 13, 14, 15]]
    (tmp_path / "model.safetensors").unlink()
    with pytest.raises(ConfigError, match="no model.safetensors"):
        CheckpointSource(tmp_path, torch.bfloat16)
