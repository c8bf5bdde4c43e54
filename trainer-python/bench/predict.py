"""Prediction throughput: predict's engines on the same prompts in one run.

  static      today's path: prompts sorted by length into left-padded batches of --batch-size, each decoded by
              `generate` until its longest reply ends
  continuous  transformers' continuous batching (`generate_batch`, paged attention): finished replies leave the
              batch and waiting prompts enter it, no padding (predict's chunks of max(batch, 256) prompts)

Same model (Qwen2.5-7B's shape with random bf16 weights on a GPU; the tiny Qwen2 model on a CPU, so CI can run it),
same prompts (lengths uniform in --min-len..--max-len), greedy, --max-new-tokens. Replies of varied length: the
end-of-reply token is the token whose first appearance in a probe of static replies is spread most evenly, so that
replies end at many different lengths (the random model has no real end). Printed per engine: generated tokens/s,
time to the last prediction, peak memory (GPU allocated; on a CPU the process's peak RSS so far), the ratio to
static, and how many replies are identical to static's.

  python trainer-python/bench/predict.py                 # 7B shape on a GPU, tiny model on a CPU
  python trainer-python/bench/predict.py --prompts 64 --max-new-tokens 64 --json out.json
"""
from __future__ import annotations

import argparse
import json
import random
import resource
import sys
import time
from collections import Counter
from pathlib import Path

import torch

ROOT = Path(__file__).resolve().parents[2]
sys.path.insert(0, str(ROOT / "trainer-python" / "src"))

from bsft_trainer.inference.predict import chunk_size, greedy_continuous, greedy_hf, plain_greedy  # noqa: E402

SHAPES = {"7b": ROOT / "recipes" / "models" / "qwen2.5-7b-shape", "tiny": ROOT / "recipes" / "models" / "qwen2.5-tiny"}
PAD = 151643


def peak_memory_gib(device: torch.device) -> float:
    if device.type == "cuda":
        return torch.cuda.max_memory_allocated(device) / 2**30
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 2**20


EOS = 151645


