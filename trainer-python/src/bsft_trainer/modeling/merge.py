"""merge: LoRA adapter + behavior-token rows merged into a plain model folder (weights + tokenizer with the
behavior tokens) that transformers loads without peft, and generation engines load as a normal model."""
from __future__ import annotations

import json
from pathlib import Path

from ..checkpoints import checkpoint as ckpt
from ..data.config import load_manifest
from ..process.events import EXIT_DONE, ConfigError, emit_done
from ..inference.final_model import final_metadata, load_hf_merged
from .model import resolve_dtype
from ..checkpoints.save import load_tokenizer
from ..training.train import pick_device
from ..process.fence import NoFence
from ..data.config import Config


def run(cfg: Config, fence: NoFence, out: str | None = None) -> int:
    manifest = load_manifest(cfg)
    if cfg.train.method == "none":
        raise ConfigError("train.method none: nothing was trained, so there is nothing to merge (serve the base model itself)")
    folder, meta = final_metadata(cfg)
    if (folder / "toy_model.pt").is_file():
        raise ConfigError("merge needs a transformers model; the bsft-toy test model has nothing to merge")
    device = pick_device()
    model = load_hf_merged(cfg, folder, meta, device, resolve_dtype(cfg.model.dtype, device))
    tokenizer = load_tokenizer(cfg, manifest)
    target = Path(out) if out else Path(cfg.output_dir) / "merged"

    # Greedy and nothing else, as predict decodes: a serving engine takes its defaults from this file
    # (vllm serve --generation-config auto), and the base model's asks for sampling and a repetition penalty.
    from transformers import GenerationConfig

    pad = tokenizer.pad_token_id if tokenizer.pad_token_id is not None else manifest.eos_id
    model.generation_config = GenerationConfig(do_sample=False, eos_token_id=manifest.eos_id, pad_token_id=pad,
                                               max_new_tokens=cfg.eval.max_new_tokens)

    def write(tmp):
        model.save_pretrained(tmp)
        tokenizer.save_pretrained(tmp)
        (Path(tmp) / "bsft.json").write_text(json.dumps({**meta, "merged": True}, indent=1, sort_keys=True))

    path = ckpt.save_atomic(target, write, fence, {"run_id": cfg.run_id, "merged": True})
    emit_done(str(path))
    return EXIT_DONE
