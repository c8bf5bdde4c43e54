"""predict: batched greedy decoding over the eval splits (Contract 7 predictions).

The prompt of each task is its tokenized document up to the reply (context + assistant header), read from the
shards, so prompts are exactly what training saw. The predicted behavior is the **first generated token ID**
(never decoded text); `--force <behavior>` puts that behavior's token in the prompt instead (steering).

Engines (`eval.engine`): `static` sorts prompts by length into batches of `eval.batch_size`, left-padded, each
decoded by `generate` until its longest reply ends; `continuous` hands a chunk of prompts to transformers' continuous
batching (`generate_batch`, paged attention): finished replies leave the batch and waiting prompts take their place,
without padding; `auto` takes `continuous` for a transformers model on a GPU when replies are longer than one token, `static`
otherwise (trainer-python/bench/predict.py measures both: on a CPU, at long prompts, continuous is the slower). Decoding is plain greedy whatever
the model folder's generation_config.json says (no repetition penalty, no sampling), and with
`eval.max_new_tokens: 1` (only the behavior is wanted) one forward pass per batch reads the first token.

Each row of a token run (not forced) also keeps how close its decision was: `behavior_logprobs`, the log-probability
of each behavior token at the first generated position over the whole vocabulary (fp32 log-softmax of the model's
logits there), and `behavior_probs`, those renormalised over the behavior tokens alone; both rounded to 6 decimals.

Resumable: the work goes in chunks (a batch, or a continuous chunk of prompts); each finished chunk's rows are
appended to `<output_dir>/predict-progress/<file>.part` and its count to `<file>.json`, under the run's fence. A
predict that is killed or preempted (SIGTERM: the chunk in hand finishes, exit 75) continues at the next chunk, and a
predictions file already finished with the same inputs is not made again. The file is assembled in the split's
order: the same bytes as an uninterrupted predict. `predictions/predict.json` records the engine, tokens generated
and tokens/s of each file.
"""
from __future__ import annotations

import hashlib
import json
import os
import re
import time
from dataclasses import dataclass
from pathlib import Path

import torch

from ..checkpoints import checkpoint as ckpt
from ..data.config import load_manifest
from ..process.events import EXIT_DONE, EXIT_PREEMPTED, ConfigError, emit_done, emit_progress, log
from .final_model import final_metadata, is_toy, load_hf_merged, load_toy
from ..modeling.model import resolve_dtype
from ..data.shards import Shard
from ..training.train import StopFlag, pick_device
from typing import Any, Callable, Iterator
from ..data.config import Config
from ..process.fence import Fence

ANSWER = re.compile(r"^\W*\(?([A-Ea-e])[\).:\s]")


def prompts(shard: Shard) -> list[list[int]]:
    """Token IDs of each document up to its first predicted token."""
    out = []
    for d in range(len(shard)):
        ids, mask = shard.doc(d)
        first = int(mask.argmax()) if mask.any() else len(ids)
        out.append([int(x) for x in ids[:first]])
    return out


def biased(logits: torch.Tensor, bias: dict[int, float] | None) -> torch.Tensor:
    """`logits` [..., V] with `bias` (token ID -> offset) added, as a server's logit_bias adds it; the same tensor
    when there is none."""
    if not bias:
        return logits
    out = logits.clone()
    for token, offset in bias.items():
        out[..., token] += offset
    return out


@torch.no_grad()
def stream_toy(model: Any, prompt: list[int], max_new: int, eos_id: int, device: torch.device,
               bias: dict[int, float] | None = None, on_first: Callable[[torch.Tensor], None] | None = None) -> Iterator[int]:
    """Greedy decoding of the toy model, a token at a time (it has no cache: each step reads the whole sequence).
    `on_first` receives the first position's logits [V] as the model gave them (before `bias`)."""
    from ..training.packing import Batch

    ids = list(prompt)
    for step in range(max_new):
        t = torch.tensor(ids, device=device)
        batch = Batch(t, t, torch.arange(len(ids), device=device), torch.tensor([0, len(ids)], dtype=torch.int32), len(ids), [0], 0)
        h = model.hidden(model.embed_tokens(batch.input_ids), batch.position_ids, batch.cu_seqlens, batch.max_seqlen)
        logits = h[-1] @ model.lm_head.weight.t()
        if step == 0 and on_first is not None:
            on_first(logits)
        nxt = int(biased(logits, bias).argmax())
        yield nxt
        if nxt == eos_id:
            return
        ids.append(nxt)


