"""Builds the model to train: the real one (transformers + peft, imported only here) or the tiny test model.

`TrainModel` hides the difference from the loop: `hidden(batch)` gives final hidden states of a packed batch,
`output()` the output weight and behavior-token rows for the loss, `named_trainable()` what the optimizer steps and
a checkpoint keeps, `layers` the decoder layers (for selective recomputation and regional compilation).
"""
from __future__ import annotations

import json
import os
from pathlib import Path

import torch
from torch import nn

from ..checkpoints import checkpoint as ckpt
from ..training.attention import packed_attention
from ..process.events import ConfigError, log
from ..checkpoints.hub import from_hub
from .token_rows import TokenRows, init_rows_in_place, row_sources
from .toy import ToyLM
from typing import Any
from ..data.config import Config, Manifest
from ..process.fence import Fence

DTYPES = {"bfloat16": torch.bfloat16, "float16": torch.float16, "float32": torch.float32}
ATTN_NAME = "bsft_packed"

# The document boundaries of the micro-batch being run. The attention function registered with transformers reads
# them; they stay set until the next micro-batch, so activation recomputation during backward sees the same ones.
_PACKED = {}


def resolve_dtype(name: str, device: torch.device) -> torch.dtype:
    if name == "auto":
        return torch.bfloat16 if device.type == "cuda" else torch.float32
    return DTYPES[name]


def read_model_config(cfg: Config) -> dict | None:
    """config.json of a local model folder (None for a Hub id that is not cached locally)."""
    p = Path(cfg.model.name_or_path) / "config.json"
    if p.is_file():
        with open(p) as f:
            return json.load(f)
    return None


class Trainable(nn.Module):
    """Holds every parameter the optimizer may touch: the model and, in LoRA mode, the behavior-token rows.

    Its forward is one micro-batch's summed loss (`TrainModel.loss_sum`): with FSDP2 (sharding.py) it is the root
    module, whose forward gathers the embeddings, the final norm, the output weight and the rows."""

    def __init__(self, base, rows):
        super().__init__()
        self.base = base
        self.rows = rows
        self.loss_fn = None  # set by TrainModel

    def forward(self, batch):
        return self.loss_fn(batch)


class TrainModel:
    fill = None  # a model built on the meta device: how to fill it (materialize.Fill)

    def __init__(self, container, embed, out_linear, decoder_hidden, layers, kind, method):
        self.container = container
        self._embed = embed
        self._out = out_linear
        self._decoder_hidden = decoder_hidden
        self.layers = layers
        self.kind = kind
        self.method = method
        self.recompute = 0  # how many decoder layers (the first ones) recompute their activations in backward
        container.loss_fn = self._loss_sum

    def _loss_sum(self, batch):
        from ..training.loss import chunked_ce_sum

        weight, rows = self.output()  # read inside the root's forward: the gathered parameters when sharded
        return chunked_ce_sum(self.hidden(batch), batch.labels, weight, rows, index=batch.loss_index)

    def loss_sum(self, batch):
        """Sum of the token losses of one (packed) micro-batch."""
        return self.container(batch)

    @property
    def rows(self):
        return self.container.rows

    def hidden(self, batch):
        emb = self._embed(batch.input_ids)
        if self.rows is not None:
            emb = self.rows.embed_ids(batch.input_ids, emb)
        return self._decoder_hidden(emb, batch, self.recompute)

    def output(self):
        """(weight [V, H], new_rows or None) for loss.output_logits."""
        return self._out.weight, (self.rows.output() if self.rows is not None else None)

    def logits(self, batch):
        from ..training.loss import output_logits

        weight, new_rows = self.output()
        return output_logits(self.hidden(batch), weight, new_rows)

    def named_trainable(self):
        """(name, parameter) of every parameter the optimizer steps (a tied parameter once)."""
        return [(k, p) for k, p in self.container.named_parameters() if p.requires_grad]

    def trainable_parameters(self):
        return [p for _, p in self.named_trainable()]

    def train(self, mode=True):
        self.container.train(mode)


def _behavior_range(manifest):
    ids = sorted(manifest.behavior_ids.values())
    return ids[0], len(ids)


# --------------------------------------------------------------------------- tiny test model (no transformers)

