#!/usr/bin/env python3
"""Writes the golden file of token IDs over every code point of planes 0-3 and 14, from Python's `tokenizers`.

The dataset builder tokenizes with the same library (its Rust core through the Node bindings, `tokenizers` on npm,
the same version). This file, made by Python's build of it, is what the orchestrator's suite checks the Node side
against: every code point, with probes that exercise normalization (NFC) and every pre-tokenizer class, gives the
IDs Python gives, whatever ICU the Node.js that runs the build was built with (issue 16: U+0C3C is a combining mark
for newer ICU and unassigned for the tokenizer).

Run once per `tokenizers` release (needs `tokenizers`, which `transformers` installs):

    .venv/bin/python scripts/gen-unicode-golden.py recipes/models/qwen2.5-tokenizer/tokenizer.json
"""

import hashlib
import json
import sys
import unicodedata
from pathlib import Path

import tokenizers
from tokenizers import Tokenizer

ROOT = Path(__file__).resolve().parent.parent
GOLDEN = ROOT / "orchestrator" / "test" / "fixtures" / "unicode-golden.json"
PLANES = [*range(0, 0x40000), *range(0xE0000, 0xF0000)]
CODE_POINTS = [c for c in PLANES if not 0xD800 <= c <= 0xDFFF]
CHUNK = 512
ACUTE, OVERLAY = "\u0301", "\u0334"  # combining classes 230 and 1: old characters, the same in every version


def probes(c):
    """Strings around one code point that exercise normalization and every pre-tokenizer class."""
    ch = chr(c)
    return ["x" + ch + OVERLAY, "a" + ACUTE + ch + "'s", " " + ch + "1"]


def golden(tokenizer_file):
    tok = Tokenizer.from_file(str(tokenizer_file))
    chunks = []
    for start in range(0, len(CODE_POINTS), CHUNK):
        block = CODE_POINTS[start : start + CHUNK]
        text = "\n".join(p for c in block for p in probes(c))
        ids = tok.encode(text, add_special_tokens=False).ids
        chunks.append([block[0], block[-1], hashlib.sha256(json.dumps(ids).encode()).hexdigest()[:16]])
    return chunks


def main():
    tokenizer_file = Path(sys.argv[1] if len(sys.argv) > 1 else ROOT / "recipes/models/qwen2.5-tokenizer/tokenizer.json")
    source = f"tokenizers {tokenizers.__version__} (Python {sys.version.split()[0]}, unicodedata {unicodedata.unidata_version})"
    GOLDEN.write_text(json.dumps({
        "source": source,
        "tokenizer": tokenizer_file.name,
        "tokenizer_sha256": hashlib.sha256(tokenizer_file.read_bytes()).hexdigest(),
        "chunk": CHUNK,
        "probes": "per code point c: 'x'+c+U+0334, 'a'+U+0301+c+\"'s\", ' '+c+'1'; joined by newlines",
        "chunks": golden(tokenizer_file),
    }) + "\n")
    print(f"wrote {GOLDEN.relative_to(ROOT)} from {source}")


if __name__ == "__main__":
    main()
