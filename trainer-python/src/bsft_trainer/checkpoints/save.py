"""The final output of a run: `<output_dir>/final/`, written atomically with a COMPLETE file.

- LoRA: the peft adapter (`adapter_model.safetensors`, `adapter_config.json`, fp32: the master weights) plus
  `behavior_rows.safetensors` (the behavior-token embedding and output rows, by ID, fp32) — a few hundred MB at
  most for a 7B model, never the whole embedding.
- full: the whole model (`save_pretrained`), in the recipe's dtype.
- Always: the tokenizer with the behavior tokens added (same IDs as the dataset), and `bsft.json`.
"""
from __future__ import annotations

import json
import shutil
from pathlib import Path

import torch

from . import checkpoint as ckpt
from ..process.events import TrainerError
from .hub import from_hub
from collections.abc import Callable
from typing import Any
from ..data.config import Config, Manifest
from ..process.fence import Fence


def behavior_tokens_in_id_order(manifest: Manifest) -> list[str]:
    return [t for t, _ in sorted(manifest.behavior_tokens.items(), key=lambda kv: kv[1])]


def load_tokenizer(cfg: Config, manifest: Manifest) -> Any:
    """The model's tokenizer with the behavior tokens added as special tokens; their IDs must match the manifest."""
    from transformers import AutoTokenizer

    from tokenizers import AddedToken

    tok = from_hub(cfg.tokenizer, AutoTokenizer.from_pretrained)
    tok.add_tokens([AddedToken(t, special=True, normalized=False) for t in behavior_tokens_in_id_order(manifest)],
                   special_tokens=True)
    for token, want in manifest.behavior_tokens.items():
        got = tok.convert_tokens_to_ids(token)
        if got != want:
            raise ValueError(f"tokenizer gives {token} the ID {got}, the dataset {want}")
    return tok


def metadata(cfg: Config, manifest: Manifest, tm: Any) -> dict:
    return {
        "format": "bsft-model-v1",
        "run_id": cfg.run_id,
        "base_model": cfg.model.name_or_path,
        "method": tm.method,
        "conditioning": cfg.conditioning,
        "behavior_ids": manifest.behavior_ids,
        "behavior_tokens": manifest.behavior_tokens,
        "dataset_hash": manifest.dataset_hash,
    }


def full_state(tm: Any, dtype: torch.dtype, device: torch.device) -> dict | None:
    """Every rank of a sharded run whose final weights are gathered whole (the toy model; LoRA: only what trains):
    those weights, on rank 0 (on the host; the model's own in `dtype`); None elsewhere. Keys as in `tm.container`
    (`base.` + the model's own, `rows.` for the behavior rows). A LoRA adapter and the behavior rows stay fp32 (the
    master weights); the frozen base is not gathered (the adapter is saved without it)."""
    from ..parallel.sharding import whole

    named = tm.named_trainable() if tm.method == "lora" else list(tm.container.named_parameters())
    masters = {n for n, _ in named} if tm.method == "lora" else set()
    main = torch.distributed.get_rank() == 0
    out = {}
    for k, p in named:
        v = whole(p, device)
        if v is not None and main:
            out[k] = (v.to(dtype) if v.is_floating_point() and k.startswith("base.") and k not in masters else v).cpu()
    return out if main else None


def write_full_weights(folder: Path | None, tm: Any, dtype: torch.dtype, device: torch.device,
                       max_file_bytes: int | None = None) -> None:
    """Every rank of a sharded full fine-tuning run of a transformers model: the weights gathered one tensor at a
    time and written by rank 0 (folder) as `save_pretrained` writes them, in `dtype`; the others take part in each
    gather (folder None). Rank 0 holds one file's worth of weights at most (weight_files.py), never the model."""
    from ..parallel.sharding import whole
    from .weight_files import write_model_folder

    write_model_folder(folder, tm.hf_model, lambda name, p: whole(p, device), dtype=dtype,
                       **({"max_file_bytes": max_file_bytes} if max_file_bytes else {}))


class FinalAbandoned(Exception):
    """A stop was requested while final/ was being written: its temporary folder is gone, final/ is the next
    attempt's (it resumes at the last step's checkpoint and writes it)."""


def save_final(cfg: Config, manifest: Manifest, tm: Any, fence: Fence, world: Any = None, masters: dict | None = None,
               stopping: Callable[[], bool] = lambda: False) -> Path | None:
    """The final model, consolidated (a plain folder whatever the number of ranks that trained it). Sharded: every
    rank takes part in gathering the weights; rank 0 writes and returns the path, the others None. `masters`: one
    process's fp32 master weights by name (precision.MasterWeights.state): a LoRA adapter is written from them, in
    fp32, as a sharded run writes it (the model's own adapter weights are their bf16 rounding). `stopping`: asked
    between the parts (weights, base/, tokenizer); true → FinalAbandoned, so that a stop waits for one part at most."""

    def check(part: str) -> None:
        if stopping():
            raise FinalAbandoned(part)
    gathered = None
    streamed = world is not None and world.sharded and tm.kind == "hf" and tm.method == "full"
    if world is not None and world.sharded:
        from ..modeling.model import resolve_dtype

        dtype, device = resolve_dtype(cfg.model.dtype, world.device()), world.device()
        if streamed and not world.main:
            write_full_weights(None, tm, dtype, device)
        gathered = None if streamed else full_state(tm, dtype, device)
        if not world.main:
            world.barrier()
            return None
    weights = gathered if gathered is not None else masters if tm.method == "lora" else None
    base_sd = None if weights is None else {k[len("base."):]: v for k, v in weights.items() if k.startswith("base.")}

    def write(folder):
        folder = Path(folder)
        if tm.kind == "toy":
            torch.save(base_sd if base_sd is not None else tm.container.base.state_dict(), folder / "toy_model.pt")
            (folder / "config.json").write_text(json.dumps(tm.container.base.config, indent=1))
            check("the weights")
        else:
            from safetensors.torch import save_file

            if streamed:
                write_full_weights(folder, tm, dtype, device)
            else:
                tm.hf_model.save_pretrained(folder, **({"state_dict": base_sd} if base_sd is not None else {}))
            check("the weights")
            if getattr(tm, "base_dir", None) is not None:
                problem = ckpt.verify(tm.base_dir)
                if problem:
                    raise TrainerError("internal", f"{tm.base_dir}: {problem}; the base model cannot go into final/")
                shutil.copytree(tm.base_dir, folder / "base", ignore=shutil.ignore_patterns(ckpt.COMPLETE))
                check("base/")
            if tm.rows is not None:
                # Tied embeddings: `out` is `embed` (one set of rows); both names are written, as separate tensors.
                embed = gathered["rows.embed"] if gathered is not None else tm.rows.embed
                out = gathered.get("rows.out", embed) if gathered is not None else tm.rows.out
                save_file({"embed": embed.detach().cpu().clone(), "lm_head": out.detach().cpu().clone(),
                           "ids": torch.arange(tm.rows.first, tm.rows.first + tm.rows.n)}, str(folder / "behavior_rows.safetensors"))
            load_tokenizer(cfg, manifest).save_pretrained(folder)
            check("the tokenizer")
        (folder / "bsft.json").write_text(json.dumps(metadata(cfg, manifest, tm), indent=1, sort_keys=True))

    path = ckpt.save_atomic(Path(cfg.final_dir), write, fence, {"run_id": cfg.run_id})
    if world is not None:
        world.barrier()
    return path
