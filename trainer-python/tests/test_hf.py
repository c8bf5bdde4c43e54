"""Tests of the real model path (transformers + peft): a tiny random Qwen2-architecture model with the real
Qwen2.5 tokenizer and its 152064-row vocabulary. Skipped (and counted as skipped) where transformers/peft are
not installed; the full suite runs on the project's GPU machine (see trainer-python/README.md)."""
import json
import os
import shutil
import subprocess
from pathlib import Path

import importlib.util

import pytest
import torch

from conftest import QWEN, assert_checkpointing_changes_nothing, events_of, limit, make_run, sigterm_at, trainer

HAVE_HF = all(importlib.util.find_spec(m) is not None for m in ("transformers", "peft", "safetensors"))
if HAVE_HF:
    import transformers

ROOT = Path(__file__).resolve().parents[2]
TOKENIZER = ROOT / "recipes" / "models" / "qwen2.5-tokenizer"
TINY = ROOT / "recipes" / "models" / "qwen2.5-tiny"
# train.seed of the runs whose outcome depends on the random draw (a rule learned in a fixed number of steps, greedy
# replies that repeat a token). A tiny model's learning is sensitive to its start: with the per-module seeded init
# of weight_source.py, full fine-tuning at lr 1e-2 reached a loss of 0.04 in 60 steps with seed 4 and 0.16-0.38 with
# seeds 0-3, 5-7 (measured); the LoRA rule test passes with seed 0 (not 1 or 4), the greedy test's 4 LoRA steps
# leave repeated tokens with seed 1 (not 0 or 4).
LEARNING_SEED = 4
LORA_SEED = 0
GREEDY_SEED = 1
pytestmark = [pytest.mark.hf, pytest.mark.skipif(not HAVE_HF, reason="needs transformers, peft and safetensors")]


def _run(tmp, eval_splits=("test",), reply_tokens=4, **train):
    return make_run(tmp, qwen=True, model_dir=TINY, tokenizer=TOKENIZER, reply_tokens=reply_tokens,
                    train={"method": "lora", "lr": 1e-2, "max_steps": 60, "checkpoint_every": 20, "batch_tokens": 512,
                           "grad_accum": 1, **train},
                    eval_={"max_new_tokens": 2, "splits": list(eval_splits)})


def _finish(p, timeout=limit(900)):
    out, err = p.communicate(timeout=timeout)
    return p.returncode, events_of(out), err


def test_lora_run_learns_the_rule_and_only_new_rows_change(tmp_path):
    # 130 steps at lr 1e-2: measured train accuracy 0.99 (80 steps gave 0.76).
    cfg = _run(tmp_path, eval_splits=("train",), max_steps=130, checkpoint_every=100, seed=LORA_SEED)
    code, events, err = _finish(trainer("train", cfg))
    assert code == 0, err
    losses = [e["loss"] for e in events if e["event"] == "step"]
    assert sum(losses[-5:]) < 0.9 * sum(losses[:5]), losses
    final = Path(events[-1]["final_path"])
    assert (final / "adapter_model.safetensors").is_file() and (final / "behavior_rows.safetensors").is_file()
    size = sum(p.stat().st_size for p in final.rglob("*") if "base" not in p.parts)
    assert size < 50 * 2**20  # adapter + rows, never the whole embedding

    from safetensors.torch import load_file

    rows = load_file(str(final / "behavior_rows.safetensors"))
    assert rows["ids"].tolist() == [151665, 151666, 151667]
    base = transformers.AutoModelForCausalLM.from_pretrained(final / "base")
    adapter = load_file(str(final / "adapter_model.safetensors"))
    assert not any("embed_tokens" in k or "lm_head" in k for k in adapter)  # embedding untouched by LoRA
    mean = base.get_input_embeddings().weight[:151665].mean(0)
    assert not torch.allclose(rows["embed"][1], mean)  # the rows trained away from their mean init

    code, events, err = _finish(trainer("predict", cfg))
    assert code == 0, err
    manifest = json.loads((tmp_path / "dataset" / "manifest.json").read_text())
    gold = _train_behaviors(tmp_path)
    rows = [json.loads(line) for line in (tmp_path / "predictions" / "train.jsonl").read_text().splitlines()]
    assert [r["id"] for r in rows] == manifest["documents"]["train"]
    # The behavior follows from a cue token; LoRA (frozen random base, trainable behavior rows) learns it.
    accuracy = sum(r["predicted_behavior"] == gold[i] for i, r in enumerate(rows)) / len(rows)
    majority = max(gold.count(b) for b in set(gold)) / len(gold)
    assert accuracy > max(0.9, majority), (accuracy, majority)  # chance is 1/3


