"""Memory of building a sharded model, per rank: the whole model on every rank (the build before issue 38) against
the meta-device build that fills each rank's shard from the checkpoint's files (modeling/materialize.py).

The model: Qwen2.5-7B's layer shape with few layers (default 2: 1.6 B parameters, most in the 152,064-row
embeddings), bf16 weights written once as safetensors files (a "pretrained" checkpoint), or `--init random`.
For each build, --ranks gloo ranks on this machine (CPU) build the model as the trainer's ranks do and shard it with
FSDP2; each reports its peak resident memory (VmHWM), the memory it held before building, the bytes of its
parameter shard, and a hash of every parameter's local values. With full fine-tuning, rank 0 then writes the final
weights (torch's full state dict gathered first, against save.write_full_weights a tensor at a time, in files of at
most --file-mib) and each rank reports its peak from the save's start. The two builds must give every rank the same
values and the same saved weights (the hashes are compared); the figures are printed side by side.

  python trainer-python/bench/sharded_load.py                          # 7B layers x 2, full fine-tuning, 2 ranks
  python trainer-python/bench/sharded_load.py --method lora --layers 4 --json out.json
  python trainer-python/bench/sharded_load.py --shape tiny             # seconds (the suite runs this)
"""
from __future__ import annotations

import argparse
import hashlib
import json
import os
import socket
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import torch

ROOT = Path(__file__).resolve().parents[2]
sys.path.insert(0, str(ROOT / "trainer-python" / "src"))

SHAPES = {"7b": ROOT / "recipes" / "models" / "qwen2.5-7b-shape", "tiny": ROOT / "recipes" / "models" / "qwen2.5-tiny"}
BEHAVIORS = {"reactive": 151665, "proactive": 151666, "restraint": 151667}
EOS = 151645
BUILDS = ("whole", "meta")


def rss_bytes() -> int:
    with open("/proc/self/statm") as f:
        return int(f.read().split()[1]) * os.sysconf("SC_PAGE_SIZE")


def peak_rss_bytes() -> int:
    """This process's peak resident memory (VmHWM: unlike ru_maxrss, not carried over from the parent by exec)."""
    with open("/proc/self/status") as f:
        return next(int(line.split()[1]) * 1024 for line in f if line.startswith("VmHWM:"))


def write_model(folder: Path, shape: str, layers: int, weights: bool, changes: dict | None = None) -> None:
    """The shape's config.json with `layers` decoder layers (and `changes`); with `weights`, a bf16 checkpoint of it
    (seeded random values), written a file at a time (materialize.save_base_from)."""
    config = json.loads((SHAPES[shape] / "config.json").read_text())
    folder.mkdir(parents=True)
    config = {**config, "num_hidden_layers": layers, "max_window_layers": layers, **(changes or {})}
    (folder / "config.json").write_text(json.dumps(config))
    if not weights:
        return
    from transformers import AutoConfig, AutoModelForCausalLM

    from bsft_trainer.modeling.materialize import save_base_from
    from bsft_trainer.modeling.weight_source import RandomSource

    with torch.device("meta"):
        skeleton = AutoModelForCausalLM.from_config(AutoConfig.from_pretrained(folder), dtype=torch.bfloat16)
    save_base_from(folder, skeleton, RandomSource(skeleton, 1234, torch.bfloat16, torch.device("cpu")))


def write_run(folder: Path, model: Path, args) -> Path:
    from bsft_trainer.data import synthetic

    docs = [([1, 2, 3, BEHAVIORS["reactive"], 5, EOS], [0, 0, 0, 1, 1, 1])] * 4
    return synthetic.write_run(folder, {"train": docs, "val": [], "test": []}, BEHAVIORS, EOS, {
        "run_id": "bench-sharded-load",
        "model": {"name_or_path": str(model), "dtype": "bfloat16", "init": args.init},
        "tokenizer": str(ROOT / "recipes" / "models" / "qwen2.5-tokenizer"),
        "train": {"method": args.method, "lr": 1e-4, "max_steps": 1, "batch_tokens": 64, "activation_checkpointing": False},
    })


