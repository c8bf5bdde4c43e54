"""Training throughput: bsft's trainer loop against the default a user gets from transformers + peft.

Both train the same model (Qwen2.5-7B's shape with random weights on a GPU; the tiny Qwen2 model on a CPU, so CI
runs this too) on the same synthetic conversations (lengths uniform in --min-len..--max-len), LoRA r16 on all
linear layers (dropout 0.05, as the paper recipe), in one run of this script:

  bsft        the real trainer loop (train.run, nothing written): packed batches of --batch-tokens, document-
              masked varlen attention, chunked loss, the recipe defaults (activation_checkpointing auto, ...)
  hf-default  AutoModelForCausalLM + get_peft_model, right-padded batches of --hf-batch documents, gradient
              checkpointing, model(labels=...).loss, AdamW

Printed per row: real (non-pad) tokens/s over the timed steps (after --warmup), peak device memory, model FLOP
utilisation (4 x linear parameters per token + 6 x layers x hidden x the mean attended length, over the card's
dense bf16 peak; --peak-tflops for a card the table lacks) and the ratio to hf-default. Before timing, the packed
loss of one batch is checked against the same documents run one at a time (document masking exact).

  python trainer-python/bench/throughput.py                 # 7B shape on a GPU, tiny model on a CPU
  python trainer-python/bench/throughput.py --compile       # adds a row with train.compile: true
  python trainer-python/bench/throughput.py --json out.json
"""
from __future__ import annotations

import argparse
import gc
import json
import sys
import tempfile
import time
from pathlib import Path

import torch

ROOT = Path(__file__).resolve().parents[2]
sys.path.insert(0, str(ROOT / "trainer-python" / "src"))

from bsft_trainer.data import config as config_mod  # noqa: E402
from bsft_trainer.process import events  # noqa: E402
from bsft_trainer.data import synthetic  # noqa: E402
from bsft_trainer.training import train  # noqa: E402
from bsft_trainer.process.fence import NoFence  # noqa: E402
from bsft_trainer.training.packing import DataOrder  # noqa: E402
from bsft_trainer.data.shards import Shard  # noqa: E402

SHAPES = {"7b": ROOT / "recipes" / "models" / "qwen2.5-7b-shape", "tiny": ROOT / "recipes" / "models" / "qwen2.5-tiny"}
BEHAVIORS = {"reactive": 151665, "proactive": 151666, "restraint": 151667}
EOS = 151645
# Dense bf16 peak of a card, by a word of its name (datasheet figures; --peak-tflops overrides).
PEAK_TFLOPS = {"H200": 989.0, "H100": 989.0, "A100": 312.0, "L40S": 362.0, "A10G": 125.0}


def peak_flops(device: torch.device, override: float | None) -> float | None:
    if override:
        return override * 1e12
    if device.type != "cuda":
        return None
    name = torch.cuda.get_device_name(device)
    return next((tf * 1e12 for key, tf in PEAK_TFLOPS.items() if key in name), None)


def model_flops_per_token(conf: dict, mean_attended: float) -> float:
    """Training FLOPs per token of a LoRA run: forward + input gradients of every linear layer (the frozen weights
    get no gradient), plus attention (forward and its backward) over `mean_attended` keys."""
    h, i, layers = conf["hidden_size"], conf["intermediate_size"], conf["num_hidden_layers"]
    heads, kv = conf["num_attention_heads"], conf["num_key_value_heads"]
    head_dim = h // heads
    per_layer = h * heads * head_dim + 2 * h * kv * head_dim + heads * head_dim * h + 3 * h * i
    linear = layers * per_layer + h * conf["vocab_size"]
    return 4 * linear + 6 * layers * h * mean_attended


def mean_attended(lengths: list[int]) -> float:
    """Mean number of keys a token attends to, causal within its document: sum(n^2 / 2) / sum(n)."""
    return sum(n * n / 2 for n in lengths) / max(1, sum(lengths))


