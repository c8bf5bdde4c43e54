"""train.json and manifest.json (Contracts 4 and 3), loaded into dataclasses.

Both are validated against the JSON Schema files the orchestrator generates from its zod schemas (contract.py):
every bound, enum and required field comes from there, and every value from the file (no defaults here; a field
the schema marks optional is None when absent). A test checks that these dataclasses have exactly the schema's
fields.
"""
import dataclasses
import json
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Optional, Union

from .contract import problems, schema
from ..process.events import ConfigError, DataError


@dataclass(frozen=True)
class LoraConfig:
    r: int
    alpha: float
    dropout: float
    targets: Union[str, list]
    compute_dtype: str


@dataclass(frozen=True)
class TrainConfig:
    method: str  # lora, full; none (nothing trained: predict evaluates the base model as it ships)
    lora: LoraConfig
    schedule: str
    batch_tokens: int
    grad_accum: int
    grad_clip: float
    token_init: str
    weight_decay: float
    adam_betas: tuple
    adam_eps: float
    activation_checkpointing: Union[bool, str]
    compile: bool
    step_sync: str
    master_weights: str
    cpu_offload: bool
    checkpoint_every: int
    keep_checkpoints: int
    preempt_grace_s: int
    seed: int
    lr: Optional[float] = None  # None only with method none
    warmup_steps: Optional[int] = None
    warmup_ratio: Optional[float] = None
    epochs: Optional[float] = None
    max_steps: Optional[int] = None


@dataclass(frozen=True)
class ModelConfig:
    name_or_path: str
    dtype: str
    init: str
    revision: Optional[str] = None
    tokenizer: Optional[str] = None
    config_overrides: Optional[dict] = None


@dataclass(frozen=True)
class EvalConfig:
    every: int
    splits: list
    max_new_tokens: int
    batch_size: int
    force: list
    bootstrap: int
    engine: str
    # engine openai-chat: the instruction asks for a `[behavior]` tag, read by the orchestrator (not the trainer).
    reply_tag: bool
    endpoint: Optional[dict] = None  # engine openai: the orchestrator predicts through it, not the trainer
    # An operating point (bsft balance): behavior name -> offset added to its token's logit when predicting.
    behavior_offsets: dict = dataclasses.field(default_factory=dict)


@dataclass(frozen=True)
class DatasetPaths:
    manifest: str
    shards: dict
    messages: dict


@dataclass(frozen=True)
class MemoryPlan:
    """The orchestrator's GPU memory plan of the recipe (recipe/memory-plan.ts) on `gpus` GPUs: total bytes per GPU
    with 0, 1, ... all decoder layers recomputed."""
    gpus: int
    peak_bytes: list


@dataclass(frozen=True)
class Config:
    run_id: str
    model: ModelConfig
    tokenizer: str
    train: TrainConfig
    eval: EvalConfig
    conditioning: str
    max_seq_len: int
    behaviors: dict
    dataset: DatasetPaths
    output_dir: str
    predictions_dir: str
    tracking: list
    step_batches: Optional[int] = None  # batches of one step over all ranks (absent: train.grad_accum per rank)
    memory_plan: Optional[MemoryPlan] = None

    @property
    def manifest(self) -> str:
        return self.dataset.manifest

    @property
    def shards(self) -> dict:
        return self.dataset.shards

    @property
    def messages(self) -> dict:
        return self.dataset.messages

    @property
    def checkpoints_dir(self) -> str:
        return str(Path(self.output_dir) / "checkpoints")

    @property
    def final_dir(self) -> str:
        return str(Path(self.output_dir) / "final")


@dataclass(frozen=True)
class Manifest:
    """manifest.json of the dataset (Contract 3)."""

    format: str
    dataset_hash: str
    tokenizer_hash: str
    inputs: list
    options: dict
    behavior_tokens: dict
    behavior_ids: dict
    behavior_descriptions: dict
    tokenizer_size: int
    eos_id: int
    counts: dict
    cases: dict
    lengths: dict
    truncation: dict
    duplicates_skipped: int
    documents: dict


# Fields of train.json that hold a dataclass, by dataclass.
_NESTED = {Config: {"model": ModelConfig, "train": TrainConfig, "eval": EvalConfig, "dataset": DatasetPaths, "memory_plan": MemoryPlan},
           TrainConfig: {"lora": LoraConfig}}


def _build(cls: type, values: dict) -> Any:
    nested = _NESTED.get(cls, {})
    kwargs = {f.name: (_build(nested[f.name], values[f.name]) if f.name in nested and values[f.name] is not None else values[f.name])
              for f in dataclasses.fields(cls) if f.name in values}
    if cls is TrainConfig:
        kwargs["adam_betas"] = tuple(kwargs["adam_betas"])
    return cls(**kwargs)


def parse(d: Any) -> Config:
    """A Config from train.json's parsed content; ConfigError naming every problem by its path."""
    found = problems(d, schema("train"))
    # train.method none: a model evaluated as it ships (predict loads the base model); nothing to train.
    training = not found and d["train"]["method"] != "none"
    if training and d["train"].get("lr") is None:
        found.append("train.lr: required")
    if training and (d["train"].get("epochs") is None) == (d["train"].get("max_steps") is None):
        found.append("train: set exactly one of epochs and max_steps")
    if found:
        raise ConfigError("; ".join(found))
    return _build(Config, d)


def load(path: str) -> Config:
    try:
        with open(path) as f:
            d = json.load(f)
    except FileNotFoundError:
        raise ConfigError(f"config file not found: {path}") from None
    except ValueError as e:
        raise ConfigError(f"{path}: not valid JSON: {e}") from None
    return parse(d)


def load_manifest(cfg: Config) -> Manifest:
    try:
        with open(cfg.manifest) as f:
            d = json.load(f)
    except FileNotFoundError:
        raise DataError(f"dataset manifest not found: {cfg.manifest}") from None
    except ValueError as e:
        raise DataError(f"{cfg.manifest}: not valid JSON: {e}") from None
    found = problems(d, schema("manifest"))
    if found:
        raise DataError(f"{cfg.manifest}: " + "; ".join(found[:10]) + (f"; and {len(found) - 10} more" if len(found) > 10 else ""))
    manifest = _build(Manifest, d)
    ids = manifest.behavior_ids
    if set(ids) != set(cfg.behaviors):
        raise DataError(f"{cfg.manifest}: behavior_ids {sorted(ids)} do not match the recipe's behaviors {sorted(cfg.behaviors)}")
    values = sorted(ids.values())
    if values != list(range(values[0], values[0] + len(values))):
        raise DataError(f"{cfg.manifest}: behavior token IDs must be consecutive, got {values}")
    return manifest
