"""The trainer's side of the contracts matches the JSON Schema the orchestrator generates from its zod schemas:
the same fields, the same bounds and enums, and events that fit their schema."""
import dataclasses
import inspect
import io
import json
import typing

import pytest

from bsft_trainer.data import config as C
from bsft_trainer.process import events
from bsft_trainer.data.contract import problems, schema
from conftest import make_run

TRAIN = schema("train")


def _optional(field):
    return typing.get_origin(field.type) is typing.Union and type(None) in typing.get_args(field.type)


@pytest.mark.parametrize("cls, sch", [
    (C.Config, TRAIN),
    (C.ModelConfig, TRAIN["properties"]["model"]),
    (C.TrainConfig, TRAIN["properties"]["train"]),
    (C.LoraConfig, TRAIN["properties"]["train"]["properties"]["lora"]),
    (C.EvalConfig, TRAIN["properties"]["eval"]),
    (C.DatasetPaths, TRAIN["properties"]["dataset"]),
    (C.MemoryPlan, TRAIN["properties"]["memory_plan"]),
    (C.Manifest, schema("manifest")),
])
def test_each_dataclass_has_exactly_the_schemas_fields_and_no_defaults_of_its_own(cls, sch):
    fields = {f.name: f for f in dataclasses.fields(cls)}
    assert set(fields) == set(sch["properties"])
    assert {n for n, f in fields.items() if not _optional(f)} == set(sch["required"])
    for f in fields.values():  # optional means "absent is None", never a value of our own
        assert f.default is dataclasses.MISSING or (f.default is None and _optional(f))


def _violations(sch, path):
    """(path, bad value) for each bound and enum of a schema's properties."""
    for key, prop in sch.get("properties", {}).items():
        where = f"{path}.{key}" if path else key
        if prop.get("type") == "object":
            yield from _violations(prop, where)
        if "enum" in prop:
            yield where, "not-one-of-them"
        for bound, delta in (("maximum", 1), ("exclusiveMaximum", 0), ("minimum", -1), ("exclusiveMinimum", 0)):
            if bound in prop and abs(prop[bound]) < 1e15:
                yield where, prop[bound] + delta * (1 if prop.get("type") == "integer" else 0.5)


def test_every_bound_and_enum_of_the_schema_is_enforced(tmp_path):
    good = json.loads(make_run(tmp_path).read_text())
    good["memory_plan"] = {"gpus": 1, "peak_bytes": [3e9, 2e9, 1e9]}  # optional: present, so that its bounds are tried
    good["eval"]["endpoint"] = {"base_url": "http://127.0.0.1:8000/v1", "model": "m", "max_concurrency": 4, "timeout_s": 60, "max_retries": 1}
    assert C.parse(good).train.adam_betas == (0.9, 0.95) and C.parse(good).memory_plan.peak_bytes == [3e9, 2e9, 1e9]
    cases = list(_violations(TRAIN, ""))
    assert ("train.lr", 1.5) in cases  # the bound the trainer once lacked
    for where, bad in cases:
        d = json.loads(json.dumps(good))
        *parents, last = where.split(".")
        node = d
        for p in parents:
            node = node[p]
        node[last] = bad
        with pytest.raises(events.ConfigError, match=rf"^{where}: expected"):
            C.parse(d)


def test_a_missing_required_field_and_an_unknown_one_are_named(tmp_path):
    d = json.loads(make_run(tmp_path).read_text())
    del d["train"]["adam_eps"]
    d["train"]["adam_epsilon"] = 1e-8
    with pytest.raises(events.ConfigError) as info:
        C.parse(d)
    assert str(info.value) == "train.adam_eps: required; train.adam_epsilon: unknown key"


EXAMPLES = {
    "start": (3, 0, 1), "step": (1, 2.5, 1e-4, 0.7, 1200.0, 1.5), "eval": (4, 1.25), "checkpoint": (4, "/runs/x/step-000004", 1 << 20, 0.25),
    "progress": (2, 10), "done": ("/runs/x/final",), "error": ("config", "train.lr: required"),
}


@pytest.mark.parametrize("kind", sorted(EXAMPLES))
def test_each_event_function_writes_an_event_that_fits_its_schema(kind, monkeypatch):
    variants = {v["properties"]["event"]["const"]: v for v in schema("trainer-events")["oneOf"]}
    assert set(variants) == set(EXAMPLES)
    fn = getattr(events, f"emit_{kind}")
    assert list(inspect.signature(fn).parameters) == [k for k in variants[kind]["properties"] if k != "event"]
    out = io.StringIO()
    monkeypatch.setattr(events, "_events", out)
    fn(*EXAMPLES[kind])
    line = json.loads(out.getvalue())
    assert line["event"] == kind and problems(line, schema("trainer-events")) == []


def test_step_batches_are_shared_by_the_ranks_and_refused_when_they_cannot_be(tmp_path):
    """train.json's step_batches (an elastic run: any GPU count trains the same global batch) gives each of N ranks
    step_batches / N batches a step; without it each rank takes train.grad_accum, as before."""
    from bsft_trainer.parallel.distributed import World
    from bsft_trainer.training.train import batches_per_rank

    path = make_run(tmp_path, train={"grad_accum": 3})
    assert batches_per_rank(C.load(str(path)), World(0, 2)) == 3
    c = json.loads(path.read_text())
    c["step_batches"] = 8
    path.write_text(json.dumps(c))
    cfg = C.load(str(path))
    assert [batches_per_rank(cfg, World(0, n)) for n in (1, 2, 4, 8)] == [8, 4, 2, 1]
    with pytest.raises(events.ConfigError, match="step_batches 8 cannot be shared equally by 3 ranks"):
        batches_per_rank(cfg, World(0, 3))