@torch.no_grad()
def vary_reply_lengths(model, prompts, max_new, device) -> list[int]:
    """Points the end token's output row in a random direction d and scales it so that, on the probe prompts, the
    median reply stops near max_new / 2: a step ends when scale * (h . d) beats every other logit. The tokens before a
    stop do not change, so one probe without an end gives the stop of every scale. Returns the probe's lengths."""
    from bsft_trainer.inference.predict import left_padded

    ids, mask = left_padded(prompts, PAD)
    head = model.get_output_embeddings().weight
    head[EOS] = 0
    out = model.generate(input_ids=ids.to(device), attention_mask=mask.to(device), max_new_tokens=max_new, eos_token_id=None,
                         return_dict_in_generate=True, output_scores=True, output_hidden_states=True)
    g = torch.Generator().manual_seed(3)
    d = torch.randn(head.shape[1], generator=g).to(device, head.dtype)
    d = d / d.norm()
    # Per step: the last hidden state (after the final norm) along d, and the best other logit.
    along = torch.stack([step[-1][:, -1, :].float() @ d.float() for step in out.hidden_states], 1)
    best = torch.stack([sc.float().max(-1).values for sc in out.scores], 1)

    def lengths(scale):
        stop = (scale * along > best)
        return [int(row.nonzero()[0]) + 1 if row.any() else max_new for row in stop]

    lo, hi = 0.0, 1e4
    for _ in range(60):
        mid = (lo + hi) / 2
        if sorted(lengths(mid))[len(prompts) // 2] > max_new / 2:
            lo = mid
        else:
            hi = mid
    # Off the boundary the search found (where the median reply's stop is a near tie), so that engines whose sums
    # differ in the last bits still agree on where replies end.
    scale = hi * 1.1
    head[EOS] = scale * d
    return lengths(scale)


def in_chunks(prompts, n, decode):
    """Predict's order (longest first) in chunks of n prompts, each decoded by `decode`; replies in prompt order."""
    order = sorted(range(len(prompts)), key=lambda i: (-len(prompts[i]), i))
    out = [None] * len(prompts)
    for s in range(0, len(order), n):
        idx = order[s:s + n]
        for i, g in zip(idx, decode([prompts[i] for i in idx])):
            out[i] = g
    return out


def static(model, prompts, max_new, eos, batch, device):
    return in_chunks(prompts, batch, lambda b: greedy_hf(model, b, max_new, eos, PAD, device))


def continuous(model, prompts, max_new, eos, batch, device):
    return in_chunks(prompts, chunk_size("continuous", batch), lambda b: greedy_continuous(model, b, max_new, eos, PAD, device))


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--device", default="cuda" if torch.cuda.is_available() else "cpu")
    parser.add_argument("--shape", choices=sorted(SHAPES), help="default: 7b on a GPU, tiny on a CPU")
    parser.add_argument("--prompts", type=int, help="default 256 on a GPU, 48 on a CPU")
    parser.add_argument("--min-len", type=int, default=200)
    parser.add_argument("--max-len", type=int, default=3000)
    parser.add_argument("--max-new-tokens", type=int, help="default 256 on a GPU, 32 on a CPU")
    parser.add_argument("--batch-size", type=int, help="static batches (default 32 on a GPU, 8 on a CPU)")
    parser.add_argument("--json", help="write the results here")
    args = parser.parse_args(argv)
    device = torch.device(args.device)
    gpu = device.type == "cuda"
    shape = args.shape or ("7b" if gpu else "tiny")
    n = args.prompts or (256 if gpu else 48)
    max_new = args.max_new_tokens or (256 if gpu else 32)
    batch = args.batch_size or (32 if gpu else 8)
    from transformers import AutoConfig, AutoModelForCausalLM

    torch.manual_seed(0)
    dtype = torch.bfloat16 if gpu else torch.float32
    with torch.device(device):
        model = AutoModelForCausalLM.from_config(AutoConfig.from_pretrained(SHAPES[shape]), dtype=dtype, attn_implementation="sdpa").eval()
    rng = random.Random(1)
    vocab = model.config.vocab_size
    prompts = [[rng.randrange(1000, min(vocab, 150000)) for _ in range(rng.randint(args.min_len, args.max_len))] for _ in range(n)]
    plain_greedy(model, PAD, PAD)
    probe = vary_reply_lengths(model, prompts[:8], max_new, device)
    eos = EOS
    print(f"predict bench: {shape} shape on {device.type}, {n} prompts of {args.min_len}-{args.max_len} tokens "
          f"(mean {sum(map(len, prompts)) / n:.0f}), greedy, max_new_tokens {max_new}, static batches of {batch}; "
          f"probe reply lengths {sorted(probe)}", flush=True)
    rows, outputs = [], {}
    for name, fn in (("static", static), ("continuous", continuous)):
        if gpu:
            torch.cuda.synchronize()
            torch.cuda.reset_peak_memory_stats(device)
        t = time.perf_counter()
        out = fn(model, prompts, max_new, eos, batch, device)
        if gpu:
            torch.cuda.synchronize()
        seconds = time.perf_counter() - t
        tokens = sum(len(g) for g in out)
        outputs[name] = out
        rows.append({"engine": name, "generated_tokens": tokens, "seconds": round(seconds, 2), "tokens_per_s": round(tokens / seconds, 1),
                     "peak_gib": round(peak_memory_gib(device), 2)})
        print(f"  {name:<11} {tokens:>8} tokens  {seconds:8.2f} s to the last prediction  {tokens / seconds:10.1f} tok/s  "
              f"peak {rows[-1]['peak_gib']:.2f} GiB{'' if gpu else ' (RSS so far)'}", flush=True)
    lengths = Counter(len(g) for g in outputs["static"])
    base = rows[0]["tokens_per_s"]
    for r in rows:
        r["ratio_to_static"] = round(r["tokens_per_s"] / base, 2)
        r["same_replies_as_static"] = sum(a == b for a, b in zip(outputs[r["engine"]], outputs["static"]))
    c = rows[1]
    print(f"  continuous / static: {c['ratio_to_static']:.2f}x tokens/s; replies identical to static's: {c['same_replies_as_static']} of {n}; "
          f"reply lengths {min(lengths)}-{max(lengths)} ({len(lengths)} distinct)")
    if args.json:
        Path(args.json).write_text(json.dumps({"shape": shape, "device": device.type, "prompts": n, "max_new_tokens": max_new,
                                               "batch_size": batch, "eos": eos, "rows": rows}, indent=1))
    return 0


if __name__ == "__main__":
    sys.exit(main())