def reset_memory(device: torch.device) -> None:
    if hasattr(torch, "_dynamo"):
        torch._dynamo.reset()  # compiled graphs hold on to the model they were compiled for
    gc.collect()
    if device.type == "cuda":
        torch.cuda.empty_cache()
        torch.cuda.reset_peak_memory_stats(device)


def peak_gib(device: torch.device) -> float | None:
    return torch.cuda.max_memory_allocated(device) / 2**30 if device.type == "cuda" else None


class EventClock:
    """Receives the trainer's events in process and notes when each step's event arrives."""

    def __init__(self):
        self.steps = []
        self.buffer = ""

    def write(self, text):
        self.buffer += text
        while "\n" in self.buffer:
            line, self.buffer = self.buffer.split("\n", 1)
            event = json.loads(line)
            if event["event"] == "step":
                self.steps.append((time.perf_counter(), event))

    def flush(self):
        pass


def run_bsft(args, run_dir: Path, docs, model_dir: Path, device: torch.device, compile_layers: bool) -> dict:
    steps = args.warmup + args.steps
    cfg_path = synthetic.write_run(run_dir, {"train": docs, "val": [], "test": docs[:1]}, BEHAVIORS, EOS, {
        "run_id": "bench",
        "model": {"name_or_path": str(model_dir), "dtype": "bfloat16" if device.type == "cuda" else "float32", "init": "random"},
        "tokenizer": str(ROOT / "recipes" / "models" / "qwen2.5-tokenizer"),
        "train": {"method": "lora", "lr": 1e-4, "max_steps": steps, "batch_tokens": args.batch_tokens,
                  "lora": {"r": 16, "alpha": 32, "dropout": 0.05, "targets": "all-linear"}, "compile": compile_layers,
                  "checkpoint_every": 10**6},
        "eval": {"every": 0},
    })
    cfg = config_mod.load(str(cfg_path))
    # The tokens of each step, from the same seeded packing order the trainer follows.
    order = DataOrder(Shard(cfg.shards["train"]), cfg.train.batch_tokens, cfg.train.seed)
    tokens = [sum(order.next_batch().n_tokens for _ in range(cfg.train.grad_accum)) for _ in range(steps)]
    reset_memory(device)
    clock = EventClock()
    events.send_events_to(clock)
    try:
        code = train.run(cfg, NoFence(), publish=False)
    finally:
        events.send_events_to(None)
    if code != 0:
        raise RuntimeError(f"train.run exited {code}")
    timed = clock.steps[args.warmup - 1:]  # the warm-up's last event starts the clock
    seconds = timed[-1][0] - timed[0][0]
    real = sum(tokens[args.warmup:])
    return {"tokens_per_s": real / seconds, "peak_gib": peak_gib(device), "steps": args.steps, "tokens": real,
            "loss_last": timed[-1][1]["loss"]}


def check_packing(args, docs, model_dir: Path, device: torch.device) -> float:
    """Relative difference between one packed batch's loss and the sum of its documents' losses run alone."""
    from bsft_trainer.modeling.model import build
    from bsft_trainer.training.loss import chunked_ce_sum
    from bsft_trainer.training.packing import make_batch

    with tempfile.TemporaryDirectory() as tmp:
        cfg_path = synthetic.write_run(tmp, {"train": docs[:8], "val": [], "test": []}, BEHAVIORS, EOS, {
            "run_id": "bench-check",
            "model": {"name_or_path": str(model_dir), "dtype": "bfloat16" if device.type == "cuda" else "float32", "init": "random"},
            "tokenizer": str(ROOT / "recipes" / "models" / "qwen2.5-tokenizer"),
            "train": {"method": "lora", "lr": 1e-4, "max_steps": 1, "batch_tokens": sum(len(d[0]) for d in docs[:8])},
        })
        cfg = config_mod.load(str(cfg_path))
        tm = build(cfg, config_mod.load_manifest(cfg), device, NoFence(), keep_base=False)
        shard = Shard(cfg.shards["train"])
        with torch.no_grad():
            def loss(ids):
                b = make_batch(shard, ids).to(device)
                w, rows = tm.output()
                return float(chunked_ce_sum(tm.hidden(b), b.labels, w, rows, index=b.loss_index))
            packed = loss(list(range(len(shard))))
            alone = sum(loss([d]) for d in range(len(shard)))
        del tm
    reset_memory(device)
    return abs(packed - alone) / abs(alone)