@torch.no_grad()
def stream_hf(model: Any, prompt: list[int], max_new: int, eos_id: int, device: torch.device,
              bias: dict[int, float] | None = None, on_first: Callable[[torch.Tensor], None] | None = None) -> Iterator[int]:
    """Greedy decoding with the key/value cache, a token at a time (`bsft chat`): the tokens `generate` gives.
    `on_first` receives the first position's logits [V] as the model gave them (before `bias`)."""
    out = model(input_ids=torch.tensor([prompt], device=device), use_cache=True, logits_to_keep=1)
    if on_first is not None:
        on_first(out.logits[0, -1])
    for _ in range(max_new):
        nxt = int(biased(out.logits[0, -1], bias).argmax())
        yield nxt
        if nxt == eos_id:
            return
        out = model(input_ids=torch.tensor([[nxt]], device=device), past_key_values=out.past_key_values, use_cache=True)


def greedy_toy(model: Any, batch_prompts: list[list[int]], max_new: int, eos_id: int, device: torch.device,
               bias: dict[int, float] | None = None) -> list[list[int]]:
    return [list(stream_toy(model, p, max_new, eos_id, device, bias)) for p in batch_prompts]


@torch.no_grad()
def first_logits_toy(model: Any, batch_prompts: list[list[int]], device: torch.device) -> torch.Tensor:
    """One packed forward pass over the batch: the logits [B, V] of each prompt's next token."""
    ids = torch.tensor([t for p in batch_prompts for t in p], device=device)
    ends = torch.tensor([len(p) for p in batch_prompts]).cumsum(0)
    cu = torch.cat([torch.zeros(1, dtype=torch.long), ends]).to(torch.int32)
    positions = torch.cat([torch.arange(len(p)) for p in batch_prompts]).to(device)
    h = model.hidden(model.embed_tokens(ids), positions, cu.to(device), max(len(p) for p in batch_prompts))
    return h[(ends - 1).to(device)] @ model.lm_head.weight.t()


def until_eos(tokens: list[int], eos_id: int) -> list[int]:
    """A reply's tokens up to and with its first end token (what follows is padding or nothing)."""
    out = []
    for t in tokens:
        out.append(int(t))
        if t == eos_id:
            break
    return out


def left_padded(batch_prompts: list[list[int]], pad_id: int) -> tuple[torch.Tensor, torch.Tensor]:
    width = max(len(p) for p in batch_prompts)
    ids = torch.full((len(batch_prompts), width), pad_id, dtype=torch.long)
    mask = torch.zeros_like(ids)
    for i, p in enumerate(batch_prompts):
        ids[i, width - len(p):] = torch.tensor(p)
        mask[i, width - len(p):] = 1
    return ids, mask


def plain_greedy(model: Any, eos_id: int, pad_id: int) -> None:
    """Greedy decoding and nothing else: transformers fills every generation setting left unset from the model's
    own generation_config (Qwen2.5's asks for repetition_penalty 1.05 and sampling), so it is replaced."""
    from transformers import GenerationConfig

    model.generation_config = GenerationConfig(do_sample=False, eos_token_id=eos_id, pad_token_id=pad_id)


@torch.no_grad()
def first_logits_hf(model: Any, batch_prompts: list[list[int]], pad_id: int, device: torch.device) -> torch.Tensor:
    """One forward pass over the left-padded batch: the logits [B, V] of each prompt's next token."""
    ids, mask = left_padded(batch_prompts, pad_id)
    positions = (mask.cumsum(-1) - 1).clamp(min=0)  # as generate() derives them: padding does not shift positions
    return model(input_ids=ids.to(device), attention_mask=mask.to(device), position_ids=positions.to(device),
                 use_cache=False, logits_to_keep=1).logits[:, -1]