def build_toy(cfg: Config, manifest: Manifest, device: torch.device, model_config: dict, dtype: torch.dtype) -> "TrainModel":
    model_config = {**model_config, **(cfg.model.config_overrides or {})}
    torch.manual_seed(cfg.train.seed)
    model = ToyLM(model_config)
    weights = Path(cfg.model.name_or_path) / "toy_model.pt"
    if cfg.model.init == "pretrained":
        if not weights.is_file():
            raise ConfigError(f"model.init is pretrained but {weights} does not exist (use init: random for a fresh toy model)")
        model.load_state_dict(torch.load(weights, map_location="cpu"))
    model.to(device=device, dtype=dtype)
    first, n = _behavior_range(manifest)
    if first + n > model_config["vocab_size"]:
        raise ConfigError(f"behavior token IDs up to {first + n - 1} do not fit in vocab_size {model_config['vocab_size']}")
    if cfg.train.method == "lora":
        raise ConfigError("the bsft-toy test model supports method: full only (LoRA needs peft and a transformers model)")
    init_rows_in_place(model.embed_tokens.weight, model.lm_head.weight, first, n, row_sources(cfg.train.token_init, manifest))
    container = Trainable(model, None)

    def decoder_hidden(emb, batch, recompute):
        return model.hidden(emb, batch.position_ids, batch.cu_seqlens, batch.max_seqlen, recompute)

    return TrainModel(container, model.embed_tokens, model.lm_head, decoder_hidden, model.layers, "toy", "full")


# --------------------------------------------------------------------------- transformers + peft

def _hf_packed_attention(module, query, key, value, attention_mask, scaling=None, dropout=0.0, **kwargs):
    """AttentionInterface function: query [1, H, T, D] -> ([1, T, H, D], None), document-masked."""
    q, k, v = (x[0].transpose(0, 1) for x in (query, key, value))
    out = packed_attention(q, k, v, _PACKED["cu_seqlens"], _PACKED["max_seqlen"], scale=scaling)
    return out[None], None


def register_packed_attention() -> None:
    from transformers import AttentionInterface

    AttentionInterface.register(ATTN_NAME, _hf_packed_attention)
    try:  # transformers >= 4.53 builds masks per implementation; ours needs none.
        from transformers.masking_utils import AttentionMaskInterface

        AttentionMaskInterface.register(ATTN_NAME, lambda *args, **kwargs: None)
    except ImportError:
        pass


def model_config(cfg: Config, hub_kwargs: dict) -> Any:
    """The model's config with `model.config_overrides` applied. The config class is built again from the merged
    values so that fields derived from others (e.g. `layer_types` from `num_hidden_layers`) follow the override."""
    from transformers import AutoConfig

    config = from_hub(cfg.model.name_or_path, AutoConfig.from_pretrained, **hub_kwargs)
    overrides = cfg.model.config_overrides or {}
    if not overrides:
        return config
    values = {**config.to_dict(), **overrides}
    if "num_hidden_layers" in overrides and "layer_types" not in overrides:
        values.pop("layer_types", None)
    try:
        config = type(config).from_dict(values)
    except (TypeError, ValueError) as e:
        raise ConfigError(f"model.config_overrides: {e}") from None
    heads, kv = getattr(config, "num_attention_heads", None), getattr(config, "num_key_value_heads", None)
    if heads and getattr(config, "head_dim", None) is None and config.hidden_size % heads:
        raise ConfigError(f"model.config_overrides: hidden_size {config.hidden_size} is not divisible by num_attention_heads {heads}")
    if heads and kv and heads % kv:
        raise ConfigError(f"model.config_overrides: num_attention_heads {heads} is not a multiple of num_key_value_heads {kv}")
    return config


def _hub_kwargs(cfg: Config) -> dict:
    return {k: v for k, v in dict(revision=cfg.model.revision, token=os.environ.get("HF_TOKEN")).items() if v is not None}


def load_hf_model(cfg: Config, device: torch.device, dtype: torch.dtype, attn_implementation: str) -> Any:
    from transformers import AutoModelForCausalLM

    hub_kwargs = _hub_kwargs(cfg)
    config = model_config(cfg, hub_kwargs)
    if cfg.model.init == "random":
        torch.manual_seed(cfg.train.seed)
        with torch.device(device):  # initialised where it runs: a 7B model's random init on a CPU takes minutes
            model = AutoModelForCausalLM.from_config(config, dtype=dtype, attn_implementation=attn_implementation)
    else:
        model = from_hub(cfg.model.name_or_path, AutoModelForCausalLM.from_pretrained, config=config, dtype=dtype,
                         attn_implementation=attn_implementation, **hub_kwargs)
    return model.to(device)


