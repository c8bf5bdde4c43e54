#!/usr/bin/env python3
"""Reads the Unicode tables of the Hugging Face `tokenizers` library (Rust) and writes them for the TypeScript side.

The dataset builder tokenizes in TypeScript. Left to itself it would normalize with Node's ICU
(`String.prototype.normalize`) and match the pre-tokenizer's `\\p{L}`, `\\p{N}` and `\\s` with V8's ICU tables: a
newer Unicode than the `tokenizers` library's, so some text tokenizes differently from Python (issue 16: U+0C3C is a
combining mark for ICU and unassigned for the tokenizer). This script asks the tokenizer library itself, by probing,
which code points it treats as letters, numbers and white space, which have a canonical combining class, which
decompose and which recompose, and writes those tables to `orchestrator/src/dataset/unicode-tables.ts`; a golden
file of token IDs over every code point of planes 0-3 and 14 goes to `orchestrator/test/fixtures/`.

Run once per `tokenizers` release (needs `tokenizers`, which `transformers` installs):

    .venv/bin/python scripts/gen-unicode-tables.py recipes/models/qwen2.5-tokenizer/tokenizer.json
"""

import hashlib
import json
import sys
import unicodedata
from pathlib import Path

import tokenizers
from tokenizers import Regex, Tokenizer, normalizers, pre_tokenizers

ROOT = Path(__file__).resolve().parent.parent
TABLES = ROOT / "orchestrator" / "src" / "dataset" / "unicode-tables.ts"
GOLDEN = ROOT / "orchestrator" / "test" / "fixtures" / "unicode-golden.json"
PLANES = [*range(0, 0x40000), *range(0xE0000, 0xF0000)]
CODE_POINTS = [c for c in PLANES if not 0xD800 <= c <= 0xDFFF]
CHUNK = 512
ACUTE, OVERLAY = "\u0301", "\u0334"  # combining classes 230 and 1: old characters, the same in every version


def member_ranges(pattern):
    """Code points the library's regex engine matches with `pattern` (a one-character class), as ranges."""
    split = pre_tokenizers.Split(Regex(pattern), behavior="removed")
    hits = []
    for start in range(0, len(CODE_POINTS), 4096):
        block = CODE_POINTS[start : start + 4096]
        kept = set()
        for _, (a, b) in split.pre_tokenize_str("".join(map(chr, block))):
            kept.update(range(a, b))
        hits.extend(c for i, c in enumerate(block) if i not in kept)
    return ranges(hits)


def ranges(points):
    out = []
    for c in sorted(points):
        if out and out[-1][1] == c - 1:
            out[-1][1] = c
        else:
            out.append([c, c])
    return out


def normalization_tables():
    nfd, nfc = normalizers.NFD(), normalizers.NFC()
    ccc, decomposition, excluded = {}, {}, []
    for c in CODE_POINTS:
        ch = chr(c)
        if 0xAC00 <= c <= 0xD7A3:
            continue  # Hangul syllables: algorithmic in both
        full = nfd.normalize_str(ch)
        klass = unicodedata.combining(ch)
        if full == ch:
            # Nonzero class known to the library: it reorders against a mark of class 1 (or 230 for class 1 itself).
            probe = ("a" + ch + OVERLAY, "a" + OVERLAY + ch) if klass > 1 else ("a" + ACUTE + ch, "a" + ch + ACUTE)
            if klass and nfd.normalize_str(probe[0]) == probe[1]:
                ccc[c] = klass
            elif not klass and (nfd.normalize_str("a" + ch + OVERLAY) != "a" + ch + OVERLAY
                                or nfd.normalize_str("a" + ACUTE + ch) != "a" + ACUTE + ch):
                sys.exit(f"U+{c:04X}: the tokenizer gives it a combining class that Python's Unicode {unicodedata.unidata_version} does not: use a newer Python")
        raw = unicodedata.decomposition(ch)
        canonical = raw and not raw.startswith("<")
        if full != ch:
            if not canonical:
                sys.exit(f"U+{c:04X}: the tokenizer decomposes it and Python's Unicode {unicodedata.unidata_version} does not: use a newer Python")
            decomposition[c] = [int(x, 16) for x in raw.split()]
            if len(decomposition[c]) == 2 and nfc.normalize_str(ch) != ch:
                excluded.append(c)
    return ccc, decomposition, excluded


def hex_ranges(rs):
    return ",".join(f"{a:x}" if a == b else f"{a:x}-{b:x}" for a, b in rs)


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
    ccc, decomposition, excluded = normalization_tables()
    classes = {name: member_ranges(p) for name, p in (("L", r"\p{L}"), ("N", r"\p{N}"), ("s", r"\s"))}
    source = f"tokenizers {tokenizers.__version__} (Python {sys.version.split()[0]}, unicodedata {unicodedata.unidata_version})"
    TABLES.write_text(
        "// Generated by scripts/gen-unicode-tables.py from the Hugging Face `tokenizers` library: do not edit.\n"
        "// The library's own Unicode tables, read by probing it, so that TypeScript tokenizes exactly as Python does\n"
        "// whatever ICU this Node.js was built with. Hex code points; ranges `a-b`.\n"
        f"export const SOURCE = {json.dumps(source)};\n"
        "/** Characters the pre-tokenizer's regex engine matches with \\p{L}, \\p{N} and \\s. */\n"
        f"export const CLASSES = {{\n  L: '{hex_ranges(classes['L'])}',\n  N: '{hex_ranges(classes['N'])}',\n  s: '{hex_ranges(classes['s'])}',\n}};\n"
        "/** Canonical combining classes (nonzero only), as `cp:class`. */\n"
        f"export const CCC = '{','.join(f'{c:x}:{k}' for c, k in sorted(ccc.items()))}';\n"
        "/** Canonical decompositions (one level), as `cp:a b`. */\n"
        f"export const DECOMPOSITION = '{','.join(f'{c:x}:' + ' '.join(f'{x:x}' for x in d) for c, d in sorted(decomposition.items()))}';\n"
        "/** Two-character decompositions that NFC does not recompose (composition exclusions). */\n"
        f"export const EXCLUDED = '{','.join(f'{c:x}' for c in excluded)}';\n"
    )
    GOLDEN.write_text(json.dumps({
        "source": source,
        "tokenizer": tokenizer_file.name,
        "tokenizer_sha256": hashlib.sha256(tokenizer_file.read_bytes()).hexdigest(),
        "chunk": CHUNK,
        "probes": "per code point c: 'x'+c+U+0334, 'a'+U+0301+c+\"'s\", ' '+c+'1'; joined by newlines",
        "chunks": golden(tokenizer_file),
    }) + "\n")
    print(f"wrote {TABLES.relative_to(ROOT)} and {GOLDEN.relative_to(ROOT)} from {source}")


if __name__ == "__main__":
    main()