def rank_main(args) -> None:
    """One rank: builds and shards the model (`--build`), then writes its figures to --out."""
    from bsft_trainer.data import config as config_mod
    from bsft_trainer.modeling.model import build, resolve_dtype
    from bsft_trainer.parallel.distributed import from_torchrun
    from bsft_trainer.parallel.sharding import shard
    from bsft_trainer.process.fence import NoFence
    from bsft_trainer.training.train import prepare_model

    world = from_torchrun()
    cfg = config_mod.load(args.config)
    manifest = config_mod.load_manifest(cfg)
    device = torch.device("cpu")
    before = rss_bytes()
    start = time.perf_counter()
    if args.build == "meta":  # the trainer's own path
        tm, _ = prepare_model(cfg, manifest, device, NoFence(), world, keep_base=False, recompute_all=False)
    else:  # the build before issue 38: the whole model as one process builds it, an fp32 copy, then FSDP2
        tm = build(cfg, manifest, device, NoFence(), keep_base=False, sharded=False)
        tm.container.float()
        shard(tm, resolve_dtype(cfg.model.dtype, device), False)
    seconds = time.perf_counter() - start
    peak = peak_rss_bytes()  # before the hashes below
    from bsft_trainer.parallel.sharding import local_rows

    digest, shard_bytes = {}, 0
    for name, p in tm.container.named_parameters():
        local, _ = local_rows(p)
        shard_bytes += local.numel() * local.element_size()
        digest[name] = hashlib.sha256(local.detach().contiguous().view(torch.uint8).numpy()).hexdigest()[:16]
    figures = {"rank": world.rank, "peak_rss": peak, "rss_before": before, "rss_after": rss_bytes(),
               "shard_bytes": shard_bytes, "seconds": seconds, "digest": digest}
    if cfg.train.method == "full":
        figures.update(final_save(args, tm, world, resolve_dtype(cfg.model.dtype, device), device))
    Path(args.out).write_text(json.dumps(figures))
    world.barrier()
    world.close()


