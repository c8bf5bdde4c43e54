"""`python -m bsft_trainer judge --config judge.json`: a local Hugging Face model as a behavior judge.

judge.json (written by the orchestrator's judge step, `kind: model`):
  {"requests": path, "out": path, "model": name_or_path, "revision": str|null, "dtype": "bfloat16"|"float32"|"auto",
   "batch_size": int, "labels": [behavior, ...]}
requests: JSONL lines {"key", "messages": [{"role", "content"}]} (the judge prompt, built on the TypeScript side).

Each request's messages are rendered with the model's own chat template (generation prompt added); every label's
answer line `label: <behavior>` is scored by its log-likelihood after the prompt, and the most likely label wins.
No sampling: the same model and requests give the same labels. Prompts go through the model longest first in
batches of `batch_size` (each with all its labels), left-padded, keeping only the answer positions' logits. Writes `out` whole (beside, then renamed):
lines {"key", "label", "raw", "status": "ok", "logprobs": {behavior: float}}; emits `progress` and `done` events.
"""
from __future__ import annotations

import json
import os
from pathlib import Path

import torch

from ..process.events import EXIT_DONE, ConfigError, emit_done, emit_progress, log
from ..checkpoints.hub import from_hub
from ..modeling.model import resolve_dtype
from ..training.train import pick_device


def label_logprobs(model, prompts: list[list[int]], answers: list[list[int]], pad_id: int, device) -> torch.Tensor:
    """[len(prompts), len(answers)] summed log-probabilities of each answer's tokens after each prompt, in one
    forward pass. Left-padded (positions from the attention mask), so every answer ends at the last position and
    only the last few positions' logits are computed (`logits_to_keep`): not a vocabulary-wide row per token."""
    seqs = [p + a for p in prompts for a in answers]
    width = max(len(s) for s in seqs)
    keep = max(len(a) for a in answers) + 1
    ids = torch.full((len(seqs), width), pad_id, dtype=torch.long)
    mask = torch.zeros((len(seqs), width), dtype=torch.long)
    for i, s in enumerate(seqs):
        ids[i, width - len(s):] = torch.tensor(s)
        mask[i, width - len(s):] = 1
    positions = (mask.cumsum(-1) - 1).clamp(min=0)
    with torch.no_grad():
        logits = model(input_ids=ids.to(device), attention_mask=mask.to(device), position_ids=positions.to(device),
                       logits_to_keep=keep).logits.float()
    logp = torch.log_softmax(logits, dim=-1)  # [seqs, keep, vocab]: the last `keep` positions
    out = torch.empty(len(seqs), dtype=torch.float64)
    for i in range(len(seqs)):
        a = answers[i % len(answers)]
        # the answer is the last len(a) tokens; the logits one position earlier predict each of them
        rows = torch.arange(keep - 1 - len(a), keep - 1, device=logp.device)
        out[i] = logp[i, rows, torch.tensor(a, device=logp.device)].sum().double().item()
    return out.view(len(prompts), len(answers))


def read_jsonl(path: Path) -> list:
    """JSON lines split at \\n only (not str.splitlines(): reply text may hold U+2028, U+2029, U+0085, VT, FF or
    FS/GS/RS, which JSON leaves unescaped or Python takes for line ends), read as UTF-8; an error names the file and line."""
    try:
        text = path.read_text(encoding="utf-8")
    except (OSError, UnicodeDecodeError) as e:
        raise ConfigError(f"judge requests {path}: {e}") from None
    out = []
    for n, line in enumerate(text.split("\n"), 1):
        if not line.strip():
            continue
        try:
            out.append(json.loads(line))
        except ValueError as e:
            raise ConfigError(f"judge requests {path}:{n}: {e}") from None
    return out


def run(config_path: str) -> int:
    try:
        cfg = json.loads(Path(config_path).read_text(encoding="utf-8"))
        labels = list(cfg["labels"])
        requests_file = Path(cfg["requests"])
    except (OSError, ValueError, KeyError) as e:
        raise ConfigError(f"judge config {config_path}: {e}") from None
    requests = read_jsonl(requests_file)
    if len(labels) < 2:
        raise ConfigError("judge: at least two labels are needed")
    from transformers import AutoModelForCausalLM, AutoTokenizer

    device = pick_device()
    dtype = resolve_dtype(cfg.get("dtype", "auto"), device)
    hub = {k: v for k, v in dict(revision=cfg.get("revision"), token=os.environ.get("HF_TOKEN")).items() if v}
    source = cfg.get("tokenizer") or cfg["model"]
    tokenizer = from_hub(source, AutoTokenizer.from_pretrained, **hub)
    if not getattr(tokenizer, "chat_template", None):
        raise ConfigError(f"judge model {cfg['model']}: its tokenizer ({source}) has no chat template (use an instruct/chat model, or judge.tokenizer)")
    folder = Path(cfg["model"])
    if folder.is_dir() and (folder / "config.json").is_file() and not any(folder.glob("*.safetensors")) and not any(folder.glob("*.bin")):
        # A config without weights (recipes/models/qwen2.5-tiny): random weights, seeded, so the judge path runs end to end.
        from transformers import AutoConfig

        log(f"judge model {folder}: a config without weights: random weights (seed 0), labels for testing only")
        torch.manual_seed(0)
        model = AutoModelForCausalLM.from_config(AutoConfig.from_pretrained(folder), dtype=dtype).to(device).eval()
    else:
        model = from_hub(cfg["model"], AutoModelForCausalLM.from_pretrained, dtype=dtype, **hub).to(device).eval()
    pad = tokenizer.pad_token_id if tokenizer.pad_token_id is not None else tokenizer.eos_token_id
    answers = [tokenizer(f"label: {b}", add_special_tokens=False)["input_ids"] for b in labels]
    prompts = [tokenizer(tokenizer.apply_chat_template(r["messages"], tokenize=False, add_generation_prompt=True),
                         add_special_tokens=False)["input_ids"] for r in requests]
    log(f"judge: {len(requests)} replies, model {cfg['model']} ({dtype}) on {device.type}")
    order = sorted(range(len(requests)), key=lambda i: (-len(prompts[i]), i))
    batch = max(1, int(cfg.get("batch_size", 8)))
    scores: list[torch.Tensor | None] = [None] * len(requests)
    for start in range(0, len(order), batch):
        chunk = order[start:start + batch]
        lp = label_logprobs(model, [prompts[i] for i in chunk], answers, pad, device)
        for row, i in enumerate(chunk):
            scores[i] = lp[row]
        emit_progress(min(len(order), start + batch), len(order))
    out = Path(cfg["out"])
    tmp = out.with_suffix(out.suffix + ".tmp")
    with open(tmp, "w", encoding="utf-8") as f:
        for r, s in zip(requests, scores):
            best = int(torch.argmax(s).item())
            f.write(json.dumps({"key": r["key"], "label": labels[best], "raw": f"label: {labels[best]}", "status": "ok",
                                "logprobs": {b: round(float(v), 6) for b, v in zip(labels, s)}}) + "\n")
    os.replace(tmp, out)
    emit_done(str(out))
    return EXIT_DONE
