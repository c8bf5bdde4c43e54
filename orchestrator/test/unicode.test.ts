import { createHash } from 'node:crypto';
import { readFileSync } from 'node:fs';
import path from 'node:path';
import { describe, expect, it } from 'vitest';
import { loadChatTokenizer } from '../src/dataset/tokenizer.js';
import { nfc } from '../src/dataset/unicode.js';
import { SOURCE } from '../src/dataset/unicode-tables.js';
import { FIXTURES, ROOT } from './helpers/cli.js';

const tok = loadChatTokenizer(path.join(ROOT, 'recipes', 'models', 'qwen2.5-tokenizer'), []);

interface Golden {
  source: string;
  tokenizer_sha256: string;
  chunks: [number, number, string][];
}

describe('tokenization independent of the Node/ICU build', () => {
  it("tokenizes the issue's examples as Python's tokenizers does (not as this Node's ICU would)", () => {
    // U+0C3C is a combining mark (class 7) for ICU >= Unicode 14, unassigned for the tokenizer: no reordering.
    expect(tok.encode('x\u05a3\u0c3c')).toEqual([87, 146, 96, 31305, 120]);
    // U+0CDC is a letter for ICU 78 and not for the tokenizer's regex engine: "'s" is not split off.
    expect(tok.encode("\u0cdc's")).toEqual([55890, 250, 6, 82]);
  });

  it('normalizes to NFC with the tokenizer library tables', () => {
    expect(nfc('e\u0301')).toBe('\u00e9');
    expect(nfc('\u1e0b\u0323')).toBe('\u1e0d\u0307'); // reordering, then composition with the nearer mark
    expect(nfc('\u1100\u1161\u11a8')).toBe('\uac01'); // Hangul L V T
    expect(nfc('\u0958')).toBe('\u0915\u093c'); // composition exclusion
    expect(nfc('\u212b')).toBe('\u00c5'); // singleton
    expect(nfc('plain ASCII text')).toBe('plain ASCII text');
    expect(nfc('\u0301a')).toBe('\u0301a'); // a leading mark stays
  });

  it('sweeps every code point of planes 0-3 and 14 against the golden file from the Python tokenizer (~25 s)', () => {
    const golden = JSON.parse(readFileSync(path.join(FIXTURES, 'unicode-golden.json'), 'utf8')) as Golden;
    expect(golden.source).toBe(SOURCE); // tables and golden file come from the same generator run
    const tokenizerFile = readFileSync(path.join(ROOT, 'recipes', 'models', 'qwen2.5-tokenizer', 'tokenizer.json'));
    expect(createHash('sha256').update(tokenizerFile).digest('hex')).toBe(golden.tokenizer_sha256);
    const probes = (ch: string) => [`x${ch}\u0334`, `a\u0301${ch}'s`, ` ${ch}1`];
    const mismatched: string[] = [];
    for (const [first, last, hash] of golden.chunks) {
      const parts: string[] = [];
      for (let c = first; c <= last; c++) if (c < 0xd800 || c > 0xdfff) parts.push(...probes(String.fromCodePoint(c)));
      // Python's json.dumps of the ID list, hashed as the generator did.
      const ids = JSON.stringify(tok.encode(parts.join('\n'))).replaceAll(',', ', ');
      if (createHash('sha256').update(ids).digest('hex').slice(0, 16) !== hash) mismatched.push(`U+${first.toString(16)}..U+${last.toString(16)}`);
    }
    expect(golden.chunks.length).toBeGreaterThan(600);
    expect(mismatched).toEqual([]);
  }, 300_000);
});