def _processors(bias: dict[int, float] | None) -> tuple[Any, dict]:
    """transformers LogitsProcessors for `generate`: the first keeps the logits of the first generated position as
    the model gave them (only those: `output_logits` would keep every position's, B x steps x V floats), the second
    adds `bias` at every position (what logit_bias does). Returns the list and the dict the first fills."""
    from transformers import LogitsProcessor, LogitsProcessorList

    kept: dict = {}

    class KeepFirst(LogitsProcessor):
        def __call__(self, input_ids, scores):
            kept.setdefault("first", scores.detach().float().clone())
            return scores

    class Bias(LogitsProcessor):
        def __call__(self, input_ids, scores):
            return biased(scores, bias)

    return LogitsProcessorList([KeepFirst(), *([Bias()] if bias else [])]), kept


@torch.no_grad()
def greedy_hf_scored(model: Any, batch_prompts: list[list[int]], max_new: int, eos_id: int, pad_id: int,
                     device: torch.device, bias: dict[int, float] | None = None) -> tuple[list[list[int]], torch.Tensor]:
    """Greedy replies of a left-padded batch from `generate` (with `bias` added to the logits at every position),
    and the logits [B, V] of their first position (the model's own, before any bias)."""
    ids, mask = left_padded(batch_prompts, pad_id)
    width = ids.shape[1]
    processors, kept = _processors(bias)
    out = model.generate(input_ids=ids.to(device), attention_mask=mask.to(device), max_new_tokens=max_new,
                         logits_processor=processors)
    return [until_eos(row, eos_id) for row in out[:, width:].tolist()], kept["first"]


def greedy_hf(model: Any, batch_prompts: list[list[int]], max_new: int, eos_id: int, pad_id: int, device: torch.device) -> list[list[int]]:
    return greedy_hf_scored(model, batch_prompts, max_new, eos_id, pad_id, device)[0]


