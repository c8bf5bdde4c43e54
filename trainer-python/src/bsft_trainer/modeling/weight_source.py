"""Where a parameter's values come from when the model is built on the meta device and filled afterwards
(materialize.py): rows `start:end` (of dimension 0) of one tensor at a time, never the whole model.

- `CheckpointSource`: a pretrained model's safetensors files; only the rows asked for are read (a memory-mapped
  slice), converted to the recipe's dtype as `from_pretrained(dtype=...)` converts them.
- `RandomSource`: a randomly initialised model. Each module is initialised on its own (the model's own
  `_init_weights`, on a one-module copy) from a seed derived from the run's seed and the module's name, so that its
  values do not depend on the order modules are visited, on which rank asks, or on how many ranks there are: one
  process and N ranks start from the same weights by construction.
- LoRA adapters (`adapter_value`): peft's default start (A Kaiming-uniform, B zero), seeded by name the same way.

Names are the model's own (`model.layers.0.mlp.up_proj.weight`), as in its checkpoint files.
"""
from __future__ import annotations

import copy
import hashlib
import json
import math
from pathlib import Path

import torch
from torch import nn

from ..process.events import ConfigError


def name_seed(seed: int, name: str) -> int:
    """A 63-bit seed for `name` (a module or parameter name) in a run seeded with `seed`."""
    return int.from_bytes(hashlib.sha256(f"{seed}:{name}".encode()).digest()[:8], "little") & ((1 << 63) - 1)


class _Seeded:
    """Torch's random generators seeded for one name, restored afterwards (the run's own stream is not touched)."""

    def __init__(self, seed: int, name: str, device: torch.device):
        self.fork = torch.random.fork_rng(devices=[device] if device.type == "cuda" else [])
        self.seed = name_seed(seed, name)

    def __enter__(self):
        self.fork.__enter__()
        torch.manual_seed(self.seed)

    def __exit__(self, *exc):
        return self.fork.__exit__(*exc)


def adapter_value(name: str, shape: torch.Size, dtype: torch.dtype, device: torch.device, seed: int) -> torch.Tensor:
    """The start value of a LoRA adapter weight (`...lora_A.default.weight`: Kaiming-uniform as peft's default;
    `lora_B`: zero, so the adapted model starts as the base)."""
    if ".lora_B." in name:
        return torch.zeros(shape, dtype=dtype, device=device)
    if ".lora_A." not in name:
        raise ConfigError(f"{name}: bsft starts plain LoRA adapters only (lora_A, lora_B)")
    value = torch.empty(shape, dtype=dtype, device=device)
    with _Seeded(seed, name, device):
        nn.init.kaiming_uniform_(value, a=math.sqrt(5))
    return value


class RandomSource:
    """Values of a randomly initialised model (`skeleton`: the transformers model on the meta device, copied here
    while it is still empty: the model itself is then wrapped, sharded and filled)."""

    def __init__(self, skeleton, seed: int, dtype: torch.dtype, device: torch.device):
        self.skeleton = copy.deepcopy(skeleton)
        self.seed = seed
        self.dtype = dtype
        self.device = device
        self.modules = dict(self.skeleton.named_modules())
        self._cached: tuple[str, dict] | None = None  # the last module's values (its parameters are read in turn)

    def _module_values(self, module_name: str) -> dict:
        if self._cached is None or self._cached[0] != module_name:
            self._cached = None  # the previous module's tensors are freed before the next is made
            one = copy.deepcopy(self.modules[module_name])
            for child in list(one._modules):  # only this module's own parameters
                one._modules[child] = None
            one.to_empty(device=self.device)
            with torch.no_grad(), _Seeded(self.seed, module_name, self.device):
                self.skeleton._init_weights(one)
            self._cached = (module_name, {k: v.detach().to(self.dtype) for k, v in one.named_parameters(recurse=False)})
        return self._cached[1]

    def rows(self, name: str, start: int, end: int) -> torch.Tensor:
        module_name, _, param = name.rpartition(".")
        value = self._module_values(module_name)[param]
        return value[start:end] if value.dim() else value

    def release(self) -> None:
        self._cached = None


class CheckpointSource:
    """Values of a pretrained model read from its safetensors files (a local folder; `resolve_files` finds or
    downloads them), rows at a time."""

    def __init__(self, folder: Path, dtype: torch.dtype):
        self.folder = Path(folder)
        self.dtype = dtype
        index = self.folder / "model.safetensors.index.json"
        if index.is_file():
            self.files = {k: self.folder / f for k, f in json.loads(index.read_text())["weight_map"].items()}
        elif (self.folder / "model.safetensors").is_file():
            from safetensors import safe_open

            with safe_open(str(self.folder / "model.safetensors"), framework="pt") as f:
                self.files = {k: self.folder / "model.safetensors" for k in f.keys()}
        else:
            raise ConfigError(f"{self.folder}: no model.safetensors or model.safetensors.index.json; a sharded run "
                              "reads the weights from safetensors files (convert a .bin checkpoint with save_pretrained)")

    def key(self, name: str) -> str | None:
        """The checkpoint's name for `name` (one saved from the bare decoder lacks the causal LM's "model.")."""
        for k in (name, name.removeprefix("model.")):
            if k in self.files:
                return k
        return None

    def check(self, shapes: dict[str, torch.Size]) -> None:
        """Every weight the model needs (name -> shape) is in the files with its shape: a config error listing the
        missing and mismatched ones otherwise, before anything is filled."""
        from safetensors import safe_open

        missing = [n for n in shapes if self.key(n) is None]
        wrong = []
        by_file: dict[Path, list[str]] = {}
        for n in shapes:
            if n not in missing:
                by_file.setdefault(self.files[self.key(n)], []).append(n)
        for path, names in by_file.items():
            with safe_open(str(path), framework="pt") as f:
                for n in names:
                    got = list(f.get_slice(self.key(n)).get_shape())
                    if got != list(shapes[n]):
                        wrong.append(f"{n} is {got} in the checkpoint, {list(shapes[n])} in the model")
        problems = [f"lacks {n}" for n in missing] + wrong
        if problems:
            shown = "; ".join(problems[:5]) + (f"; and {len(problems) - 5} more" if len(problems) > 5 else "")
            raise ConfigError(f"{self.folder}: the checkpoint does not fit the model ({shown}); a sharded run loads "
                              "each weight by its module's name (check model.config_overrides and the files)")

    def rows(self, name: str, start: int, end: int) -> torch.Tensor:
        from safetensors import safe_open

        key = self.key(name)
        with safe_open(str(self.files[key]), framework="pt") as f:
            piece = f.get_slice(key)
            value = piece[start:end] if len(piece.get_shape()) else f.get_tensor(key)
        return value.to(self.dtype)

    def release(self) -> None:
        pass


def resolve_files(source: str, revision: str | None, token: str | None) -> Path:
    """A local folder holding the model's safetensors files: `source` itself, or its Hub snapshot (downloaded
    once per machine into the Hugging Face cache; only config and safetensors files)."""
    if Path(source).is_dir():
        return Path(source)
    from huggingface_hub import snapshot_download

    from ..checkpoints.hub import from_hub

    return Path(from_hub(source, snapshot_download, revision=revision, token=token,
                         allow_patterns=["*.json", "*.safetensors"]))
