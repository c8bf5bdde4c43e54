"""train.json (Contract 4): the resolved recipe's trainer section plus absolute paths. One definition on this side."""
import json
from dataclasses import dataclass, field
from pathlib import Path

from .events import ConfigError


@dataclass
class LoraConfig:
    r: int = 16
    alpha: float = 32
    dropout: float = 0.05
    targets: object = "all-linear"


@dataclass
class TrainConfig:
    lr: float
    method: str = "lora"
    lora: LoraConfig = field(default_factory=LoraConfig)
    schedule: str = "cosine"
    warmup_steps: int | None = None
    warmup_ratio: float | None = None
    epochs: float | None = None
    max_steps: int | None = None
    batch_tokens: int = 16384
    grad_accum: int = 1
    grad_clip: float = 1.0
    weight_decay: float = 0.0
    token_init: str = "mean"
    activation_checkpointing: object = "auto"
    checkpoint_every: int = 200
    keep_checkpoints: int = 3
    preempt_grace_s: int = 60
    seed: int = 42


@dataclass
class ModelConfig:
    name_or_path: str
    dtype: str = "bfloat16"
    init: str = "pretrained"
    revision: str | None = None
    tokenizer: str | None = None
    config_overrides: dict = field(default_factory=dict)


@dataclass
class Config:
    run_id: str
    model: ModelConfig
    tokenizer: str
    train: TrainConfig
    eval: dict
    conditioning: str
    max_seq_len: int
    behaviors: dict
    manifest: str
    shards: dict
    messages: dict
    output_dir: str
    predictions_dir: str

    @property
    def checkpoints_dir(self):
        return str(Path(self.output_dir) / "checkpoints")

    @property
    def final_dir(self):
        return str(Path(self.output_dir) / "final")


def _take(d, key, kind, where, required=True, default=None):
    if key not in d or d[key] is None:
        if required:
            raise ConfigError(f"{where}{key}: required")
        return default
    v = d[key]
    ok = isinstance(v, kind) and not (kind in (int, float, (int, float)) and isinstance(v, bool))
    if not ok:
        raise ConfigError(f"{where}{key}: expected {getattr(kind, '__name__', kind)}, got {type(v).__name__}")
    return v


def parse(d):
    if not isinstance(d, dict):
        raise ConfigError("train.json: expected an object")
    m = _take(d, "model", dict, "")
    t = _take(d, "train", dict, "")
    ds = _take(d, "dataset", dict, "")
    lora = t.get("lora") or {}
    train = TrainConfig(
        lr=float(_take(t, "lr", (int, float), "train.")),
        method=_take(t, "method", str, "train.", False, "lora"),
        lora=LoraConfig(r=int(lora.get("r", 16)), alpha=float(lora.get("alpha", 32)), dropout=float(lora.get("dropout", 0.05)),
                        targets=lora.get("targets", "all-linear")),
        schedule=_take(t, "schedule", str, "train.", False, "cosine"),
        warmup_steps=_take(t, "warmup_steps", int, "train.", False),
        warmup_ratio=_take(t, "warmup_ratio", (int, float), "train.", False),
        epochs=_take(t, "epochs", (int, float), "train.", False),
        max_steps=_take(t, "max_steps", int, "train.", False),
        batch_tokens=_take(t, "batch_tokens", int, "train.", False, 16384),
        grad_accum=_take(t, "grad_accum", int, "train.", False, 1),
        grad_clip=float(_take(t, "grad_clip", (int, float), "train.", False, 1.0)),
        weight_decay=float(_take(t, "weight_decay", (int, float), "train.", False, 0.0)),
        token_init=_take(t, "token_init", str, "train.", False, "mean"),
        activation_checkpointing=t.get("activation_checkpointing", "auto"),
        checkpoint_every=_take(t, "checkpoint_every", int, "train.", False, 200),
        keep_checkpoints=_take(t, "keep_checkpoints", int, "train.", False, 3),
        preempt_grace_s=_take(t, "preempt_grace_s", int, "train.", False, 60),
        seed=_take(t, "seed", int, "train.", False, 42),
    )
    if train.method not in ("lora", "full"):
        raise ConfigError(f"train.method: expected lora or full, got {train.method!r}")
    if train.schedule not in ("cosine", "linear", "constant"):
        raise ConfigError(f"train.schedule: expected cosine, linear or constant, got {train.schedule!r}")
    if train.token_init not in ("mean", "description"):
        raise ConfigError(f"train.token_init: expected mean or description, got {train.token_init!r}")
    if (train.epochs is None) == (train.max_steps is None):
        raise ConfigError("train: set exactly one of epochs and max_steps")
    for name in ("batch_tokens", "grad_accum", "checkpoint_every", "keep_checkpoints"):
        if getattr(train, name) <= 0:
            raise ConfigError(f"train.{name}: must be positive")
    if train.lr <= 0:
        raise ConfigError("train.lr: must be positive")
    model = ModelConfig(
        name_or_path=_take(m, "name_or_path", str, "model."),
        dtype=_take(m, "dtype", str, "model.", False, "bfloat16"),
        init=_take(m, "init", str, "model.", False, "pretrained"),
        revision=_take(m, "revision", str, "model.", False),
        tokenizer=_take(m, "tokenizer", str, "model.", False),
        config_overrides=_take(m, "config_overrides", dict, "model.", False, {}) or {},
    )
    if model.dtype not in ("bfloat16", "float16", "float32", "auto"):
        raise ConfigError(f"model.dtype: unknown dtype {model.dtype!r}")
    return Config(
        run_id=_take(d, "run_id", str, ""),
        model=model,
        tokenizer=_take(d, "tokenizer", str, "", False, model.name_or_path),
        train=train,
        eval=_take(d, "eval", dict, "", False, {}) or {},
        conditioning=_take(d, "conditioning", str, "", False, "token"),
        max_seq_len=_take(d, "max_seq_len", int, "", False, 4096),
        behaviors=_take(d, "behaviors", dict, ""),
        manifest=_take(ds, "manifest", str, "dataset."),
        shards=_take(ds, "shards", dict, "dataset."),
        messages=_take(ds, "messages", dict, "dataset.", False, {}) or {},
        output_dir=_take(d, "output_dir", str, ""),
        predictions_dir=_take(d, "predictions_dir", str, "", False, str(Path(d.get("output_dir", ".")) / "predictions")),
    )


def load(path):
    try:
        with open(path) as f:
            d = json.load(f)
    except FileNotFoundError:
        raise ConfigError(f"config file not found: {path}") from None
    except ValueError as e:
        raise ConfigError(f"{path}: not valid JSON: {e}") from None
    return parse(d)


def load_manifest(cfg):
    from .events import DataError

    try:
        with open(cfg.manifest) as f:
            manifest = json.load(f)
    except FileNotFoundError:
        raise DataError(f"dataset manifest not found: {cfg.manifest}") from None
    except ValueError as e:
        raise DataError(f"{cfg.manifest}: not valid JSON: {e}") from None
    ids = manifest.get("behavior_ids")
    if not isinstance(ids, dict) or set(ids) != set(cfg.behaviors):
        raise DataError(f"{cfg.manifest}: behavior_ids {sorted(ids or {})} do not match the recipe's behaviors {sorted(cfg.behaviors)}")
    values = sorted(ids.values())
    if values != list(range(values[0], values[0] + len(values))):
        raise DataError(f"{cfg.manifest}: behavior token IDs must be consecutive, got {values}")
    return manifest