@torch.no_grad()
def greedy_continuous(model: Any, batch_prompts: list[list[int]], max_new: int, eos_id: int, pad_id: int, device: torch.device) -> list[list[int]]:
    """Greedy replies from transformers' continuous batching (paged attention): the tokens `generate` gives."""
    from transformers import GenerationConfig
    from transformers.generation import ContinuousBatchingConfig

    config = GenerationConfig(do_sample=False, max_new_tokens=max_new, eos_token_id=eos_id, pad_token_id=pad_id)
    cb = None
    if device.type != "cuda":
        # Its defaults size the paged cache from free accelerator memory; on a CPU, size it from the chunk itself.
        page = 32
        need = sum(-(-(len(p) + max_new) // page) for p in batch_prompts)
        cb = ContinuousBatchingConfig(page_size=page, num_blocks=need + 2, max_batch_tokens=max(512, max(len(p) for p in batch_prompts)))
    out = model.generate_batch(batch_prompts, generation_config=config, continuous_batching_config=cb, warmup=device.type == "cuda")
    results = []
    for i, p in enumerate(batch_prompts):
        r = out[f"req_{i}"]
        if r.error or list(r.prompt_ids) != p:
            raise RuntimeError(f"continuous batching: request {i} {'failed: ' + str(r.error) if r.error else 'came back for another prompt'}")
        results.append(until_eos(r.generated_tokens, eos_id))
    return results


ENGINES = ("static", "continuous", "auto")


def continuous_available() -> bool:
    """Whether this transformers has continuous batching (generate_batch, transformers >= 4.56)."""
    try:
        from transformers import GenerationMixin
    except ImportError:
        return False
    return hasattr(GenerationMixin, "generate_batch")


def pick_engine(asked: str, can: bool, max_new: int, device: torch.device, offsets: bool = False) -> str:
    """The engine of a predict; `can`: the model is a transformers one and continuous batching is there; `offsets`:
    an operating point is applied (static only: continuous batching takes no logits processor)."""
    if asked not in ENGINES:
        raise ConfigError(f"eval.engine: {asked!r} is not an engine of the trainer ({', '.join(ENGINES)})")
    if offsets:
        if asked == "continuous":
            raise ConfigError("eval.behavior_offsets: an operating point is applied by the static engine (continuous batching "
                              "takes no logits processor); set eval.engine: static or auto")
        return "static"
    if asked == "continuous" and not can:
        raise ConfigError("eval.engine: continuous needs a transformers model with continuous batching "
                          "(transformers >= 4.56); the toy model and older versions use static")
    if asked == "auto":
        # Measured with trainer-python/bench/predict.py: on a CPU continuous batching is slower (0.29x static, tiny
        # model, 200-3,000-token prompts); it is the engine for a GPU, where padding and waiting for the longest
        # reply waste the most.
        return "continuous" if can and max_new > 1 and device.type == "cuda" else "static"
    return asked


def chunk_size(engine: str, batch_size: int) -> int:
    """Prompts per resumable chunk: a batch for static; for continuous, enough that the batch stays full."""
    return batch_size if engine == "static" else max(batch_size, 256)


class Progress:
    """The finished chunks of one predictions file: rows appended to `<name>.part` (`<index>\t<row>` lines) and
    the count in `<name>.json` with the bytes they take, written after the rows; a record for other inputs
    (`key`) is started over. A finished file keeps its record, marked done with the file's sha256."""

    def __init__(self, folder: Path, name: str, key: str) -> None:
        folder.mkdir(parents=True, exist_ok=True)
        self.part, self.record, self.key = folder / f"{name}.part", folder / f"{name}.json", key
        try:
            r = json.loads(self.record.read_text())
        except (FileNotFoundError, ValueError):
            r = {}
        self.state = r if r.get("key") == key else {"key": key, "chunks": 0, "bytes": 0}

    def finished(self, target: Path) -> bool:
        return bool(self.state.get("sha256")) and target.is_file() and ckpt.sha256_file(target) == self.state["sha256"]

    def rows(self) -> dict[int, str]:
        """The rows of the recorded chunks (an unrecorded tail is dropped)."""
        if not self.part.is_file() or not self.state["chunks"]:
            self.part.write_bytes(b"")
            return {}
        with open(self.part, "r+b") as f:
            f.truncate(self.state["bytes"])
            data = f.read().decode()
        return {int(i): row for i, row in (line.split("\t", 1) for line in data.splitlines())}

    def _save(self) -> None:
        tmp = self.record.with_suffix(".tmp")
        tmp.write_text(json.dumps(self.state))
        with open(tmp) as f:
            os.fsync(f.fileno())
        os.replace(tmp, self.record)

    def append(self, rows: list[tuple[int, str]]) -> None:
        with open(self.part, "ab") as f:
            f.write("".join(f"{i}\t{row}\n" for i, row in rows).encode())
            f.flush()
            os.fsync(f.fileno())
            self.state["bytes"] = f.tell()
        self.state["chunks"] += 1
        self._save()

    def done(self, target: Path) -> None:
        self.state["sha256"] = ckpt.sha256_file(target)
        self._save()
        self.part.unlink(missing_ok=True)


def _digest(*parts: Any) -> str:
    h = hashlib.sha256()
    for p in parts:
        h.update(json.dumps(p, sort_keys=True).encode() if not isinstance(p, bytes) else p)
    return h.hexdigest()


def run(cfg: Config, fence: Fence, force: str | None = None) -> int:
    """Makes the run's predictions files (one per eval split, `<split>.forced-<behavior>.jsonl` with --force) that are
    not made yet, from its final model; exit 75 when stopped between chunks."""
    manifest = load_manifest(cfg)
    if force is not None and force not in manifest.behavior_ids:
        raise ConfigError(f"--force: unknown behavior {force!r} (behaviors: {', '.join(manifest.behavior_ids)})")
    if force is not None and cfg.conditioning != "token":
        raise ConfigError("--force needs a run with conditioning: token")
    folder, meta = final_metadata(cfg)
    device = pick_device()
    toy = is_toy(cfg, folder, meta)
    offsets = nonzero_offsets(cfg.eval.behavior_offsets)
    engine = pick_engine(cfg.eval.engine, not toy and continuous_available(), cfg.eval.max_new_tokens, device, bool(offsets))
    chunk = chunk_size(engine, cfg.eval.batch_size)

    # Each predictions file's prompts and progress first: files already made need no model.
    model_id = meta["model_id"].encode() if meta["method"] == "none" else (folder / "COMPLETE").read_bytes()
    files = plan_files(cfg, manifest, force, model_id, engine, chunk, toy, offsets)
    pending = [f.name for f in files if not f.work.finished(Path(cfg.predictions_dir) / f.name)]
    # The behavior tokens' probabilities at the first generated position: a token run's own choice (a forced prompt
    # already ends with its behavior token).
    scored = cfg.conditioning == "token" and force is None
    generate, tokenizer = load_generator(cfg, manifest, folder, meta, device, engine, toy, scored) if pending else (None, None)
    if offsets:
        log(f"predict: the operating point {offsets} is added to the behavior tokens' logits (eval.behavior_offsets)")
    log(f"predict: engine {engine} ({'asked' if cfg.eval.engine == engine else 'auto'}), {chunk} prompts per chunk, "
        f"max_new_tokens {cfg.eval.max_new_tokens}, on {device.type}; to make: {', '.join(pending) or 'nothing'}")

    stop = StopFlag().install()
    Path(cfg.predictions_dir).mkdir(parents=True, exist_ok=True)
    rows = Rows(cfg, manifest, force, tokenizer)
    written = []
    for f in files:
        target = Path(cfg.predictions_dir) / f.name
        if f.name not in pending:
            log(f"predictions: {target} already made from the same model, prompts and settings")
        elif not make_file(cfg, fence, f, generate, rows, stop, chunk, engine, device):
            return EXIT_PREEMPTED
        written.append(str(target))
    # The folder's COMPLETE (every prediction file there, this attempt's epoch), as for checkpoints.
    with fence.publishing():
        ckpt.write_complete(cfg.predictions_dir, {"run_id": cfg.run_id, "epoch": fence.epoch})
    emit_done(written[-1] if written else cfg.predictions_dir)
    return EXIT_DONE


@dataclass
class PredictionsFile:
    """One predictions file to make: its split, name, prompts (the forced token appended), document ids, progress."""
    split: str
    name: str
    prompts: list[list[int]]
    doc_ids: list[str]
    work: Progress


def plan_files(cfg: Config, manifest: Any, force: str | None, model_id: bytes, engine: str, chunk: int, toy: bool,
               offsets: dict | None = None) -> list[PredictionsFile]:
    files = []
    for split in cfg.eval.splits:
        all_prompts = prompts(Shard(cfg.shards[split]))
        if force is not None:
            all_prompts = [p + [manifest.behavior_ids[force]] for p in all_prompts]
        name = f"{split}.forced-{force}.jsonl" if force else f"{split}.jsonl"
        doc_ids = manifest.documents[split]
        # The prompts are the shard's (and the forced token): its bytes name them without serialising every prompt.
        key = _digest(model_id, ckpt.sha256_file(cfg.shards[split]), force, doc_ids,
                      [cfg.eval.max_new_tokens, engine, chunk, cfg.conditioning, not toy, "behavior-probs-v1", sorted((offsets or {}).items())])
        files.append(PredictionsFile(split, name, all_prompts, doc_ids, Progress(Path(cfg.output_dir) / "predict-progress", name, key)))
    return files


def behavior_scores(logits: torch.Tensor, ids: list[int]) -> list[tuple[list[float], list[float]]]:
    """Per prompt, from the logits [B, V] of its first generated position: the log-probability of each behavior token
    (`ids`) over the whole vocabulary, and the behavior tokens' probabilities renormalised over them alone."""
    lp = torch.log_softmax(logits.float(), dim=-1)[:, ids]
    return list(zip(lp.tolist(), torch.softmax(lp, dim=-1).tolist()))


def load_generator(cfg: Config, manifest: Any, folder: Path, meta: Any, device: torch.device, engine: str, toy: bool,
                   scored: bool) -> tuple[Any, Any]:
    """The final model loaded, as a function from a batch of prompts to their generated tokens and (`scored`) the
    logits [B, V] of their first generated position, else None; and the tokenizer (None for the toy model, whose
    replies are not decoded). The logits come from the pass that picks the first token (one forward pass; `generate`'s
    own), except for continuous batching, whose first positions are read by one more forward pass over the prompts,
    `eval.batch_size` at a time."""
    eos_id, max_new = manifest.eos_id, cfg.eval.max_new_tokens
    bias = behavior_bias(cfg.eval.behavior_offsets, manifest.behavior_ids)

    def first_token(first_logits):
        """A batch's first tokens from one forward pass's logits (`max_new_tokens: 1`)."""
        def generate(b):
            logits = first_logits(b)
            return [[int(t)] for t in biased(logits, bias).argmax(-1).tolist()], logits if scored else None
        return generate

    if toy:
        model = load_toy(folder, device, cfg.train.seed if meta["method"] == "none" else None)
        if max_new == 1:
            return first_token(lambda b: first_logits_toy(model, b, device)), None

        def greedy(b):
            return greedy_toy(model, b, max_new, eos_id, device, bias), first_logits_toy(model, b, device) if scored else None
        return greedy, None
    from ..checkpoints.save import load_tokenizer

    model = load_hf_merged(cfg, folder, meta, device, resolve_dtype(cfg.model.dtype, device))
    tokenizer = load_tokenizer(cfg, manifest)
    pad = tokenizer.pad_token_id if tokenizer.pad_token_id is not None else eos_id
    plain_greedy(model, eos_id, pad)
    if engine == "continuous":
        size = cfg.eval.batch_size

        def continuous(b):
            logits = torch.cat([first_logits_hf(model, b[i:i + size], pad, device) for i in range(0, len(b), size)]) if scored else None
            return greedy_continuous(model, b, max_new, eos_id, pad, device), logits
        return continuous, tokenizer
    if max_new == 1:
        return first_token(lambda b: first_logits_hf(model, b, pad, device)), tokenizer
    return (lambda b: greedy_hf_scored(model, b, max_new, eos_id, pad, device, bias)), tokenizer


def nonzero_offsets(offsets: dict | None) -> dict[str, float]:
    """An operating point (behavior -> offset) without its zero offsets."""
    return {b: float(v) for b, v in (offsets or {}).items() if v}


def behavior_bias(offsets: dict | None, behavior_ids: dict[str, int]) -> dict[int, float]:
    """An operating point as token ID -> offset (the zero ones left out)."""
    return {behavior_ids[b]: v for b, v in nonzero_offsets(offsets).items()}


def behavior_fields(names: list[str], scores: tuple[list[float], list[float]]) -> dict:
    """A prediction's `behavior_logprobs` and `behavior_probs` (Contract 7) from `behavior_scores`, by behavior name."""
    logprobs, probs = scores
    return {"behavior_logprobs": {n: round(v, 6) for n, v in zip(names, logprobs)},
            "behavior_probs": {n: round(v, 6) for n, v in zip(names, probs)}}


class Rows:
    """A prediction row (Contract 7) from a task's generated tokens: the behavior is the first token's; the reply as
    text for a judge (behavior tokens and other special tokens out), and the letter of a multiple-choice answer."""

    def __init__(self, cfg: Config, manifest: Any, force: str | None, tokenizer: Any) -> None:
        self.token = cfg.conditioning == "token"
        self.by_id = {v: k for k, v in manifest.behavior_ids.items()}
        self.eos_id, self.force, self.tokenizer = manifest.eos_id, force, tokenizer
        self.names = list(manifest.behavior_ids)
        self.ids = [manifest.behavior_ids[n] for n in self.names]

    def row(self, task_id: str, gen: list[int], records: dict, scores: tuple[list[float], list[float]] | None = None) -> str:
        first = gen[0] if gen else None
        row = {"id": task_id, "predicted_behavior": self.force or self.by_id.get(first) if self.token else None,
               "raw_token_ids": gen[:16]}
        if self.force:
            row["forced"] = True
        if scores is not None:
            row.update(behavior_fields(self.names, scores))
        if self.tokenizer is not None:
            text = self.tokenizer.decode([t for t in gen if t not in self.by_id and t != self.eos_id], skip_special_tokens=True)
            row["reply"] = text.strip()
            if "answer" in records.get(task_id, {}):
                m = ANSWER.match(text)
                row["predicted_answer"] = m.group(1).upper() if m else None
        return json.dumps(row)


def make_file(cfg: Config, fence: Fence, f: PredictionsFile, generate: Any, rows: Rows, stop: StopFlag, chunk: int,
              engine: str, device: torch.device) -> bool:
    """Generates the file's remaining chunks (longest prompts first), each appended under the fence as it is done,
    then writes the file in the split's order and its line in predict.json. False when stopped between chunks."""
    target = Path(cfg.predictions_dir) / f.name
    total = len(f.prompts)
    records = {}
    if cfg.messages.get(f.split) and Path(cfg.messages[f.split]).is_file():
        with open(cfg.messages[f.split]) as fh:
            records = {r["id"]: r for r in map(json.loads, fh)}
    done = f.work.rows()
    # Longest first, so that a chunk too big for the device fails at once; ties keep the split's order.
    order = sorted(range(total), key=lambda i: (-len(f.prompts[i]), i))
    chunks = [order[c:c + chunk] for c in range(0, total, chunk)]
    if f.work.state["chunks"]:
        log(f"predictions: {f.name}: continuing after {f.work.state['chunks']} of {len(chunks)} chunks ({len(done)} of {total} tasks done)")
    started, generated_tokens, resumed_after = time.monotonic(), 0, f.work.state["chunks"]
    for c in range(resumed_after, len(chunks)):
        if stop.signal is not None:
            log(f"predict: stopped by signal {stop.signal} after {c} of {len(chunks)} chunks of {f.name}; the next predict continues there")
            return False
        idx = chunks[c]
        gens, first_logits = generate([f.prompts[i] for i in idx])
        scores = behavior_scores(first_logits, rows.ids) if first_logits is not None else [None] * len(idx)
        generated_tokens += sum(len(g) for g in gens)
        new_rows = [(i, rows.row(f.doc_ids[i], g, records, sc)) for i, g, sc in zip(idx, gens, scores)]
        with fence.publishing():
            f.work.append(new_rows)
        done.update(new_rows)
        emit_progress(len(done), total)
    seconds = time.monotonic() - started
    tmp = target.with_suffix(".jsonl.tmp")
    with open(tmp, "w") as fh:
        for i in range(total):
            fh.write(done[i] + "\n")
        fh.flush()
        os.fsync(fh.fileno())
    with fence.publishing():
        os.replace(tmp, target)
        f.work.done(target)
        # tokens and seconds: this attempt's chunks
        record(Path(cfg.predictions_dir) / "predict.json", f.name, {
            "engine": engine, "device": device.type, "tasks": total, "chunk": chunk, "max_new_tokens": cfg.eval.max_new_tokens,
            "generated_tokens": generated_tokens, "seconds": round(seconds, 3),
            "tokens_per_s": round(generated_tokens / seconds, 1) if seconds > 0 else None, "resumed_after_chunks": resumed_after,
            **({"behavior_offsets": offsets} if (offsets := nonzero_offsets(cfg.eval.behavior_offsets)) else {})})
    log(f"predictions: {target} ({total} tasks, {generated_tokens} tokens in {seconds:.1f} s with {engine})")
    return True


def record(record_file: Path, name: str, entry: dict) -> None:
    """`predictions/predict.json`: one entry per predictions file, replaced atomically."""
    try:
        rec = json.loads(record_file.read_text())
    except (FileNotFoundError, ValueError):
        rec = {}
    rec[name] = entry
    tmp = record_file.with_suffix(".json.tmp")
    tmp.write_text(json.dumps(rec, indent=1, sort_keys=True) + "\n")
    os.replace(tmp, record_file)
