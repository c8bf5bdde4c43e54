"""The contracts with the orchestrator, read from the JSON Schema files it generates from its zod schemas
(`schema/*.schema.json`, regenerated with `npm run schemas`): train.json, manifest.json and the trainer's events.
There is no second definition here: `problems()` checks a value against a schema, with the subset of JSON Schema
those files use, and names each problem by its path (`train.lr: expected <= 1, got 2`).
"""
from __future__ import annotations

import json
import re
from functools import lru_cache
from pathlib import Path
from typing import Any

SCHEMA_DIR = Path(__file__).resolve().parent.parent / "schema"


@lru_cache(maxsize=None)
def schema(name: str) -> dict:
    """`train`, `manifest` or `trainer-events`."""
    with open(SCHEMA_DIR / f"{name}.schema.json") as f:
        return json.load(f)


_TYPES = {
    "object": lambda v: isinstance(v, dict),
    "array": lambda v: isinstance(v, list),
    "string": lambda v: isinstance(v, str),
    "boolean": lambda v: isinstance(v, bool),
    "null": lambda v: v is None,
    "integer": lambda v: isinstance(v, int) and not isinstance(v, bool),
    "number": lambda v: isinstance(v, (int, float)) and not isinstance(v, bool),
}


def _show(v):
    return json.dumps(v)[:60]


def problems(value: Any, sch: dict, path: str = "") -> list[str]:
    """Every way `value` breaks `sch`, as "path: message" strings (empty when it fits)."""
    at = path or "(top)"
    out = []
    if "anyOf" in sch or "oneOf" in sch:
        options = sch.get("anyOf") or sch.get("oneOf")
        results = [problems(value, option, path) for option in options]
        fitting = [r for r in results if not r]
        if "oneOf" in sch and len(fitting) != 1 or "anyOf" in sch and not fitting:
            # The closest option's problems say the most (a discriminated union picks it by its constant field).
            return min(results, key=len) if not fitting else [f"{at}: matches more than one form"]
        return []
    kinds = sch.get("type")
    kinds = [kinds] if isinstance(kinds, str) else kinds or []
    if kinds and not any(_TYPES[k](value) for k in kinds):
        return [f"{at}: expected {' or '.join(kinds)}, got {_show(value)}"]
    kind = next((k for k in kinds if _TYPES[k](value)), None)
    if "const" in sch and value != sch["const"]:
        out.append(f"{at}: expected {_show(sch['const'])}, got {_show(value)}")
    if "enum" in sch and value not in sch["enum"]:
        out.append(f"{at}: expected one of {', '.join(map(_show, sch['enum']))}, got {_show(value)}")
    if kind in ("integer", "number"):
        for key, ok, word in (("minimum", lambda v, b: v >= b, ">="), ("maximum", lambda v, b: v <= b, "<="),
                              ("exclusiveMinimum", lambda v, b: v > b, ">"), ("exclusiveMaximum", lambda v, b: v < b, "<")):
            if key in sch and not ok(value, sch[key]):
                out.append(f"{at}: expected {word} {sch[key]}, got {_show(value)}")
    if kind == "string":
        if len(value) < sch.get("minLength", 0):
            out.append(f"{at}: must not be empty" if sch["minLength"] == 1 else f"{at}: shorter than {sch['minLength']}")
        if "pattern" in sch and not re.search(sch["pattern"], value):
            out.append(f"{at}: does not match {sch['pattern']}")
    if kind == "array":
        if len(value) < sch.get("minItems", 0) or len(value) > sch.get("maxItems", len(value)):
            out.append(f"{at}: expected {sch.get('minItems', 0)} to {sch.get('maxItems', 'any number of')} items, got {len(value)}")
        prefix = sch.get("prefixItems", [])
        for i, item in enumerate(value):
            sub = prefix[i] if i < len(prefix) else sch.get("items", {})
            if sub is False:
                continue  # counted by maxItems
            out += problems(item, sub, f"{path}[{i}]")
    if kind == "object":
        props = sch.get("properties", {})
        for key in sch.get("required", []):
            if key not in value:
                out.append(f"{path + '.' if path else ''}{key}: required")
        extra = sch.get("additionalProperties", True)
        for key, v in value.items():
            where = f"{path}.{key}" if path else key
            if key in props:
                out += problems(v, props[key], where)
            elif extra is False:
                out.append(f"{where}: unknown key")
            elif isinstance(extra, dict):
                out += problems(v, extra, where)
            if "propertyNames" in sch:
                out += [p.replace(where, f"{where} (key)", 1) for p in problems(key, sch["propertyNames"], where)]
    return out