def run_hf_default(args, docs, model_dir: Path, device: torch.device) -> dict:
    from peft import LoraConfig, get_peft_model
    from transformers import AutoConfig, AutoModelForCausalLM

    dtype = torch.bfloat16 if device.type == "cuda" else torch.float32
    reset_memory(device)
    torch.manual_seed(0)
    with torch.device(device):
        model = AutoModelForCausalLM.from_config(AutoConfig.from_pretrained(model_dir), dtype=dtype, attn_implementation="sdpa")
    model = get_peft_model(model, LoraConfig(r=16, lora_alpha=32, lora_dropout=0.05, target_modules="all-linear",
                                             task_type="CAUSAL_LM"))
    model.gradient_checkpointing_enable(gradient_checkpointing_kwargs={"use_reentrant": False})
    model.train()
    optimizer = torch.optim.AdamW([p for p in model.parameters() if p.requires_grad], lr=1e-4)
    n = args.hf_batch
    batches = [docs[i:i + n] for i in range(0, len(docs) - n + 1, n)]
    if len(batches) < args.warmup + args.steps:
        raise SystemExit(f"need {n * (args.warmup + args.steps)} documents for hf-default, have {len(docs)}: raise --docs")
    real, start = 0, None
    for k, batch in enumerate(batches[:args.warmup + args.steps]):
        if k == args.warmup:
            if device.type == "cuda":
                torch.cuda.synchronize(device)
            start = time.perf_counter()
        width = max(len(d[0]) for d in batch)
        ids = torch.zeros(len(batch), width, dtype=torch.long)
        mask = torch.zeros_like(ids)
        labels = torch.full_like(ids, -100)
        for r, (tok, lm) in enumerate(batch):
            ids[r, :len(tok)] = torch.tensor(tok)
            mask[r, :len(tok)] = 1
            lab = torch.tensor(tok)
            lab[torch.tensor(lm) == 0] = -100
            labels[r, :len(tok)] = lab
        out = model(input_ids=ids.to(device), attention_mask=mask.to(device), labels=labels.to(device))
        out.loss.backward()
        optimizer.step()
        optimizer.zero_grad(set_to_none=True)
        if k >= args.warmup:
            real += int(mask.sum())
    loss_last = float(out.loss)  # synchronises
    seconds = time.perf_counter() - start
    result = {"tokens_per_s": real / seconds, "peak_gib": peak_gib(device), "steps": args.steps, "tokens": real,
              "loss_last": loss_last}
    del model, optimizer, out
    reset_memory(device)
    return result


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--device", default="cuda" if torch.cuda.is_available() else "cpu")
    parser.add_argument("--shape", choices=sorted(SHAPES), help="default: 7b on a GPU, tiny on a CPU")
    parser.add_argument("--steps", type=int, help="timed optimizer steps (default 8 on a GPU, 3 on a CPU)")
    parser.add_argument("--warmup", type=int, default=2)
    parser.add_argument("--batch-tokens", type=int, help="bsft's packed batch (default 16384 on a GPU, 512 on a CPU)")
    parser.add_argument("--hf-batch", type=int, default=8, help="documents per padded hf-default batch")
    parser.add_argument("--min-len", type=int)
    parser.add_argument("--max-len", type=int)
    parser.add_argument("--docs", type=int, help="synthetic conversations (default: enough for both)")
    parser.add_argument("--compile", action="store_true", help="also time bsft with train.compile: true")
    parser.add_argument("--skip-hf", action="store_true", help="only the bsft rows")
    parser.add_argument("--peak-tflops", type=float, help="the card's dense bf16 peak, for MFU")
    parser.add_argument("--json", help="write the results here")
    args = parser.parse_args(argv)
    device = torch.device(args.device)
    gpu = device.type == "cuda"
    args.shape = args.shape or ("7b" if gpu else "tiny")
    args.steps = args.steps or (8 if gpu else 3)
    args.batch_tokens = args.batch_tokens or (16384 if gpu else 512)
    args.min_len = args.min_len or (256 if gpu else 16)
    args.max_len = args.max_len or (3072 if gpu else 96)
    if args.max_len > args.batch_tokens:
        raise SystemExit(f"--max-len {args.max_len} does not fit in --batch-tokens {args.batch_tokens}")
    model_dir = SHAPES[args.shape]
    conf = json.loads((model_dir / "config.json").read_text())
    mean_len = (args.min_len + args.max_len) / 2
    steps = args.warmup + args.steps
    # enough documents for bsft's packed steps (with a margin for packing slack) and for hf-default's batches
    n_docs = args.docs or int(max(steps * args.batch_tokens / mean_len * 1.3, steps * args.hf_batch)) + 8
    docs = synthetic.conversations(n_docs, args.min_len, args.max_len, BEHAVIORS["reactive"], seed=0)
    flops_token = model_flops_per_token(conf, mean_attended([len(d[0]) for d in docs]))
    peak = peak_flops(device, args.peak_tflops)

    print(f"throughput: {args.shape} shape ({conf['num_hidden_layers']} layers, hidden {conf['hidden_size']}) on "
          f"{torch.cuda.get_device_name(device) if gpu else 'cpu'}, torch {torch.__version__}; {n_docs} conversations "
          f"of {args.min_len}..{args.max_len} tokens; {args.warmup} warm-up + {args.steps} timed steps", flush=True)
    rel = check_packing(args, docs, model_dir, device)
    print(f"packed loss vs documents run alone: relative difference {rel:.2e}", flush=True)
    rows = {}
    with tempfile.TemporaryDirectory() as tmp:
        rows["bsft"] = run_bsft(args, Path(tmp) / "bsft", docs, model_dir, device, compile_layers=False)
        print(f"  bsft done: {rows['bsft']['tokens_per_s']:,.0f} tok/s", flush=True)
        if args.compile:
            rows["bsft+compile"] = run_bsft(args, Path(tmp) / "compiled", docs, model_dir, device, compile_layers=True)
            print(f"  bsft+compile done: {rows['bsft+compile']['tokens_per_s']:,.0f} tok/s", flush=True)
    if not args.skip_hf:
        rows["hf-default"] = run_hf_default(args, docs, model_dir, device)
        print(f"  hf-default done: {rows['hf-default']['tokens_per_s']:,.0f} tok/s", flush=True)
    base = rows.get("hf-default", {}).get("tokens_per_s")
    print()
    print(f"| {'run':<14} | {'real tok/s':>11} | {'peak GiB':>8} | {'MFU':>6} | {'vs hf-default':>13} |")
    print(f"|{'-' * 16}|{'-' * 13}|{'-' * 10}|{'-' * 8}|{'-' * 15}|")
    for name, r in rows.items():
        r["mfu"] = r["tokens_per_s"] * flops_token / peak if peak else None
        r["vs_hf_default"] = r["tokens_per_s"] / base if base else None
        mem = f"{r['peak_gib']:.1f}" if r["peak_gib"] is not None else "n/a"
        mfu = f"{100 * r['mfu']:.1f}%" if r["mfu"] is not None else "n/a"
        ratio = f"{r['vs_hf_default']:.2f}x" if r["vs_hf_default"] else "-"
        print(f"| {name:<14} | {r['tokens_per_s']:>11,.0f} | {mem:>8} | {mfu:>6} | {ratio:>13} |")
    if args.json:
        Path(args.json).write_text(json.dumps({"shape": args.shape, "device": str(device), "torch": torch.__version__,
                                               "packing_rel_diff": rel, "flops_per_token": flops_token, "rows": rows}, indent=1))
    return 0


if __name__ == "__main__":
    sys.exit(main())