def _skeleton(cfg: Config, device: torch.device, dtype: torch.dtype) -> tuple[Any, Any]:
    """The model on the meta device (no memory) and where its values will come from (weight_source.py): its
    checkpoint's files, or the seeded random init."""
    from transformers import AutoModelForCausalLM

    from .weight_source import CheckpointSource, RandomSource, resolve_files

    hub_kwargs = _hub_kwargs(cfg)
    config = model_config(cfg, hub_kwargs)
    with torch.device("meta"):
        model = AutoModelForCausalLM.from_config(config, dtype=dtype, attn_implementation=ATTN_NAME)
    if cfg.model.init == "random":
        return model, RandomSource(model, cfg.train.seed, dtype, device)
    source = CheckpointSource(resolve_files(cfg.model.name_or_path, cfg.model.revision, hub_kwargs.get("token")), dtype)
    source.check({n: p.shape for n, p in model.named_parameters()})
    return model, source


def _name_of(model: Any, weight: torch.Tensor) -> str:
    return next(n for n, p in model.named_parameters() if p is weight)


def build_hf(cfg: Config, manifest: Manifest, device: torch.device, fence: Fence, dtype: torch.dtype, keep_base: bool = True,
             sharded: bool = False) -> "TrainModel":
    """A pretrained model trained by one process is loaded whole (`from_pretrained`). Otherwise (several ranks, or
    a random init) the model is built on the meta device and `tm.fill` says how to fill it (materialize.py):
    one process fills it at once (build), ranks fill their shards once FSDP2 has cut them (train.prepare_model)."""
    try:
        import peft  # noqa: F401
        import transformers  # noqa: F401
    except ImportError as e:
        raise ConfigError(f"the trainer needs transformers and peft for this model: {e}. Install: pip install -e trainer-python") from None
    from .materialize import Fill, model_name, save_base_from
    from .weight_source import adapter_value

    sources = row_sources(cfg.train.token_init, manifest)  # a manifest problem fails before the model loads
    register_packed_attention()
    meta = sharded or cfg.model.init == "random"
    if meta:
        model, source = _skeleton(cfg, device, dtype)
    else:
        model, source = load_hf_model(cfg, device, dtype, ATTN_NAME), None
    embed = model.get_input_embeddings()
    out = model.get_output_embeddings()
    embed_name, out_name = _name_of(model, embed.weight), _name_of(model, out.weight)
    first, n = _behavior_range(manifest)
    if first + n > embed.weight.shape[0]:
        raise ConfigError(f"behavior token IDs up to {first + n - 1} do not fit in the model's {embed.weight.shape[0]} embedding rows; "
                          "bsft never resizes the embedding")
    # Tied input and output embeddings (Qwen2.5 0.5B/1.5B/3B) are one matrix: one set of behavior rows, trained once.
    tied = embed.weight is out.weight
    rows = None
    base_dir = None
    if cfg.train.method == "lora" and cfg.model.init == "random" and keep_base:
        # A LoRA adapter of a randomly initialised model is useless without that model: keep it, before LoRA.
        # Written atomically with a COMPLETE like a checkpoint: a half-written base/ is never taken for a saved one.
        # Written from the seeded init a file at a time (the model itself is still on the meta device).
        base_dir = Path(cfg.output_dir) / "base"
        if ckpt.verify(base_dir) is not None:
            ckpt.save_atomic(base_dir, lambda tmp: save_base_from(tmp, source.skeleton, source), fence,
                             {"run_id": cfg.run_id, "base": True})
    if cfg.train.method == "lora":
        from peft import LoraConfig, get_peft_model

        for p in model.parameters():
            p.requires_grad_(False)
        rows = TokenRows(embed.weight, out.weight, first, n, sources, tied=tied)
        rows = rows if meta else rows.to(device)
        lora = LoraConfig(r=cfg.train.lora.r, lora_alpha=cfg.train.lora.alpha, lora_dropout=cfg.train.lora.dropout,
                          target_modules=cfg.train.lora.targets, bias="none", task_type="CAUSAL_LM")
        # compute_dtype "model": the adapters compute in the model's dtype (peft's default upcasts them to fp32, and
        # with them every wrapped layer's input); the optimizer keeps fp32 masters of them (precision.py).
        in_fp32 = cfg.train.lora.compute_dtype == "float32"
        model = get_peft_model(model, lora, autocast_adapter_dtype=in_fp32, low_cpu_mem_usage=meta)
        for name, p in model.named_parameters():
            if ".lora_" in name:
                if meta and not in_fp32:  # peft makes adapters on the meta device in fp32
                    p.data = p.data.to(dtype)
                elif not meta:  # the seeded start materialize.py gives them: the same with one process or N ranks
                    with torch.no_grad():
                        p.copy_(adapter_value(model_name(name, peft=True), p.shape, p.dtype, p.device, cfg.train.seed))
    elif not meta:
        init_rows_in_place(embed.weight, out.weight, first, n, sources, tied=tied)
    base = model.get_base_model() if rows is not None else model
    decoder = base.get_decoder()

    def decoder_hidden(emb, batch, recompute):
        _PACKED["cu_seqlens"] = batch.cu_seqlens
        _PACKED["max_seqlen"] = batch.max_seqlen
        res = decoder(inputs_embeds=emb[None], position_ids=batch.position_ids[None], use_cache=False)
        return res.last_hidden_state[0]

    tm = TrainModel(Trainable(model, rows), embed, out, decoder_hidden, decoder.layers, "hf", cfg.train.method)
    tm.hf_model = model
    tm.base_dir = base_dir
    if meta:
        tm.fill = Fill(source, cfg.train.seed, {k: p.dtype for k, p in tm.container.named_parameters()},
                       peft=rows is not None, embed=embed_name, out=out_name, first=first, n=n, sources=sources,
                       tied=tied, method=cfg.train.method, skeleton=base)
    return tm