def _train_behaviors(run_dir):
    """Gold behavior of each train document, read back from its first predicted token."""
    from bsft_trainer.data.shards import Shard

    by_id = {v: k for k, v in QWEN["behaviors"].items()}
    shard = Shard(run_dir / "dataset" / "train.tokens.safetensors")
    out = []
    for d in range(len(shard)):
        ids, mask = shard.doc(d)
        out.append(by_id[int(ids[int(mask.argmax())])])
    return out


@pytest.mark.parametrize("dtype", ["float32", "bfloat16"])
def test_resumed_run_matches_the_straight_run(tmp_path, dtype):
    # bf16 matrix products are slow on a CPU (6 s a step here): a third of the steps, the same checks (stopped after
    # step 1, resumed for steps 2-4 from its checkpoint)
    steps = 4 if dtype == "bfloat16" and not torch.cuda.is_available() else 12
    a, b = _run(tmp_path / "a", max_steps=steps), _run(tmp_path / "b", max_steps=steps)
    for cfg in (a, b):
        c = json.loads(cfg.read_text())
        c["model"]["dtype"] = dtype
        cfg.write_text(json.dumps(c))
    _, straight, _ = _finish(trainer("train", a))
    code, seen, _ = sigterm_at(b, "step", steps // 3)
    assert code == 75
    _, resumed, _ = _finish(trainer("train", b))
    la = {e["step"]: e["loss"] for e in straight if e["event"] == "step"}
    lb = {e["step"]: e["loss"] for e in seen + resumed if e["event"] == "step"}
    # The bar: 1e-3 relative in bf16 (GPU kernels may differ run to run); fp32 on a CPU is deterministic.
    rel = 1e-3 if dtype == "bfloat16" or torch.cuda.is_available() else 1e-6
    assert sorted(lb) == list(range(1, steps + 1))
    for s in range(1, steps + 1):
        assert lb[s] == pytest.approx(la[s], rel=rel), (s, la, lb)


@pytest.mark.parametrize("method", ["lora", "full"])
def test_activation_checkpointing_gives_the_same_steps(tmp_path, method):
    """Recomputing activations during backward (packed boundaries included) changes nothing but memory."""
    assert_checkpointing_changes_nothing(lambda on: _run(
        tmp_path / str(on), max_steps=3, grad_accum=2, batch_tokens=256, method=method, activation_checkpointing=on,
        **({"lr": 3e-3} if method == "full" else {})))


def test_merge_gives_a_plain_model_with_the_behavior_tokens(tmp_path):
    cfg = _run(tmp_path, max_steps=6)
    assert _finish(trainer("train", cfg))[0] == 0
    code, events, err = _finish(trainer("merge", cfg))
    assert code == 0, err
    merged = Path(events[-1]["final_path"])
    model = transformers.AutoModelForCausalLM.from_pretrained(merged)
    assert not any("lora" in n for n, _ in model.named_parameters())
    tok = transformers.AutoTokenizer.from_pretrained(merged)
    assert tok.convert_tokens_to_ids("<|behavior:proactive|>") == 151666
    rows = __import__("safetensors.torch", fromlist=["load_file"]).load_file(str(tmp_path / "final" / "behavior_rows.safetensors"))
    assert torch.allclose(model.get_input_embeddings().weight[151666], rows["embed"][1].to(model.dtype))
    # Every file follows the umask, as the rest of the run does (safetensors writes its files 0600).
    from bsft_trainer.checkpoints.checkpoint import umask

    modes = {str(p.relative_to(tmp_path)): oct(p.stat().st_mode & 0o777)
             for folder in (merged, tmp_path / "final") for p in folder.rglob("*") if p.is_file()}
    assert set(modes.values()) == {oct(0o666 & ~umask())}, modes


def test_pretrained_weights_load_from_a_folder_and_from_a_hub_id_in_the_offline_cache(tmp_path):
    """init: pretrained reads the weights (not a fresh init) from a local folder, or from a Hub id through the
    Hugging Face cache with no network (HF_HUB_OFFLINE=1), and predict finds the same base again."""
    pretrained = tmp_path / "pretrained"
    torch.manual_seed(123)
    transformers.AutoModelForCausalLM.from_config(transformers.AutoConfig.from_pretrained(TINY)).save_pretrained(pretrained)
    revision = "0123456789abcdef0123456789abcdef01234567"
    repo = tmp_path / "hf" / "hub" / "models--bsft-test--tiny-qwen2"
    shutil.copytree(pretrained, repo / "snapshots" / revision)
    (repo / "refs").mkdir()
    (repo / "refs" / "main").write_text(revision)
    offline = {"HF_HOME": str(tmp_path / "hf"), "HF_HUB_OFFLINE": "1"}

    losses = {}
    for name, source, init in (("folder", str(pretrained), "pretrained"), ("hub", "bsft-test/tiny-qwen2", "pretrained"),
                               ("random", str(TINY), "random")):
        cfg = _run(tmp_path / name, max_steps=3)
        c = json.loads(cfg.read_text())
        c["model"].update({"name_or_path": source, "init": init})
        cfg.write_text(json.dumps(c))
        code, events, err = _finish(trainer("train", cfg, env=offline))
        assert code == 0, err
        losses[name] = [e["loss"] for e in events if e["event"] == "step"]
        if name == "hub":
            assert not (tmp_path / name / "final" / "base").exists()  # the base stays in the cache, not copied
            code, _, err = _finish(trainer("predict", cfg, env=offline))
            assert code == 0, err
    assert losses["folder"] == losses["hub"]  # the same weights, the same seeded run
    assert losses["folder"] != losses["random"]  # and not a fresh random init

    cfg = _run(tmp_path / "missing", max_steps=3)
    c = json.loads(cfg.read_text())
    c["model"].update({"name_or_path": "bsft-test/not-cached", "init": "pretrained"})
    cfg.write_text(json.dumps(c))
    code, events, err = _finish(trainer("train", cfg, env=offline))
    assert code == 2 and events[-1] == {"event": "error", "kind": "config", "message": events[-1]["message"]}, err
    assert "'bsft-test/not-cached' is not in the Hugging Face cache" in events[-1]["message"]


def test_config_overrides_rebuild_derived_fields(tmp_path):
    """num_hidden_layers overridden: the config's layer_types follow (transformers validates them on save)."""
    cfg = _run(tmp_path, max_steps=2)
    c = json.loads(cfg.read_text())
    c["model"]["config_overrides"] = {"num_hidden_layers": 1}
    cfg.write_text(json.dumps(c))
    code, events, err = _finish(trainer("train", cfg))
    assert code == 0, err
    base = json.loads((tmp_path / "final" / "base" / "config.json").read_text())
    assert base["num_hidden_layers"] == 1 and len(base.get("layer_types", [None])) == 1
    assert _finish(trainer("predict", cfg))[0] == 0

    for overrides, message in (({"num_attention_heads": 3}, "hidden_size 64 is not divisible by num_attention_heads 3"),
                               ({"num_key_value_heads": 3}, "num_attention_heads 4 is not a multiple of num_key_value_heads 3")):
        c["model"]["config_overrides"] = overrides
        cfg.write_text(json.dumps(c))
        code, events, err = _finish(trainer("train", cfg))
        assert code == 2 and events[-1]["kind"] == "config" and message in events[-1]["message"], err


def test_full_fine_tuning_learns_the_rule_and_predict_beats_chance(tmp_path):
    # Replies of the behavior token and one token, at lr 1e-2: train accuracy 1.0 after 60 steps, 0.99 after 50, 0.75
    # after 40 (measured; 4-token replies at lr 3e-3 needed 150 steps, at 2.5x the time).
    cfg = _run(tmp_path, eval_splits=("train",), method="full", max_steps=60, lr=1e-2, checkpoint_every=100, reply_tokens=1,
               seed=LEARNING_SEED)
    code, events, err = _finish(trainer("train", cfg))
    assert code == 0, err
    assert (Path(events[-1]["final_path"]) / "config.json").is_file()
    code, _, err = _finish(trainer("predict", cfg))
    assert code == 0, err
    gold = _train_behaviors(tmp_path)
    rows = [json.loads(line) for line in (tmp_path / "predictions" / "train.jsonl").read_text().splitlines()]
    accuracy = sum(r["predicted_behavior"] == gold[i] for i, r in enumerate(rows)) / len(rows)
    majority = max(gold.count(b) for b in set(gold)) / len(gold)
    assert accuracy > max(0.9, majority), (accuracy, majority)  # chance is 1/3


def test_qwen_7b_shape_steps_checkpoint_resume_predict_merge(tmp_path):
    """Qwen2.5-7B's real shapes (random bf16 weights): train steps, a SIGTERM checkpoint, a resume, predict, merge.
    Runs on a GPU; on a CPU only with BSFT_TEST_7B_ON_CPU=1 (peak RSS 18.8 GiB, 30 GB of disk, 13 min on 2 cores)."""
    on_gpu = torch.cuda.is_available()
    if not on_gpu and os.environ.get("BSFT_TEST_7B_ON_CPU") != "1":
        pytest.skip("needs a GPU (or BSFT_TEST_7B_ON_CPU=1 on a CPU with 24 GiB of RAM): the 7B-shaped model is 15 GB in bf16")
    model = tmp_path / "qwen7b"
    model.mkdir()
    shutil.copy(ROOT / "recipes" / "models" / "qwen2.5-7b-shape" / "config.json", model / "config.json")
    # On a GPU: the paper recipe's 16384 tokens a batch, documents of 256..3072 tokens (as the benchmark's)
    cfg = make_run(tmp_path / "run", qwen=True, model_dir=model, tokenizer=TOKENIZER, n_train=64,
                   context=(256, 3072) if on_gpu else (8, 40),
                   train={"method": "lora", "lr": 1e-4, "max_steps": 4, "checkpoint_every": 2,
                          "batch_tokens": 16384 if on_gpu else 256,
                          # on a CPU: recompute activations (about 0.13 GiB a layer at 256 tokens) to fit in 24 GiB
                          "activation_checkpointing": "auto" if on_gpu else True},
                   eval_={"max_new_tokens": 2})
    c = json.loads(cfg.read_text())
    c["model"].update({"dtype": "bfloat16", "init": "random"})
    cfg.write_text(json.dumps(c))
    code, seen, err = sigterm_at(cfg, "step", 2, timeout=limit(3600))
    assert code == 75 and any(e["event"] == "checkpoint" for e in seen), err
    code, resumed, err = _finish(trainer("train", cfg), timeout=limit(3600))
    assert code == 0 and resumed[0]["resumed_from_step"] >= 2, err
    final = Path(resumed[-1]["final_path"])
    saved = sum(p.stat().st_size for p in final.rglob("*") if p.is_file() and "base" not in p.relative_to(final).parts)
    assert saved < 300 * 2**20, saved  # adapter + behavior rows + tokenizer: never the embedding or the model
    code, _, err = _finish(trainer("predict", cfg), timeout=limit(3600))
    assert code == 0, err
    rows = [json.loads(line) for line in (tmp_path / "run" / "predictions" / "test.jsonl").read_text().splitlines()]
    assert len(rows) == 12
    code, events, err = _finish(trainer("merge", cfg), timeout=limit(3600))
    assert code == 0, err
    merged = Path(events[-1]["final_path"])
    config = json.loads((merged / "config.json").read_text())
    assert config["hidden_size"] == 3584 and config["vocab_size"] == 152064
    assert not any("lora" in k for k in _safetensors_keys(merged))
    steps = [e for e in seen + resumed if e["event"] == "step"]
    print(f"7B-shaped run on {'cuda' if on_gpu else 'cpu'}: peak memory {max(e['mem_gib'] for e in steps):.1f} GiB; "
          f"{max(e['tokens_per_s'] for e in steps):,.0f} tok/s at best; saved LoRA output {saved / 2**20:.1f} MiB; "
          f"losses by step {({e['step']: round(e['loss'], 4) for e in steps})}")


def _safetensors_keys(folder):
    """Tensor names of every safetensors file in a folder, read from the headers only."""
    import struct

    keys = []
    for f in Path(folder).glob("*.safetensors"):
        with open(f, "rb") as fh:
            (n,) = struct.unpack("<Q", fh.read(8))
            keys += [k for k in json.loads(fh.read(n)) if k != "__metadata__"]
    return keys


def _build_in_process(tmp, dtype, tied=False, compute_dtype="model"):
    """The LoRA model the trainer builds for a run of the tiny model (optionally with tied embeddings)."""
    from bsft_trainer.data import config as config_mod
    from bsft_trainer.process.fence import Fence
    from bsft_trainer.modeling.model import build

    model_dir = TINY
    if tied:
        model_dir = tmp / "tied-model"
        model_dir.mkdir(parents=True)
        config = json.loads((TINY / "config.json").read_text())
        (model_dir / "config.json").write_text(json.dumps({**config, "tie_word_embeddings": True}))
    path = make_run(tmp, qwen=True, model_dir=model_dir, tokenizer=TOKENIZER,
                    train={"method": "lora", "lora": {"r": 4, "alpha": 8, "dropout": 0.0, "targets": "all-linear",
                                                      "compute_dtype": compute_dtype}})
    c = json.loads(path.read_text())
    c["model"]["dtype"] = dtype
    path.write_text(json.dumps(c))
    cfg = config_mod.load(str(path))
    fence = Fence(cfg.output_dir, None)
    fence.claim()
    return build(cfg, config_mod.load_manifest(cfg), torch.device("cpu"), fence), path


def test_lora_adapters_compute_in_the_model_dtype_with_fp32_masters(tmp_path):
    """peft's default upcasts bf16 adapters to fp32, and with them every wrapped layer's input; bsft keeps them in
    the model's dtype and gives the optimizer fp32 copies instead."""
    from bsft_trainer.training.precision import MasterWeights

    tm, _ = _build_in_process(tmp_path / "bf16", "bfloat16")
    lora = {n: p for n, p in tm.named_trainable() if "lora_" in n}
    assert lora and all(p.dtype == torch.bfloat16 for p in lora.values())
    seen = []
    module = next(m for n, m in tm.hf_model.named_modules() if n.endswith("q_proj.lora_A.default"))
    module.register_forward_hook(lambda m, args, out: seen.append((args[0].dtype, out.dtype)))
    from bsft_trainer.training.packing import make_batch
    from bsft_trainer.data.shards import Shard

    batch = make_batch(Shard(tmp_path / "bf16" / "dataset" / "train.tokens.safetensors"), [0, 1])
    tm.hidden(batch)
    assert seen and all(d == (torch.bfloat16, torch.bfloat16) for d in seen), seen
    masters = MasterWeights(tm.named_trainable())
    assert masters.separate == len(lora) and all(m.dtype == torch.float32 for m in masters.parameters())

    tm32, _ = _build_in_process(tmp_path / "fp32", "bfloat16", compute_dtype="float32")  # peft's default, on request
    assert all(p.dtype == torch.float32 for n, p in tm32.named_trainable() if "lora_" in n)


def test_a_bf16_lora_run_writes_its_fp32_master_adapter_to_final(tmp_path):
    """final/ holds the adapter the optimizer kept (fp32 masters), not its bf16 rounding in the model."""
    from safetensors.torch import load_file

    cfg = _run(tmp_path, max_steps=3, checkpoint_every=100)
    values = json.loads(cfg.read_text())
    values["model"]["dtype"] = "bfloat16"
    cfg.write_text(json.dumps(values))
    code, _, err = _finish(trainer("train", cfg))
    assert code == 0, err
    adapter = load_file(tmp_path / "final" / "adapter_model.safetensors")
    masters = torch.load(tmp_path / "checkpoints" / "step-000003" / "trainable.pt")
    by_name = {k[len("base."):].replace(".default.", "."): v for k, v in masters.items() if "lora_" in k}
    assert adapter.keys() == by_name.keys() and all(t.dtype == torch.float32 for t in adapter.values())
    assert all(torch.equal(adapter[k], by_name[k]) for k in adapter)
    assert any(not torch.equal(v, v.bfloat16().float()) for v in adapter.values())  # not a bf16 rounding


def test_tied_embeddings_keep_one_set_of_behavior_rows_through_merge(tmp_path):
    """Qwen2.5 0.5B/1.5B/3B tie the input and output embeddings: the behavior rows are one set, trained through
    both uses, and merge writes them once (before, the output rows overwrote the trained input rows)."""
    from safetensors.torch import load_file

    tm, cfg = _build_in_process(tmp_path, "float32", tied=True)
    assert tm.rows.tied and sum(1 for n, _ in tm.named_trainable() if n.startswith("rows.")) == 1
    c = json.loads(cfg.read_text())
    c["train"].update({"max_steps": 8, "lr": 1e-2})
    cfg.write_text(json.dumps(c))
    code, events, err = _finish(trainer("train", cfg))
    assert code == 0, err
    rows = load_file(str(tmp_path / "final" / "behavior_rows.safetensors"))
    assert torch.equal(rows["embed"], rows["lm_head"])
    code, events, err = _finish(trainer("merge", cfg))
    assert code == 0, err
    merged = transformers.AutoModelForCausalLM.from_pretrained(Path(events[-1]["final_path"]))
    assert merged.config.tie_word_embeddings
    ids = rows["ids"].long()
    assert torch.equal(merged.get_input_embeddings().weight[ids], rows["embed"])
    assert torch.equal(merged.get_output_embeddings().weight[ids], rows["embed"])
    base = transformers.AutoModelForCausalLM.from_pretrained(tmp_path / "final" / "base")
    assert not torch.allclose(base.get_input_embeddings().weight[ids], rows["embed"])  # they trained


def _with_engine(cfg, engine):
    c = json.loads(cfg.read_text())
    c["eval"]["engine"] = engine
    cfg.write_text(json.dumps(c))
    return cfg


def _without_probs(rows):
    return [{k: v for k, v in r.items() if k not in ("behavior_probs", "behavior_logprobs")} for r in rows]


def _same_probs(rows, reference, tol):
    """Asserts that `rows` carry the behavior probabilities of `reference` within `tol`; returns them without."""
    assert len(rows) == len(reference)
    for a, b in zip(rows, reference):
        for field in ("behavior_probs", "behavior_logprobs"):
            assert list(a[field]) == list(b[field]), (a, b)
            assert all(abs(a[field][n] - b[field][n]) <= tol for n in a[field]), (field, a[field], b[field])
    return _without_probs(rows)


def test_predict_is_plain_greedy_sorted_into_batches_and_first_token_only_when_asked(tmp_path):
    """A base model whose generation_config.json asks for a repetition penalty gives the same predictions as
    without it; `max_new_tokens: 1` reads the first token from one forward pass, with the same result as
    `generate`; batches sorted by length change nothing in the file."""
    pretrained = tmp_path / "pretrained"
    config = transformers.AutoConfig.from_pretrained(TINY)
    torch.manual_seed(0)
    transformers.AutoModelForCausalLM.from_config(config).save_pretrained(pretrained)
    penalty = {"repetition_penalty": 20.0, "do_sample": True, "temperature": 3.0, "top_k": 5,
               "bos_token_id": 151643, "eos_token_id": 151645}
    (pretrained / "generation_config.json").write_text(json.dumps(penalty))
    cfg = make_run(tmp_path / "run", qwen=True, model_dir=pretrained, tokenizer=TOKENIZER, n_val=20,
                   train={"method": "lora", "lr": 1e-2, "max_steps": 4, "batch_tokens": 512, "grad_accum": 1,
                          "seed": GREEDY_SEED},
                   eval_={"max_new_tokens": 6, "batch_size": 3})
    c = json.loads(cfg.read_text())
    c["model"]["init"] = "pretrained"
    cfg.write_text(json.dumps(c))
    assert _finish(trainer("train", cfg))[0] == 0

    def predict(max_new, generation_config=True, engine="static"):
        gc = pretrained / "generation_config.json"
        if generation_config:
            gc.write_text(json.dumps(penalty))
        elif gc.exists():
            gc.unlink()
        c = json.loads(cfg.read_text())
        c["eval"]["max_new_tokens"] = max_new
        c["eval"]["engine"] = engine
        cfg.write_text(json.dumps(c))
        code, _, err = _finish(trainer("predict", cfg))
        assert code == 0, err
        return [json.loads(line) for line in (tmp_path / "run" / "predictions" / "test.jsonl").read_text().splitlines()]

    with_penalty, without = predict(6), predict(6, generation_config=False)
    assert with_penalty == without
    record = lambda: json.loads((tmp_path / "run" / "predictions" / "predict.json").read_text())["test.jsonl"]  # noqa: E731
    assert record()["engine"] == "static"
    # Continuous batching (paged attention, no padding): the same greedy tokens, the behavior still the first one;
    # `auto` takes it on a GPU when replies are longer than one token, and static on a CPU (where it is faster).
    # The behavior tokens' probabilities at the first position come from generate's logits (static), from one more
    # forward pass (continuous) or from the pass that reads the first token (max_new_tokens 1): the same numbers,
    # within 1e-5 (fp32 on a CPU; the last digits depend on how the batch was padded).
    continuous = predict(6, engine="continuous")
    assert _same_probs(continuous, without, 1e-5) == _without_probs(without)
    assert record()["engine"] == "continuous" and record()["generated_tokens"] == sum(len(r["raw_token_ids"]) for r in without)
    assert _same_probs(predict(6, engine="auto"), without, 1e-5) == _without_probs(without)
    assert record()["engine"] == ("continuous" if torch.cuda.is_available() else "static")
    assert any(len(set(r["raw_token_ids"])) < len(r["raw_token_ids"]) for r in without)  # repeats the penalty would stop
    first = predict(1, engine="auto")
    assert record()["engine"] == "static"  # one forward pass reads the first token
    manifest = json.loads((tmp_path / "run" / "dataset" / "manifest.json").read_text())
    assert [r["id"] for r in first] == manifest["documents"]["test"]
    assert [r["raw_token_ids"] for r in first] == [r["raw_token_ids"][:1] for r in without]
    assert [r["predicted_behavior"] for r in first] == [r["predicted_behavior"] for r in without]
    _same_probs(first, without, 1e-5)
    for r in without:
        assert abs(sum(r["behavior_probs"].values()) - 1) < 1e-5 and all(v < 0 for v in r["behavior_logprobs"].values())
    # An operating point through generate (a logits processor at every position): +40 on proactive is more than any
    # logit gap of this random model, so every reply starts with it; the recorded probabilities stay the model's own.
    c = json.loads(cfg.read_text())
    c["eval"]["behavior_offsets"] = {"proactive": 40.0}
    cfg.write_text(json.dumps(c))
    shifted = predict(6)
    pid = manifest["behavior_ids"]["proactive"]
    assert all(r["raw_token_ids"][0] == pid and r["predicted_behavior"] == "proactive" for r in shifted)
    _same_probs(shifted, without, 1e-5)
    code, events, _ = _finish(trainer("predict", _with_engine(cfg, "continuous")))
    assert code == 2 and "behavior_offsets" in events[-1]["message"]
    c["eval"]["behavior_offsets"] = {}
    c["eval"]["engine"] = "static"
    cfg.write_text(json.dumps(c))
    # Each row carries its reply as text for a judge, without behavior tokens or other special tokens.
    tok = transformers.AutoTokenizer.from_pretrained(TOKENIZER)
    for r in without:
        ids = [t for t in r["raw_token_ids"] if t < 151643]
        assert r["reply"] == tok.decode(ids).strip() and "<|" not in r["reply"]

    # `chat` (bsft chat's model side) streams the tokens predict's greedy decoding gives, a token at a time with the
    # key/value cache, on the same merged LoRA model; a forced behavior is its token at the end of the prompt.
    from bsft_trainer.inference.predict import prompts
    from bsft_trainer.data.shards import Shard

    shard_prompts = prompts(Shard(str(tmp_path / "run" / "dataset" / "test.tokens.safetensors")))[:4]
    lines = "".join(json.dumps({"prompt": p, "max_new_tokens": 6}) + "\n" for p in shard_prompts)
    p = trainer("chat", cfg, stdin=subprocess.PIPE)
    out, err = p.communicate(lines, timeout=limit(600))
    assert p.returncode == 0, err
    events = events_of(out)
    assert events[0]["event"] == "ready"
    replies, current = [], []
    for e in events[1:]:
        if e["event"] == "token":
            current.append(e["id"])
        elif e["event"] == "end":
            assert e["tokens"] == len(current) and e["reason"] in ("eos", "length")
            replies.append(current)
            current = []
    assert replies == [r["raw_token_ids"] for r in without[:4]]
    # Asked for them ("scored"), chat first gives the behavior tokens' probabilities, predict's numbers.
    p = trainer("chat", cfg, stdin=subprocess.PIPE)
    out, err = p.communicate(json.dumps({"prompt": shard_prompts[0], "max_new_tokens": 2, "scored": True}) + "\n", timeout=limit(600))
    assert p.returncode == 0, err
    scored = [e for e in events_of(out) if e["event"] == "behavior"]
    assert len(scored) == 1 and _same_probs([{"behavior_probs": scored[0]["behavior_probs"], "behavior_logprobs": scored[0]["behavior_logprobs"]}],
                                           [without[0]], 1e-5)


def test_lora_in_the_model_dtype_gives_the_fp32_adapter_loss_and_gradients(tmp_path):
    """compute_dtype model (bf16 adapters) against peft's fp32 adapters, on the same bf16 model and batch: the
    loss and the adapters' gradients agree to bf16 precision."""
    from bsft_trainer.training.loss import chunked_ce_sum
    from bsft_trainer.training.packing import make_batch
    from bsft_trainer.data.shards import Shard

    results = {}
    for compute in ("model", "float32"):
        tm, _ = _build_in_process(tmp_path / compute, "bfloat16", compute_dtype=compute)
        with torch.no_grad():  # LoRA B starts at zero: give it values so that A's gradient is not zero too
            for n, p in tm.named_trainable():
                if "lora_B" in n:
                    p.copy_(torch.randn(p.shape, generator=torch.Generator().manual_seed(len(n))).to(p.dtype) * 0.05)
        batch = make_batch(Shard(tmp_path / compute / "dataset" / "train.tokens.safetensors"), [0, 1, 2])
        w, rows = tm.output()
        loss = chunked_ce_sum(tm.hidden(batch), batch.labels, w, rows, index=batch.loss_index)
        loss.backward()
        results[compute] = (float(loss), {n: p.grad.float() for n, p in tm.named_trainable() if "lora_" in n})
    (l1, g1), (l2, g2) = results["model"], results["float32"]
    assert l1 == pytest.approx(l2, rel=1e-2)
    a = torch.cat([g.flatten() for g in g1.values()])
    b = torch.cat([g2[n].flatten() for n in g1])
    assert float(torch.nn.functional.cosine_similarity(a, b, dim=0)) > 0.99


@pytest.mark.skipif(not HAVE_HF, reason="needs transformers")
def test_a_model_as_it_ships_is_predicted_without_training(tmp_path):
    """train.method none: predict loads the base model itself (no final/, no adapter, no rows of ours) and its
    replies are its own greedy tokens, checked against a token-by-token argmax loop over the same pretrained
    weights; training such a run is a config error."""
    pretrained = tmp_path / "pretrained"
    torch.manual_seed(3)
    model = transformers.AutoModelForCausalLM.from_config(transformers.AutoConfig.from_pretrained(TINY))
    model.save_pretrained(pretrained)
    cfg = make_run(tmp_path / "run", qwen=True, model_dir=pretrained, tokenizer=TOKENIZER, n_val=6,
                   train={"method": "none"}, eval_={"max_new_tokens": 4, "batch_size": 1})
    c = json.loads(cfg.read_text())
    c["model"]["init"] = "pretrained"
    del c["train"]["lr"], c["train"]["max_steps"]
    cfg.write_text(json.dumps(c))
    code, events, err = _finish(trainer("train", cfg))
    assert code == 2 and "nothing to train" in events[-1]["message"]
    code, _, err = _finish(trainer("predict", cfg))
    assert code == 0, err
    assert not (tmp_path / "run" / "final").exists()
    from bsft_trainer.data.shards import Shard  # noqa: PLC0415
    from bsft_trainer.inference.predict import prompts  # noqa: PLC0415

    rows = [json.loads(line) for line in (tmp_path / "run" / "predictions" / "test.jsonl").read_text().splitlines()]
    assert len(rows) == 6
    model.eval()
    for r, prompt in zip(rows, prompts(Shard(c["dataset"]["shards"]["test"]))):
        ids = torch.tensor([prompt])
        out = []
        with torch.no_grad():
            for _ in range(4):
                nxt = int(model(ids).logits[0, -1].argmax())
                out.append(nxt)
                if nxt == QWEN["eos"]:
                    break
                ids = torch.cat([ids, torch.tensor([[nxt]])], dim=1)
        assert r["raw_token_ids"] == out, r["id"]
