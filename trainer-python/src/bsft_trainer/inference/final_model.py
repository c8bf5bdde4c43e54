"""Loads a finished run's model for inference (predict, merge): the final folder of train, rows merged by ID."""
from __future__ import annotations

import json
from pathlib import Path

import torch

from ..process.events import ConfigError
from ..checkpoints.hub import from_hub
from ..modeling.toy import ToyLM
from typing import Any
from ..data.config import Config


def final_metadata(cfg: Config) -> tuple[Path, dict]:
    """The final folder and its bsft.json; for train.method none (nothing trained), the model as it ships: no folder
    of ours, and an identity of the base model (its path or Hub id, revision, init and seed) in place of COMPLETE."""
    if cfg.train.method == "none":
        ident = {"method": "none", "model": cfg.model.name_or_path, "revision": cfg.model.revision, "init": cfg.model.init,
                 "seed": cfg.train.seed, "config_overrides": cfg.model.config_overrides}
        return Path(cfg.model.name_or_path), {**ident, "model_id": json.dumps(ident, sort_keys=True)}
    folder = Path(cfg.final_dir)
    if not (folder / "COMPLETE").is_file():
        raise ConfigError(f"no finished model in {folder} (train first)")
    return folder, json.loads((folder / "bsft.json").read_text())


def load_toy(folder: Path, device: torch.device, seed: int | None = None) -> ToyLM:
    """The toy model of a final folder; with `seed` (train.method none), its random initialisation from that seed."""
    config = json.loads((folder / "config.json").read_text())
    if seed is not None:
        torch.manual_seed(seed)
    model = ToyLM(config)
    if seed is None:
        model.load_state_dict(torch.load(folder / "toy_model.pt", map_location="cpu"))
    return model.to(device).eval()


def is_toy(cfg: Config, folder: Path, meta: dict) -> bool:
    """The model to load is the bsft-toy test model: the final folder's, or (train.method none) the base model as it is."""
    if meta["method"] == "none":
        from ..modeling.model import read_model_config

        return (read_model_config(cfg) or {}).get("model_type") == "bsft-toy"
    return (folder / "toy_model.pt").is_file()


def load_hf_merged(cfg: Config, folder: Path, meta: dict, device: torch.device, dtype: torch.dtype) -> Any:
    """A plain transformers model with the LoRA adapter and the behavior-token rows merged in."""
    from safetensors.torch import load_file
    from transformers import AutoModelForCausalLM

    if meta["method"] == "none":  # the model as it ships: no adapter, no rows of ours
        from ..modeling.model import load_hf_model

        return load_hf_model(cfg, device, dtype, "sdpa").eval()
    if meta["method"] == "full":
        return from_hub(str(folder), AutoModelForCausalLM.from_pretrained, dtype=dtype, attn_implementation="sdpa").to(device).eval()
    from peft import PeftModel

    base_path = folder / "base" if (folder / "base").is_dir() else cfg.model.name_or_path
    base = from_hub(str(base_path), AutoModelForCausalLM.from_pretrained, dtype=dtype, attn_implementation="sdpa",
                    **({"revision": cfg.model.revision} if cfg.model.revision and base_path == cfg.model.name_or_path else {}))
    model = PeftModel.from_pretrained(base, folder).merge_and_unload()
    rows = load_file(str(folder / "behavior_rows.safetensors"))
    ids = rows["ids"].long()
    with torch.no_grad():
        model.get_input_embeddings().weight[ids] = rows["embed"].to(dtype)
        model.get_output_embeddings().weight[ids] = rows["lm_head"].to(dtype)
    return model.to(device).eval()
