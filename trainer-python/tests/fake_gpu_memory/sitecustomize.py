"""A fake GPU memory for the ranks of a sharded test run (they are processes torchrun starts, out of the test's
reach): put this folder on PYTHONPATH and describe the device in BSFT_FAKE_MEMORY (JSON):

  {"budget": bytes, "peak": bytes, "static": bytes,   what memory.probe's device reports (tests/test_speed.FakeMemory)
   "oom_ranks": [1], "oom_below": 2,                   these ranks' first step raises a CUDA out-of-memory error
                                                       while fewer than `oom_below` layers recompute
   "log": folder}                                      each rank appends {"recompute": n} per step to rank-<r>.jsonl

Only processes started by torchrun (LOCAL_RANK set) are changed.
"""
import json
import os

if "LOCAL_RANK" in os.environ and os.environ.get("BSFT_FAKE_MEMORY"):
    import torch

    from bsft_trainer.training import memory, train

    spec = json.loads(os.environ["BSFT_FAKE_MEMORY"])
    rank = int(os.environ["RANK"])

    class _Memory:
        def reset_peak(self):
            pass

        def peak(self):
            return spec["peak"]

        def allocated(self):
            return spec["static"]

        def budget(self):
            return spec["budget"]

    memory.probe = lambda device: _Memory()
    torch.cuda.empty_cache = lambda: None
    real = train.forward_backward
    calls = []

    def forward_backward(tm, micro, device, divisor):
        calls.append(tm.recompute)
        with open(os.path.join(spec["log"], f"rank-{rank}.jsonl"), "a") as f:
            f.write(json.dumps({"recompute": tm.recompute}) + "\n")
        if len(calls) == 1 and rank in spec.get("oom_ranks", []) and tm.recompute < spec.get("oom_below", 0):
            raise torch.cuda.OutOfMemoryError("CUDA out of memory. Tried to allocate 9.00 GiB (fake)")
        return real(tm, micro, device, divisor)

    train.forward_backward = forward_backward
