import { execFileSync } from 'node:child_process';
import { existsSync, mkdirSync, mkdtempSync, readdirSync, readFileSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import path from 'node:path';
import { gzipSync } from 'node:zlib';
import { pino } from 'pino';
import { beforeAll, describe, expect, it } from 'vitest';
import { buildDataset, type MessagesRecord } from '../src/dataset/build.js';
import { ChatTemplate, insertsContentOnly } from '../src/dataset/chat-template.js';
import { contextMessages, type ConditioningSpec } from '../src/dataset/condition.js';
import { manifestSchema, type Manifest } from '../src/dataset/manifest.js';
import { tokenizeConversation } from '../src/dataset/render.js';
import { readSafetensors } from '../src/dataset/safetensors.js';
import { assignSplits } from '../src/dataset/split.js';
import { loadChatTokenizer, tokenizerHash } from '../src/dataset/tokenizer.js';
import { resolveRecipe, type ResolvedRecipe } from '../src/recipe/resolve.js';
import { DEFAULT_BEHAVIORS, SPLITS } from '../src/recipe/schema.js';
import { trainerConfig, trainerConfigSchema } from '../src/run/trainer-config.js';
import { Rng } from '../src/util/rng.js';
import { bsft, FIXTURES, ROOT } from './helpers/cli.js';

const TOKENIZER = path.join(ROOT, 'recipes', 'models', 'qwen2.5-tokenizer');
const BEHAVIOR_TOKENS = Object.values(DEFAULT_BEHAVIORS).map((b) => b.token);
const SAMPLE = path.join(ROOT, 'recipes', 'data', 'behaviorbench-sample.jsonl');
const silent = pino({ level: 'silent' });
const tok = loadChatTokenizer(TOKENIZER, BEHAVIOR_TOKENS);
const QWEN_SYSTEM = '<|im_start|>system\nYou are Qwen, created by Alibaba Cloud. You are a helpful assistant.<|im_end|>\n';

let work: string;
const smoke = (set: string[] = []): ResolvedRecipe =>
  resolveRecipe(path.join(ROOT, 'recipes', 'smoke.yaml'), { policy: { workspace: ROOT, allow: [work] }, set: [`store.path=${work}/runs`, ...set] });

interface Shard {
  ids: Int32Array;
  mask: Uint8Array;
  offsets: BigInt64Array;
}
const shard = (dir: string, split: string): Shard => {
  const { tensors } = readSafetensors(path.join(dir, `${split}.tokens.safetensors`));
  return { ids: tensors.input_ids as Int32Array, mask: tensors.loss_mask as Uint8Array, offsets: tensors.doc_offsets as BigInt64Array };
};
const messagesOf = (dir: string, split: string): MessagesRecord[] =>
  readFileSync(path.join(dir, `${split}.messages.jsonl`), 'utf8').split('\n').filter(Boolean).map((l) => JSON.parse(l));

beforeAll(() => {
  work = mkdtempSync(path.join(tmpdir(), 'bsft-dataset-'));
});

describe('tokenizer and chat template', () => {
  it("tokenizerHash (streamed from the files, for the up-to-date check) is the loaded tokenizer's hash", async () => {
    expect(await tokenizerHash(TOKENIZER)).toBe(tok.hash);
    expect(tok.hash).toMatch(/^[0-9a-f]{64}$/);
  });

  it('gives the official Qwen2.5 IDs for all 51 golden strings', async () => {
    const golden = JSON.parse(readFileSync(path.join(FIXTURES, 'golden_tokens.qwen2.5.json'), 'utf8')) as { text: string; ids: number[] }[];
    expect(golden).toHaveLength(51);
    for (const g of golden) expect(await tok.encode(g.text), g.text).toEqual(g.ids);
    // A batch gives what one text at a time gives.
    expect((await tok.encodeBatch(golden.map((g) => g.text))).map((e) => e.ids)).toEqual(golden.map((g) => g.ids));
  });

  it('adds the behavior tokens as single special tokens from len(tokenizer) up', async () => {
    expect(tok.baseSize).toBe(151665);
    expect(tok.addedIds).toEqual({ '<|behavior:reactive|>': 151665, '<|behavior:proactive|>': 151666, '<|behavior:restraint|>': 151667 });
    expect(await tok.encode('Note<|behavior:proactive|>Before')).toEqual([9112, 151666, 10227]);
    expect(await tok.encode('<|im_start|>assistant\n')).toEqual([151644, 77091, 198]);
    // The tokenizer splits at an added token whatever follows (what one encoding of prompt and reply relies on).
    expect(tok.splitsAt('a<|im_end|>b', 1)).toBe(true);
    expect(tok.splitsAt('a<|behavior:proactive|>b', 1)).toBe(true);
    expect(tok.splitsAt('assistant\nAnswer', 10)).toBe(false);
  });

  it('renders the ChatML text of the Qwen2.5 template: default system, own system, multi-turn, names', () => {
    expect(tok.render([{ role: 'user', content: 'Hi' }], true)).toBe(`${QWEN_SYSTEM}<|im_start|>user\nHi<|im_end|>\n<|im_start|>assistant\n`);
    const spec: ConditioningSpec = { mode: 'token', behaviors: DEFAULT_BEHAVIORS as any, instruction: 'x' };
    const msgs = contextMessages(spec, [
      { role: 'system', content: 'Ward round.' },
      { role: 'user', name: 'Dr. Patel', content: 'K is 6.9.' },
      { role: 'assistant', content: 'Noted.' },
      { role: 'user', name: 'Dr. Okafor', content: 'Continue the ACE inhibitor.' },
    ]);
    expect(tok.render([...msgs, { role: 'assistant', content: '<|behavior:proactive|>Hold it.' }], false)).toBe(
      '<|im_start|>system\nWard round.<|im_end|>\n' +
        '<|im_start|>user\nDr. Patel: K is 6.9.<|im_end|>\n' +
        '<|im_start|>assistant\nNoted.<|im_end|>\n' +
        '<|im_start|>user\nDr. Okafor: Continue the ACE inhibitor.<|im_end|>\n' +
        '<|im_start|>assistant\n<|behavior:proactive|>Hold it.<|im_end|>\n',
    );
  });

  it('instruction conditioning describes the behaviors in the system prompt', () => {
    const spec: ConditioningSpec = { mode: 'instruction', behaviors: DEFAULT_BEHAVIORS as any, instruction: 'Behaviors:\n{behaviors}' };
    const msgs = contextMessages(spec, [{ role: 'user', content: 'Q' }]);
    expect(msgs[0]).toEqual({ role: 'system', content: expect.stringContaining('- proactive: Step in unprompted') });
  });

  it('masks exactly the reply, its behavior token and <|im_end|>, and drops the oldest turns of long conversations', async () => {
    const ctx = [
      { role: 'system' as const, content: 'S' },
      { role: 'user' as const, content: 'old '.repeat(200) },
      { role: 'user' as const, content: 'Latest question?' },
    ];
    const reply = '<|behavior:reactive|>Answer.';
    const full = (await tokenizeConversation(tok, ctx, reply, 4096))!;
    expect(full.droppedTurns).toBe(0);
    const masked = full.ids.filter((_, i) => full.mask[i]);
    expect(masked).toEqual([...(await tok.encode(reply)), tok.eosId]);
    expect(full.ids.at(-1)).toBe(198); // the template's newline after <|im_end|> is context
    const short = (await tokenizeConversation(tok, ctx, reply, 60))!;
    expect(short.droppedTurns).toBe(1);
    expect(short.messages.map((m) => m.content)).toEqual(['S', 'Latest question?', reply]);
    expect(await tokenizeConversation(tok, ctx, reply, 10)).toBeUndefined();
    // Without a behavior token the reply follows the header in one piece of text: the prompt is encoded apart and
    // compared, and a reply whose first characters would merge with the header is refused.
    const plain = (await tokenizeConversation(tok, ctx, 'Answer.', 4096))!;
    expect(plain.ids.filter((_, i) => plain.mask[i])).toEqual([...(await tok.encode('Answer.')), tok.eosId]);
    await expect(tokenizeConversation(tok, ctx, '\n\nAnswer.', 4096)).rejects.toThrow(/merge with the assistant header/);
  });
});

describe('chat template rendered by shape', () => {
  const qwen = (JSON.parse(readFileSync(path.join(ROOT, 'recipes', 'models', 'qwen2.5-tokenizer', 'tokenizer_config.json'), 'utf8')) as { chat_template: string }).chat_template;

  it('reads which templates insert contents as they are (and test nothing else of them)', () => {
    expect(insertsContentOnly(qwen)).toBe(true);
    for (const uses of ["{{ message.content|trim }}", "{% if '</think>' in message.content %}x{% endif %}", "{{ message.content.split('x')[0] }}",
      "{% if message.content == '' %}x{% endif %}", "{{ messages[0]['content'][:10] }}"]) {
      expect(insertsContentOnly(`{% for message in messages %}${uses}{% endfor %}`), uses).toBe(false);
    }
  });

  it('gives the full rendering for random conversations of many shapes, contents with template syntax included', () => {
    const shaped = new ChatTemplate(qwen, { bos_token: '', eos_token: '<|im_end|>' });
    const trimming = new ChatTemplate(qwen.replaceAll('message.content', 'message.content|trim'), { bos_token: '', eos_token: '<|im_end|>' });
    expect(shaped.shaped && !trimming.shaped).toBe(true);
    const rng = new Rng(5);
    const texts = ['Hi', '', '  spaced  ', '{{ x }} {% if %}', 'line\nbreak', '<|im_end|>', '\ue000 0\ue001', 'é', '$& $1'];
    for (let n = 0; n < 300; n++) {
      const roles = ['system', 'user', 'assistant'] as const;
      const messages = Array.from({ length: 1 + Math.floor(rng.next() * 6) }, (_, i) => ({
        role: i === 0 && rng.next() < 0.3 ? 'system' as const : roles[1 + Math.floor(rng.next() * 2)]!,
        content: texts[Math.floor(rng.next() * texts.length)]!,
      }));
      const gen = rng.next() < 0.5;
      expect(shaped.render(messages, gen)).toBe(shaped.renderFull(messages, gen));
      expect(trimming.render(messages, gen)).toBe(trimming.renderFull(messages, gen));
    }
  });
});

describe('split', () => {
  it('keeps each case in one split, stratifies by category x behavior, and is seeded', () => {
    const tasks = Array.from({ length: 400 }, (_, i) => ({ case_id: `c${i % 80}`, category: `k${i % 4}`, behavior: ['a', 'b'][i % 2]! }));
    const a = assignSplits(tasks, { train: 0.8, val: 0.1, test: 0.1 }, 1);
    const b = assignSplits(tasks, { train: 0.8, val: 0.1, test: 0.1 }, 1);
    const c = assignSplits(tasks, { train: 0.8, val: 0.1, test: 0.1 }, 2);
    expect([...a]).toEqual([...b]);
    expect([...a]).not.toEqual([...c]);
    const perSplit = { train: 0, val: 0, test: 0 };
    for (const [, s] of a) perSplit[s]++;
    expect(perSplit).toEqual({ train: 64, val: 8, test: 8 });
  });
});

describe('dataset build', () => {
  let dir: string;
  let manifest: Manifest;

  beforeAll(async () => {
    dir = path.join(work, 'a');
    ({ manifest } = await buildDataset(smoke(), dir, silent));
  });

  it('writes a manifest and a train.json that fit their contracts on both sides (zod here, JSON Schema in the trainer)', () => {
    expect(manifestSchema.safeParse(manifest).error).toBeUndefined();
    const config = trainerConfig(smoke(), path.dirname(dir));
    expect(trainerConfigSchema.safeParse(config).error).toBeUndefined();
    const check = `
import json, sys
sys.path.insert(0, ${JSON.stringify(path.join(ROOT, 'trainer-python', 'src'))})
from bsft_trainer.data.contract import problems, schema
print(json.dumps([problems(json.load(open(sys.argv[1])), schema("manifest")), problems(json.loads(sys.argv[2]), schema("train"))]))
`;
    const out = execFileSync('python3', ['-c', check, path.join(dir, 'manifest.json'), JSON.stringify(config)], { encoding: 'utf8' });
    expect(JSON.parse(out)).toEqual([[], []]);
  });

  it('writes the files of Contract 3 with the recorded behavior token IDs', async () => {
    expect(readdirSync(dir).sort()).toEqual(
      ['manifest.json', 'tokenizer', ...SPLITS.flatMap((s) => [`${s}.messages.jsonl`, `${s}.tokens.safetensors`])].sort(),
    );
    expect(manifest.behavior_ids).toEqual({ reactive: 151665, proactive: 151666, restraint: 151667 });
    // The token IDs of each description, for `train.token_init: description`: existing tokens only.
    for (const [name, b] of Object.entries(DEFAULT_BEHAVIORS)) {
      const ids = manifest.behavior_descriptions[name]!;
      expect(await tok.decode(ids)).toBe(b.description);
      expect(Math.max(...ids)).toBeLessThan(manifest.tokenizer_size);
    }
    const { tensors } = readSafetensors(path.join(dir, 'train.tokens.safetensors'));
    expect(tensors.input_ids).toBeInstanceOf(Int32Array);
    expect(tensors.loss_mask).toBeInstanceOf(Uint8Array);
    expect(tensors.doc_offsets).toBeInstanceOf(BigInt64Array);
    expect(manifest.documents.train).toHaveLength(Number(tensors.doc_offsets!.length) - 1);
    expect(SPLITS.reduce((a, s) => a + manifest.documents[s].length, 0)).toBe(630);
  });

  it('never puts a case in two splits, and every split has every behavior', () => {
    const cases = SPLITS.map((s) => new Set(messagesOf(dir, s).map((r) => r.case_id)));
    for (let i = 0; i < 3; i++) for (let j = i + 1; j < 3; j++) for (const c of cases[i]!) expect(cases[j]!.has(c)).toBe(false);
    for (const s of SPLITS) {
      const behaviors = new Set(messagesOf(dir, s).map((r) => r.behavior));
      expect([...behaviors].sort(), s).toEqual(['proactive', 'reactive', 'restraint']);
    }
  });

  it('masks cover exactly the assistant reply (behavior token first) in every document', async () => {
    for (const s of SPLITS) {
      const { ids, mask, offsets } = shard(dir, s);
      const records = messagesOf(dir, s);
      for (const [d, r] of records.entries()) {
        const start = Number(offsets[d]);
        const end = Number(offsets[d + 1]);
        const doc = Array.from(ids.subarray(start, end));
        const m = Array.from(mask.subarray(start, end));
        const first = m.indexOf(1);
        const last = m.lastIndexOf(1);
        expect(m.slice(first, last + 1).every((x) => x === 1)).toBe(true);
        const reply = r.messages.at(-1)!.content;
        expect(doc.slice(first, last + 1)).toEqual([...(await tok.encode(reply)), tok.eosId]);
        expect(doc[first]).toBe(manifest.behavior_ids[r.behavior]);
        expect(doc.slice(first - 3, first)).toEqual([151644, 77091, 198]);
        expect(await tok.decode(doc.slice(0, first))).toBe(tok.render(r.messages.slice(0, -1), true));
      }
    }
  });

  it('is deterministic: building twice gives identical bytes', async () => {
    const other = path.join(work, 'b');
    await buildDataset(smoke(), other, silent);
    const files = readdirSync(dir, { recursive: true, withFileTypes: true }).filter((e) => e.isFile());
    expect(files.length).toBeGreaterThan(8);
    for (const e of files) {
      const rel = path.relative(dir, path.join(e.parentPath, e.name));
      expect(readFileSync(path.join(other, rel)).equals(readFileSync(path.join(dir, rel))), rel).toBe(true);
    }
  });

  it('skips the work when the dataset hash matches, and rebuilds when an option changes', async () => {
    expect((await buildDataset(smoke(), dir, silent)).built).toBe(false);
    const seeded = await buildDataset(smoke(['data.seed=7']), path.join(work, 'seed7'), silent);
    expect(seeded.manifest.dataset_hash).not.toBe(manifest.dataset_hash);
    expect(seeded.manifest.documents.test).not.toEqual(manifest.documents.test);
  });

  it('standard SFT (conditioning none) has no behavior token in its data', async () => {
    const none = await buildDataset(smoke(['data.conditioning=none']), path.join(work, 'none'), silent);
    const { ids } = shard(none.dir, 'train');
    const tokens = new Set(Object.values(none.manifest.behavior_ids));
    expect(ids.some((id) => tokens.has(id))).toBe(false);
    expect(none.manifest.behavior_ids.proactive).toBe(151666);
  });

  it('reads .jsonl.gz and counts identical duplicates once', async () => {
    const data = path.join(work, 'gz');
    mkdirSync(data, { recursive: true });
    const text = readFileSync(SAMPLE);
    writeFileSync(path.join(data, 'a.jsonl.gz'), gzipSync(text));
    writeFileSync(path.join(data, 'b.jsonl'), text.subarray(0, text.indexOf('\n') + 1));
    const r = resolveRecipe(path.join(ROOT, 'recipes', 'smoke.yaml'), {
      policy: { workspace: ROOT, allow: [work] },
      set: [`data.tasks=["${data}/*.jsonl*"]`, `store.path=${work}/runs`],
    });
    const res = await buildDataset(r, path.join(work, 'gz-out'), silent);
    expect(res.manifest.duplicates_skipped).toBe(1);
    expect(SPLITS.reduce((a, s) => a + res.manifest.documents[s].length, 0)).toBe(630);
  });
});

describe('bad task data: precise errors, exit 2, nothing written', () => {
  const good = JSON.parse(readFileSync(SAMPLE, 'utf8').split('\n')[0]!);
  const line = (o: unknown) => JSON.stringify(o);
  const cases: [string, string, RegExp][] = [
    ['bad JSON', '{"id": "x", ', /bad\.jsonl:2: invalid JSON/],
    // The text of a line never reaches an error (errors go to logs and the queue's failedReason).
    ['not JSON at all', 'root:x:0:0:root:/root:/bin/bash', /bad\.jsonl:2: invalid JSON: unexpected character \(the line is not a JSON object\)(?![^]*root:x)/],
    ['missing field', line({ ...good, id: 'm', target: undefined }), /bad\.jsonl:2 target: expected string, received undefined/],
    ['empty context', line({ ...good, id: 'e', context: [] }), /bad\.jsonl:2 context: context needs at least one turn/],
    ['unknown role', line({ ...good, id: 'r', context: [{ role: 'doctor', content: 'x' }] }), /bad\.jsonl:2 context\[0\]\.role: .*expected one of "system"\|"user"\|"assistant"/],
    ['unknown behavior', line({ ...good, id: 'b', behavior: 'bold' }), /bad\.jsonl:2 behavior: unknown behavior "bold"/],
    ['unmapped category', line({ ...good, id: 'u', behavior: undefined, category: 'astrology' }), /bad\.jsonl:2 behavior: missing, and category "astrology" is not in the recipe's data\.categories/],
    ['duplicate id with different content', line({ ...good, target: 'Other text.' }), /bad\.jsonl:2 id: duplicate id "c001-t01" with different content \(first seen at .*bad\.jsonl:1\)/],
  ];
  for (const [name, bad, pattern] of cases) {
    it(name, async () => {
      const d = mkdtempSync(path.join(tmpdir(), 'bsft-bad-'));
      writeFileSync(path.join(d, 'bad.jsonl'), `${line(good)}\n${bad}\n`);
      writeFileSync(path.join(d, 'r.yaml'), `extends: ${path.join(ROOT, 'recipes', 'smoke.yaml')}\ndata: { tasks: [bad.jsonl] }\n`);
      const res = await bsft(['dataset', 'build', 'r.yaml', '--allow', ROOT], { cwd: d });
      expect(res.code).toBe(2);
      expect(res.stderr).toMatch(pattern);
      expect(res.stderr).toContain('nothing was written');
      // Nothing of the failed run remains: no run folder, no recipe.json, no temporary folder.
      expect(readdirSync(d).sort()).toEqual(['bad.jsonl', 'r.yaml']);
    });
  }

  it('lists every bad line, not only the first', async () => {
    const d = mkdtempSync(path.join(tmpdir(), 'bsft-bad-'));
    writeFileSync(path.join(d, 'bad.jsonl'), ['{', line({ ...good, id: 'z', context: [] }), line({ ...good, id: 'y', behavior: 'x' })].join('\n'));
    writeFileSync(path.join(d, 'r.yaml'), `extends: ${path.join(ROOT, 'recipes', 'smoke.yaml')}\ndata: { tasks: [bad.jsonl] }\n`);
    const res = await bsft(['dataset', 'build', 'r.yaml', '--allow', ROOT], { cwd: d });
    expect(res.stderr).toMatch(/3 problem\(s\)[\s\S]*bad\.jsonl:1[\s\S]*bad\.jsonl:2 context[\s\S]*bad\.jsonl:3 behavior/);
  });
});

describe('dataset CLI', () => {
  it('build, stats and inspect work on the smoke recipe', async () => {
    const runs = path.join(work, 'cli-runs');
    const built = await bsft(['dataset', 'build', 'recipes/smoke.yaml', '--allow', work, '--set', `store.path=${runs}`]);
    expect(built.code).toBe(0);
    expect(built.stdout).toMatch(/built: .*dataset/);
    expect(built.stdout).toContain('<|behavior:proactive|>=151666');
    const runDir = path.join(runs, readdirSync(runs)[0]!);
    const stats = await bsft(['dataset', 'stats', runDir]);
    expect(stats.code).toBe(0);
    expect(stats.stdout).toMatch(/omission_detection\s+\d+/);
    expect(stats.stdout).toContain('token-length histogram');
    expect(stats.stdout).toMatch(/0 shortened .* 0 dropped/);
    const inspect = await bsft(['dataset', 'inspect', runDir, '--split', 'val', '--n', '2']);
    expect(inspect.code).toBe(0);
    expect(inspect.stdout.match(/^── val #/gm)).toHaveLength(2);
    expect(inspect.stdout).toMatch(/⟦<\|behavior:(reactive|proactive|restraint)\|>[^⟧]+<\|im_end\|>⟧/);
    const again = await bsft(['dataset', 'build', 'recipes/smoke.yaml', '--allow', work, '--set', `store.path=${runs}`]);
    expect(again.stdout).toMatch(/up to date/);
  });
});
