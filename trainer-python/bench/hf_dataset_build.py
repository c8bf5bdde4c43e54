"""The dataset build a user would otherwise write with Hugging Face `datasets` (the baseline of `npm run bench:build`).

The same work as `bsft dataset build` in `token` conditioning: each task's context (speaker names folded into the
text, as bsft does) and its reply (behavior token + target) rendered with the tokenizer's chat template, the prompt
and the whole conversation tokenized with the fast tokenizer, the reply's tokens found by the prompt's length;
`datasets.map` over the JSONL files with `num_proc` processes, results written as Arrow (its cache files).

Prints one JSON line: CPU seconds (this process and its children), wall seconds, peak RSS (MiB, the largest of
this process and its children), documents and tokens, and the token IDs of the first `--check` tasks by id (the
benchmark compares them with bsft's shards).

    python trainer-python/bench/hf_dataset_build.py --tasks tasks.jsonl --tokenizer DIR --num-proc 2 --out DIR
"""
from __future__ import annotations

import argparse
import json
import resource
import time


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--tasks", required=True)
    ap.add_argument("--tokenizer", required=True)
    ap.add_argument("--num-proc", type=int, default=1)
    ap.add_argument("--out", required=True, help="folder for datasets' cache files")
    ap.add_argument("--check", type=int, default=200)
    args = ap.parse_args()
    started = time.perf_counter()

    import datasets
    from transformers import AutoTokenizer

    datasets.disable_progress_bars()
    tok = AutoTokenizer.from_pretrained(args.tokenizer)
    behaviors = ["<|behavior:reactive|>", "<|behavior:proactive|>", "<|behavior:restraint|>"]
    tok.add_special_tokens({"additional_special_tokens": behaviors})
    token_of = {b.split(":")[1].rstrip("|>"): b for b in behaviors}

    def render(batch):
        out = {"input_ids": [], "prompt_len": []}
        for context, behavior, target in zip(batch["context"], batch["behavior"], batch["target"]):
            messages = [{"role": t["role"], "content": f"{t['name']}: {t['content']}" if t.get("name") else t["content"]} for t in context]
            prompt = tok.apply_chat_template(messages, tokenize=False, add_generation_prompt=True)
            full = tok.apply_chat_template(messages + [{"role": "assistant", "content": token_of[behavior] + target.strip()}], tokenize=False)
            ids = tok(full, add_special_tokens=False)["input_ids"]
            out["input_ids"].append(ids)
            out["prompt_len"].append(len(tok(prompt, add_special_tokens=False)["input_ids"]))
        return out

    ds = datasets.load_dataset("json", data_files=args.tasks, split="train", cache_dir=args.out)
    mapped = ds.map(render, batched=True, batch_size=256, num_proc=args.num_proc if args.num_proc > 1 else None,
                    remove_columns=[c for c in ds.column_names if c != "id"])
    tokens = sum(len(x) for x in mapped["input_ids"])
    check = {r["id"]: r["input_ids"] for r in mapped.select(range(min(args.check, len(mapped))))}
    wall = time.perf_counter() - started
    me, kids = resource.getrusage(resource.RUSAGE_SELF), resource.getrusage(resource.RUSAGE_CHILDREN)
    print(json.dumps({
        "cpu_s": round(me.ru_utime + me.ru_stime + kids.ru_utime + kids.ru_stime, 2),
        "wall_s": round(wall, 2),
        "peak_rss_mib": round(max(me.ru_maxrss, kids.ru_maxrss) / 1024, 1),
        "documents": len(mapped),
        "tokens": tokens,
        "check": check,
    }))


if __name__ == "__main__":
    main()