def final_save(args, tm, world, dtype, device) -> dict:
    """The final model's weights written by rank 0 (into --out's folder): gathered whole first (`whole`: the way
    before issue 38, torch's full state dict) or a tensor at a time (`meta`: save.write_full_weights). The peak is
    measured from the save's start (VmHWM reset through /proc/self/clear_refs)."""
    from safetensors.torch import load_file

    from bsft_trainer.checkpoints.save import write_full_weights

    folder = Path(args.out).with_suffix(".final")
    folder.mkdir(exist_ok=True)
    with open("/proc/self/clear_refs", "w") as f:
        f.write("5")
    before = rss_bytes()
    if args.build == "whole":
        from torch.distributed.checkpoint.state_dict import StateDictOptions, get_model_state_dict

        sd = get_model_state_dict(tm.container, options=StateDictOptions(full_state_dict=True, cpu_offload=True))
        if world.main:
            tm.hf_model.save_pretrained(folder, state_dict={k[len("base."):]: v.to(dtype) for k, v in sd.items()})
        del sd
    else:
        write_full_weights(folder if world.main else None, tm, dtype, device, max_file_bytes=args.file_mib * 2**20)
    out = {"save_peak_rss": peak_rss_bytes(), "save_rss_before": before}
    if world.main:
        saved = {}
        for f in sorted(folder.glob("*.safetensors")):
            saved.update(load_file(str(f)))
        out["saved_digest"] = {k: hashlib.sha256(v.contiguous().view(torch.uint8).numpy()).hexdigest()[:16] for k, v in sorted(saved.items())}
    return out


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def run_build(build: str, config: Path, ranks: int, tmp: Path, file_mib: int) -> list[dict]:
    port = free_port()
    procs, outs = [], []
    for r in range(ranks):
        out = tmp / f"{build}-rank{r}.json"
        env = {**os.environ, "RANK": str(r), "WORLD_SIZE": str(ranks), "LOCAL_RANK": str(r), "MASTER_ADDR": "127.0.0.1",
               "MASTER_PORT": str(port), "OMP_NUM_THREADS": "1"}
        procs.append(subprocess.Popen([sys.executable, __file__, "--rank-main", "--build", build, "--config", str(config),
                                       "--out", str(out), "--file-mib", str(file_mib)], env=env))
        outs.append(out)
    codes = [p.wait() for p in procs]
    if any(codes):
        raise SystemExit(f"{build}: ranks exited {codes}")
    return [json.loads(o.read_text()) for o in outs]


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--shape", choices=sorted(SHAPES), default="7b")
    ap.add_argument("--layers", type=int, default=2)
    ap.add_argument("--method", choices=["full", "lora"], default="full")
    ap.add_argument("--init", choices=["pretrained", "random"], default="pretrained")
    ap.add_argument("--ranks", type=int, default=2)
    ap.add_argument("--hidden", type=int, help="hidden size (a narrower model than the shape's; heads kept)")
    ap.add_argument("--intermediate", type=int, help="MLP size")
    ap.add_argument("--tied", action="store_true", help="tied input and output embeddings (Qwen2.5 0.5B-3B)")
    ap.add_argument("--file-mib", type=int, default=2048, help="the final model's safetensors files, at most (MiB)")
    ap.add_argument("--json")
    ap.add_argument("--rank-main", action="store_true", help=argparse.SUPPRESS)
    ap.add_argument("--build", choices=BUILDS, help=argparse.SUPPRESS)
    ap.add_argument("--config", help=argparse.SUPPRESS)
    ap.add_argument("--out", help=argparse.SUPPRESS)
    args = ap.parse_args()
    if args.rank_main:
        return rank_main(args)

    with tempfile.TemporaryDirectory() as t:
        tmp = Path(t)
        model = tmp / "model"
        start = time.perf_counter()
        changes = {k: v for k, v in (("hidden_size", args.hidden), ("intermediate_size", args.intermediate),
                                     ("tie_word_embeddings", args.tied or None)) if v is not None}
        write_model(model, args.shape, args.layers, weights=args.init == "pretrained", changes=changes)
        if args.init == "pretrained":
            print(f"checkpoint: {sum(f.stat().st_size for f in model.glob('*.safetensors')) / 2**30:.2f} GiB bf16 "
                  f"in {time.perf_counter() - start:.0f} s", flush=True)
        config = write_run(tmp / "run", model, args)
        results = {b: run_build(b, config, args.ranks, tmp, args.file_mib) for b in BUILDS}

    gib = lambda b: f"{b / 2**30:.2f} GiB"  # noqa: E731
    print(f"\n{args.shape} shape{', ' + json.dumps(changes) if changes else ''}, {args.layers} layers, {args.method}, init {args.init}, {args.ranks} gloo ranks (CPU), per rank:")
    print(f"{'build':<8}{'rank':>5}{'peak RSS':>14}{'RSS before':>14}{'peak - before':>15}{'shard (fp32)':>15}{'seconds':>9}")
    for b in BUILDS:
        for r in results[b]:
            print(f"{b:<8}{r['rank']:>5}{gib(r['peak_rss']):>14}{gib(r['rss_before']):>14}"
                  f"{gib(r['peak_rss'] - r['rss_before']):>15}{gib(r['shard_bytes']):>15}{r['seconds']:>9.1f}")
    if "save_peak_rss" in results["meta"][0]:
        print("the final model's weights written by rank 0, from the save's start:")
        print(f"{'build':<8}{'rank':>5}{'peak RSS':>14}{'RSS before':>14}{'peak - before':>15}")
        for b in BUILDS:
            for r in results[b]:
                print(f"{b:<8}{r['rank']:>5}{gib(r['save_peak_rss']):>14}{gib(r['save_rss_before']):>14}"
                      f"{gib(r['save_peak_rss'] - r['save_rss_before']):>15}")
    same = all(w["digest"] == m["digest"] and w.get("saved_digest") == m.get("saved_digest")
               for w, m in zip(results["whole"], results["meta"]))
    ratio = max(r["peak_rss"] - r["rss_before"] for r in results["whole"]) / max(r["peak_rss"] - r["rss_before"] for r in results["meta"])
    print(f"every rank's parameters (and the saved weights) identical in both builds: {same}; peak added by building: whole / meta = {ratio:.2f}x")
    if args.json:
        Path(args.json).write_text(json.dumps({"args": vars(args), "same_values": same, "results": results}, indent=1))
    if not same:
        raise SystemExit("the two builds gave different parameter values")


if __name__ == "__main__":
    main()