def set_recompute(tm: "TrainModel", n: int) -> None:
    """The first `n` decoder layers recompute their activations in backward (0: none; all layers: full
    activation checkpointing). Losses and gradients are the same either way."""
    n = max(0, min(n, len(tm.layers)))
    if tm.kind == "hf":
        if n and not tm.hf_model.is_gradient_checkpointing:
            tm.hf_model.gradient_checkpointing_enable(gradient_checkpointing_kwargs={"use_reentrant": False})
        for i, layer in enumerate(tm.layers):  # transformers' GradientCheckpointingLayer reads this per layer
            layer.gradient_checkpointing = i < n
    tm.recompute = n


def compile_layers(tm: "TrainModel") -> None:
    """Regional compilation: each decoder layer compiled on its own (torch.compile), the rest left eager; the
    layers share one compiled graph, so compiling costs one layer's time, not the model's."""
    for layer in tm.layers:
        layer.compile(dynamic=True)


def build(cfg: Config, manifest: Manifest, device: torch.device, fence: Fence, keep_base: bool = True,
          sharded: bool = False) -> "TrainModel":
    """keep_base=False (benchmarks): a randomly initialised LoRA base is not saved to base/. sharded=True: the model
    is left on the meta device with fp32 parameters, to be sharded by FSDP2 as the master weights (sharding.py) and
    then filled shard by shard (materialize.py) with the values one process starts from in the recipe's dtype: one
    process and N ranks start from the same weights, as one process's fp32 masters are exact copies of its bf16 ones.
    The toy test model is built whole either way."""
    dtype = resolve_dtype(cfg.model.dtype, device)
    model_config = read_model_config(cfg)
    if model_config and model_config.get("model_type") == "bsft-toy":
        tm = build_toy(cfg, manifest, device, model_config, dtype)
    else:
        tm = build_hf(cfg, manifest, device, fence, dtype, keep_base, sharded)
    if sharded:
        tm.container.float()
    elif tm.fill is not None:
        from .materialize import materialize

        materialize(tm, tm.fill, device)
    n_train = sum(p.numel() for p in tm.trainable_parameters())
    log(f"model: {tm.kind}, method {tm.method}, {n_train:,} trainable parameters; "
        f"behavior-token rows start from {'their descriptions' if cfg.train.token_init == 'description' else 'the mean row'}")
    return tm
