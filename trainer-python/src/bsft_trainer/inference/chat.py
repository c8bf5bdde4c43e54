"""chat: a conversation with a run's final model, one reply at a time (`bsft chat`).

The orchestrator renders each prompt exactly as the dataset was rendered (chat template, speakers' names, the
instruction of `instruction` runs, a forced behavior's token after the assistant header) and sends its token IDs,
one JSON line on stdin per reply: {"prompt": [ids], "max_new_tokens": N, "scored": bool, "offsets": {behavior: x}}.
The reply comes back on stdout token by token, greedy as predict decodes: with "scored", first
{"event": "behavior", "behavior_logprobs": {...}, "behavior_probs": {...}} (the behavior tokens' probabilities at
the first position, read from the pass that picks the first token, as predict records them), then {"event": "token", "id": N} ... {"event": "end", "reason": "eos" | "length"}.
"offsets" (an operating point) are added to the behavior tokens' logits at every position, as predict adds them.
{"event": "ready", "device": ...} says the model is loaded. The process ends at the end of stdin (or with its
parent: BSFT_PARENT_PID). It reads nothing from the run folder but the final model and writes nothing.
"""
from __future__ import annotations

import json
import sys

from ..data.config import Config, load_manifest
from ..process.events import EXIT_DONE, ConfigError, _emit, log
from .final_model import final_metadata, is_toy, load_hf_merged, load_toy
from ..modeling.model import resolve_dtype
from .predict import behavior_bias, behavior_fields, behavior_scores, stream_hf, stream_toy
from ..training.train import pick_device


def run(cfg: Config) -> int:
    manifest = load_manifest(cfg)
    folder, meta = final_metadata(cfg)
    device = pick_device()
    eos_id = manifest.eos_id
    names = list(manifest.behavior_ids)
    ids = [manifest.behavior_ids[b] for b in names]

    def emit_behavior(logits):
        _emit("behavior", **behavior_fields(names, behavior_scores(logits[None], ids)[0]))

    if is_toy(cfg, folder, meta):
        model = load_toy(folder, device, cfg.train.seed if meta["method"] == "none" else None)
        stream = lambda p, n, bias, on_first: stream_toy(model, p, n, eos_id, device, bias, on_first)  # noqa: E731
    else:
        model = load_hf_merged(cfg, folder, meta, device, resolve_dtype(cfg.model.dtype, device))
        stream = lambda p, n, bias, on_first: stream_hf(model, p, n, eos_id, device, bias, on_first)  # noqa: E731
    log(f"chat: {meta.get('method', 'toy')} model from {folder} on {device.type}")
    _emit("ready", device=device.type)
    for line in sys.stdin:
        if not line.strip():
            continue
        try:
            req = json.loads(line)
            prompt = [int(t) for t in req["prompt"]]
            max_new = int(req.get("max_new_tokens", cfg.eval.max_new_tokens))
            bias = behavior_bias(req.get("offsets"), manifest.behavior_ids)
        except (ValueError, KeyError, TypeError) as e:
            raise ConfigError(f"chat: a request is not {{\"prompt\": [ids], \"max_new_tokens\": N}}: {e}") from None
        n = 0
        reason = "length"
        for tok in stream(prompt, max_new, bias, emit_behavior if req.get("scored") else None):
            n += 1
            _emit("token", id=tok)
            if tok == eos_id:
                reason = "eos"
        _emit("end", reason=reason, tokens=n)
    return EXIT_DONE
