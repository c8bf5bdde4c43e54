import { createHash } from 'node:crypto';
import { readFileSync } from 'node:fs';
import { createRequire } from 'node:module';
import path from 'node:path';
import { describe, expect, it } from 'vitest';
import { loadChatTokenizer } from '../src/dataset/tokenizer.js';
import { FIXTURES, ROOT } from './helpers/cli.js';
import { limit } from './helpers/time-scale.js';

const tok = loadChatTokenizer(path.join(ROOT, 'recipes', 'models', 'qwen2.5-tokenizer'), []);
/** The version of the tokenizers library the build tokenizes with (npm `tokenizers`, the Rust core). */
const BINDING = (createRequire(import.meta.url)('tokenizers/package.json') as { version: string }).version;

interface Golden {
  source: string;
  tokenizer_sha256: string;
  chunks: [number, number, string][];
}

describe('tokenization independent of the Node/ICU build', () => {
  it("tokenizes the issue's examples as Python's tokenizers does (not as this Node's ICU would)", async () => {
    // U+0C3C is a combining mark (class 7) for ICU >= Unicode 14, unassigned for the tokenizer: no reordering.
    expect(await tok.encode('x\u05a3\u0c3c')).toEqual([87, 146, 96, 31305, 120]);
    // U+0CDC is a letter for ICU 78 and not for the tokenizer's regex engine: "'s" is not split off.
    expect(await tok.encode("\u0cdc's")).toEqual([55890, 250, 6, 82]);
  });

  it('normalizes to NFC as the tokenizer library does (Qwen2.5 normalizes with NFC)', async () => {
    const same = async (a: string, b: string) => expect(await tok.encode(a), JSON.stringify(a)).toEqual(await tok.encode(b));
    await same('e\u0301', '\u00e9');
    await same('\u1e0b\u0323', '\u1e0d\u0307'); // reordering, then composition with the nearer mark
    await same('\u1100\u1161\u11a8', '\uac01'); // Hangul L V T
    await same('\u0958', '\u0915\u093c'); // composition exclusion
    await same('\u212b', '\u00c5'); // singleton
    expect(await tok.encode('\u0301a')).not.toEqual(await tok.encode('a\u0301')); // a leading mark stays
  });

  it('sweeps every code point of planes 0-3 and 14 against the golden file from the Python tokenizer (~25 s)', async () => {
    const golden = JSON.parse(readFileSync(path.join(FIXTURES, 'unicode-golden.json'), 'utf8')) as Golden;
    // The golden file comes from Python's build of the library version the build tokenizes with.
    expect(golden.source.startsWith(`tokenizers ${BINDING} `)).toBe(true);
    const tokenizerFile = readFileSync(path.join(ROOT, 'recipes', 'models', 'qwen2.5-tokenizer', 'tokenizer.json'));
    expect(createHash('sha256').update(tokenizerFile).digest('hex')).toBe(golden.tokenizer_sha256);
    const probes = (ch: string) => [`x${ch}\u0334`, `a\u0301${ch}'s`, ` ${ch}1`];
    const texts = golden.chunks.map(([first, last]) => {
      const parts: string[] = [];
      for (let c = first; c <= last; c++) if (c < 0xd800 || c > 0xdfff) parts.push(...probes(String.fromCodePoint(c)));
      return parts.join('\n');
    });
    const encoded = await tok.encodeBatch(texts);
    // Python's json.dumps of the ID list, hashed as the generator did.
    const mismatched = golden.chunks.filter(([, , hash], i) => {
      const ids = JSON.stringify(encoded[i]!.ids).replaceAll(',', ', ');
      return createHash('sha256').update(ids).digest('hex').slice(0, 16) !== hash;
    }).map(([first, last]) => `U+${first.toString(16)}..U+${last.toString(16)}`);
    expect(golden.chunks.length).toBeGreaterThan(600);
    expect(mismatched).toEqual([]);
  }, limit(300_000));
});
