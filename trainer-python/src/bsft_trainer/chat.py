"""chat: a conversation with a run's final model, one reply at a time (`bsft chat`).

The orchestrator renders each prompt exactly as the dataset was rendered (chat template, speakers' names, the
instruction of `instruction` runs, a forced behavior's token after the assistant header) and sends its token IDs,
one JSON line on stdin per reply: {"prompt": [ids], "max_new_tokens": N}. The reply comes back on stdout token by
token, greedy as predict decodes: {"event": "token", "id": N} ... {"event": "end", "reason": "eos" | "length"}.
{"event": "ready", "device": ...} says the model is loaded. The process ends at the end of stdin (or with its
parent: BSFT_PARENT_PID). It reads nothing from the run folder but the final model and writes nothing.
"""
from __future__ import annotations

import json
import sys
from typing import Any, Iterator

import torch

from .config import Config, load_manifest
from .events import EXIT_DONE, ConfigError, _emit, log
from .inference import final_metadata, load_hf_merged, load_toy
from .model import resolve_dtype
from .train import pick_device


@torch.no_grad()
def stream_toy(model: Any, prompt: list[int], max_new: int, eos_id: int, device: torch.device) -> Iterator[int]:
    """Greedy decoding of the toy model, a token at a time (it has no cache: each step reads the whole sequence)."""
    from .packing import Batch

    ids = list(prompt)
    for _ in range(max_new):
        t = torch.tensor(ids, device=device)
        batch = Batch(t, t, torch.arange(len(ids), device=device), torch.tensor([0, len(ids)], dtype=torch.int32), len(ids), [0], 0)
        h = model.hidden(model.embed_tokens(batch.input_ids), batch.position_ids, batch.cu_seqlens, batch.max_seqlen)
        nxt = int((h[-1] @ model.lm_head.weight.t()).argmax())
        yield nxt
        if nxt == eos_id:
            return
        ids.append(nxt)


@torch.no_grad()
def stream_hf(model: Any, prompt: list[int], max_new: int, eos_id: int, device: torch.device) -> Iterator[int]:
    """Greedy decoding with the key/value cache, a token at a time: the tokens `generate` gives, as they come."""
    out = model(input_ids=torch.tensor([prompt], device=device), use_cache=True, logits_to_keep=1)
    for _ in range(max_new):
        nxt = int(out.logits[0, -1].argmax())
        yield nxt
        if nxt == eos_id:
            return
        out = model(input_ids=torch.tensor([[nxt]], device=device), past_key_values=out.past_key_values, use_cache=True)


def run(cfg: Config) -> int:
    manifest = load_manifest(cfg)
    folder, meta = final_metadata(cfg)
    device = pick_device()
    eos_id = manifest.eos_id
    if (folder / "toy_model.pt").is_file():
        model = load_toy(folder, device)
        stream = lambda p, n: stream_toy(model, p, n, eos_id, device)  # noqa: E731
    else:
        model = load_hf_merged(cfg, folder, meta, device, resolve_dtype(cfg.model.dtype, device))
        stream = lambda p, n: stream_hf(model, p, n, eos_id, device)  # noqa: E731
    log(f"chat: {meta.get('method', 'toy')} model from {folder} on {device.type}")
    _emit("ready", device=device.type)
    for line in sys.stdin:
        if not line.strip():
            continue
        try:
            req = json.loads(line)
            prompt = [int(t) for t in req["prompt"]]
            max_new = int(req.get("max_new_tokens", cfg.eval.max_new_tokens))
        except (ValueError, KeyError, TypeError) as e:
            raise ConfigError(f"chat: a request is not {{\"prompt\": [ids], \"max_new_tokens\": N}}: {e}") from None
        n = 0
        reason = "length"
        for tok in stream(prompt, max_new):
            n += 1
            _emit("token", id=tok)
            if tok == eos_id:
                reason = "eos"
        _emit("end", reason=reason, tokens=n)
    return EXIT_DONE
