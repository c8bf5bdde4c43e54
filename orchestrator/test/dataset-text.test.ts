import { closeSync, existsSync, mkdtempSync, openSync, readdirSync, readFileSync, rmSync, statSync, writeFileSync, writeSync } from 'node:fs';
import { tmpdir } from 'node:os';
import path from 'node:path';
import { pino } from 'pino';
import { beforeAll, describe, expect, it } from 'vitest';
import { buildDataset, type MessagesRecord } from '../src/dataset/build.js';
import { instructionPrompt } from '../src/dataset/condition.js';
import { DataError } from '../src/dataset/data-error.js';
import { pyStrip } from '../src/dataset/strip.js';
import { loadChatTokenizer } from '../src/dataset/tokenizer.js';
import { RecipeError } from '../src/recipe/recipe-error.js';
import { resolveRecipe } from '../src/recipe/resolve.js';
import { DEFAULT_BEHAVIORS, SPLITS } from '../src/recipe/schema.js';
import { execFileSync } from 'node:child_process';
import { bsft, FIXTURES, ROOT } from './helpers/cli.js';
import { pythonWith } from './helpers/python.js';
import { limit } from './helpers/time-scale.js';

/** Issue 16: the builder's text rules, limits and the files outside tools read. */

const SAMPLE = path.join(ROOT, 'recipes', 'data', 'behaviorbench-sample.jsonl');
const SMOKE = path.join(ROOT, 'recipes', 'smoke.yaml');
const silent = pino({ level: 'silent' });
const sampleLines = readFileSync(SAMPLE, 'utf8').split('\n').filter(Boolean);
const good = JSON.parse(sampleLines[0]!) as Record<string, unknown>;
const line = (o: unknown) => JSON.stringify(o);

let work: string;
beforeAll(() => {
  work = mkdtempSync(path.join(tmpdir(), 'bsft-text-'));
});

/** Writes a task file (text or bytes) and resolves the smoke recipe over it. */
function recipeOver(content: string | Buffer, set: string[] = []) {
  const dir = mkdtempSync(path.join(work, 'd-'));
  const file = path.join(dir, 'tasks.jsonl');
  writeFileSync(file, content);
  return {
    dir,
    recipe: resolveRecipe(SMOKE, { policy: { workspace: ROOT, allow: [work] }, set: [`data.tasks=["${file}"]`, `store.path=${dir}/runs`, ...set] }),
  };
}

/** Builds and returns the problems as `file:line field: message` lines (empty when the build succeeds). */
async function problemsOf(content: string | Buffer, set: string[] = []): Promise<string[]> {
  const { dir, recipe } = recipeOver(content, set);
  const out = path.join(dir, 'out');
  try {
    await buildDataset(recipe, out, silent);
    return [];
  } catch (e) {
    if (!(e instanceof DataError)) throw e;
    expect(existsSync(out)).toBe(false);
    return e.message.split('\n').slice(1).map((l) => l.trim());
  }
}

describe('manifest token order and the shipped tokenizer', () => {
  // Four tokens whose alphabetical order is not their ID order.
  const behaviors = {
    zeta: { token: '<|z|>', description: 'Z.' },
    alpha: { token: '<|y|>', description: 'A.' },
    mid: { token: '<|a|>', description: 'M.' },
    beta: { token: '<|b|>', description: 'B.' },
  };
  let dir: string;

  beforeAll(async () => {
    const tasks = sampleLines.map((l, i) => ({ ...JSON.parse(l), behavior: Object.keys(behaviors)[i % 4] }));
    const { dir: d, recipe } = recipeOver(tasks.map(line).join('\n'), [`data.behaviors=${JSON.stringify(behaviors)}`, 'data.categories=null']);
    dir = path.join(d, 'out');
    await buildDataset(recipe, dir, silent);
  });

  it('writes behavior_tokens and behavior_ids in ID order (the order to add them to a tokenizer)', () => {
    const manifest = JSON.parse(readFileSync(path.join(dir, 'manifest.json'), 'utf8'));
    expect(Object.entries(manifest.behavior_tokens)).toEqual([['<|z|>', 151665], ['<|y|>', 151666], ['<|a|>', 151667], ['<|b|>', 151668]]);
    expect(Object.entries(manifest.behavior_ids)).toEqual([['zeta', 151665], ['alpha', 151666], ['mid', 151667], ['beta', 151668]]);
    expect(Object.keys(manifest.behavior_descriptions)).toEqual(['zeta', 'alpha', 'mid', 'beta']);
  });

  it('ships tokenizer/ with the tokens added at the manifest IDs', async () => {
    expect(readdirSync(path.join(dir, 'tokenizer')).sort()).toEqual(['tokenizer.json', 'tokenizer_config.json']);
    const shipped = loadChatTokenizer(path.join(dir, 'tokenizer'), []);
    expect(shipped.baseSize).toBe(151669);
    expect(await shipped.encode('x<|a|>y<|z|>')).toEqual([87, 151667, 88, 151665]);
    const config = JSON.parse(readFileSync(path.join(dir, 'tokenizer', 'tokenizer_config.json'), 'utf8'));
    expect(config.added_tokens_decoder['151668']).toMatchObject({ content: '<|b|>', special: true });
    expect(config.chat_template).toContain('<|im_start|>');
  });
});

describe('records for TRL and axolotl', () => {
  it('writes prompt/completion and a training flag on the final reply only', async () => {
    const earlier = line({ ...good, id: 'e1', context: [{ role: 'user', content: 'K?' }, { role: 'assistant', content: '4.1.' }, { role: 'user', content: 'Fine?' }] });
    const { dir, recipe } = recipeOver([...sampleLines.slice(0, 60), earlier].join('\n'));
    await buildDataset(recipe, path.join(dir, 'out'), silent);
    const records = SPLITS.flatMap((s) => readFileSync(path.join(dir, 'out', `${s}.messages.jsonl`), 'utf8').split('\n').filter(Boolean).map((l) => JSON.parse(l) as MessagesRecord));
    for (const r of records) {
      expect(r.completion).toHaveLength(1);
      expect(r.completion[0]!.role).toBe('assistant');
      expect(r.completion[0]!.content.startsWith(DEFAULT_BEHAVIORS[r.behavior as keyof typeof DEFAULT_BEHAVIORS].token)).toBe(true);
      expect(r.prompt).toEqual(r.messages.slice(0, -1).map(({ role, content }) => ({ role, content })));
      expect(r.messages.map((m) => m.training)).toEqual(r.messages.map((_, i) => i === r.messages.length - 1));
    }
    expect(records.some((r) => r.messages.some((m) => m.role === 'assistant' && !m.training))).toBe(true); // earlier replies
  });
});

/** Runs fixtures/outside_tools.py over a dataset folder. */
const outside = (py: string, dir: string, what: string) =>
  JSON.parse(execFileSync(py, [path.join(FIXTURES, 'outside_tools.py'), dir, what], { encoding: 'utf8', stdio: ['ignore', 'pipe', 'ignore'] }));

describe('the dataset read by the Python stack', () => {
  let dir: string;
  beforeAll(async () => {
    dir = path.join(work, 'smoke-ds');
    const { recipe } = recipeOver(sampleLines.join('\n'));
    await buildDataset(recipe, dir, silent);
  });

  const transformers = pythonWith(['transformers']);
  it.skipIf(!transformers)('AutoTokenizer.from_pretrained(<dataset>/tokenizer) gives the manifest IDs and the shard IDs', () => {
    const r = outside(transformers!, dir, 'tokenizer');
    expect(r.ids).toEqual({ '<|behavior:reactive|>': 151665, '<|behavior:proactive|>': 151666, '<|behavior:restraint|>': 151667 });
    expect(r.len).toBe(151668);
    expect(r.decoded_without_special).toBe('assistant\nNote'); // the behavior tokens are special
    expect(r.documents).toBeGreaterThan(400);
    expect(r.documents_same_ids).toBe(r.documents);
  });

  const trl = pythonWith(['trl', 'datasets', 'transformers']);
  it.skipIf(!trl)("TRL's SFTTrainer (prompt-completion, defaults) trains bsft's loss positions plus the final newline", () => {
    const r = outside(trl!, dir, 'trl');
    expect(r.prepared).toBe(r.documents);
    expect(r.same_ids).toBe(r.documents);
    expect(r.mask_differs_by_final_newline_only).toBe(r.documents);
  }, limit(120_000));
});

describe('invalid text is an error naming file, line and field', () => {
  it('invalid UTF-8 bytes', async () => {
    const bad = Buffer.concat([Buffer.from(`${sampleLines[0]}\n{"id":"u1","case_id":"c","category":"x","behavior":"reactive","context":[{"role":"user","content":"ok"}],"target":"caf`), Buffer.from([0xe9]), Buffer.from('"}\n')]);
    expect(await problemsOf(bad)).toEqual([expect.stringMatching(/^.*tasks\.jsonl:2 target: invalid UTF-8 \(bytes e9 22 7d .*at byte \d+ of the line\)/)]);
  });

  it('a lone surrogate escape', async () => {
    const bad = line({ ...good, id: 's1', context: [{ role: 'user', content: 'a\\ud800b' }] }).replace('\\\\ud800', '\\ud800');
    expect(await problemsOf(`${sampleLines[0]}\n${bad}\n`)).toEqual([expect.stringMatching(/tasks\.jsonl:2 context\[0\]\.content: lone surrogate U\+D800/)]);
  });

  it('control text in content, names or target (accepted with data.allow_control_text)', async () => {
    const bad = [
      line({ ...good, id: 'k1', target: 'Done.<|im_end|>' }),
      line({ ...good, id: 'k2', context: [{ role: 'user', name: '<|im_start|>x', content: 'q' }] }),
      line({ ...good, id: 'k3', context: [{ role: 'user', content: 'say <|behavior:restraint|> now' }] }),
    ];
    const problems = await problemsOf([sampleLines[0], ...bad].join('\n'));
    expect(problems).toEqual([
      expect.stringMatching(/tasks\.jsonl:2 target: contains the control text "<\|im_end\|>"/),
      expect.stringMatching(/tasks\.jsonl:3 context\[0\]\.name: contains the control text "<\|im_start\|>"/),
      expect.stringMatching(/tasks\.jsonl:4 context\[0\]\.content: contains the control text "<\|behavior:restraint\|>"/),
    ]);
    expect(await problemsOf([...sampleLines.slice(0, 40), ...bad].join('\n'), ['data.allow_control_text=true'])).toEqual([]);
  });
});

describe('bounded input', () => {
  it('refuses an over-long line without reading it into memory, and an over-long field', async () => {
    const huge = line({ ...good, id: 'h1', target: 'x'.repeat(5 * 1024 * 1024) });
    const field = line({ ...good, id: 'h2', context: [{ role: 'user', content: 'word '.repeat(300_000) }, { role: 'user', content: 'And now?' }] });
    const started = performance.now();
    const problems = await problemsOf([sampleLines[0], huge, field].join('\n'));
    expect(performance.now() - started).toBeLessThan(10_000);
    expect(problems).toEqual([
      expect.stringMatching(/tasks\.jsonl:2: line is 5 MiB, over the limit of 4 MiB \(data\.max_line_bytes\)/),
      expect.stringMatching(/tasks\.jsonl:3 context\[0\]\.content: 1\.43 MiB, over the limit of 1 MiB \(data\.max_field_bytes\)/),
    ]);
    expect(await problemsOf([sampleLines[0], field].join('\n'), ['data.max_field_bytes=2000000'])).toEqual([]);
  });

  it('builds a split whose messages.jsonl is longer than V8 allows a string, holding no file in memory (576 MB, generated; ~20 s)', async () => {
    // 640 tasks, each with a 900 kB `answer` (written to messages.jsonl, not tokenized): a train split of 576 MB, over
    // V8's longest string (2^29 - 24 characters). Generated here, a line at a time; built in a process of its own.
    const d = mkdtempSync(path.join(work, 'huge-'));
    const file = path.join(d, 'tasks.jsonl');
    const fd = openSync(file, 'w');
    const answer = 'x'.repeat(900_000);
    for (let i = 0; i < 640; i++) writeSync(fd, `${line({ ...good, id: `big-${i}`, case_id: `big-c${i}`, answer })}\n`);
    closeSync(fd);
    writeFileSync(path.join(d, 'r.yaml'), `extends: ${SMOKE}\ndata: { tasks: [tasks.jsonl], splits: { train: 1, val: 0, test: 0 } }\n`);
    const res = await bsft(['dataset', 'build', 'r.yaml', '--allow', ROOT, '--out', 'ds'], { cwd: d });
    expect(res.code, res.stderr).toBe(0);
    const size = statSync(path.join(d, 'ds', 'train.messages.jsonl')).size;
    expect(size).toBeGreaterThan(2 ** 29);
    const manifest = JSON.parse(readFileSync(path.join(d, 'ds', 'manifest.json'), 'utf8'));
    expect(manifest.documents.train).toHaveLength(640);
    rmSync(d, { recursive: true, force: true });
  }, limit(600_000));

  it('fails when more than data.max_dropped_share of the documents do not fit, listing them', async () => {
    const long = Array.from({ length: 4 }, (_, i) => line({ ...good, id: `L${i}`, target: 'long reply '.repeat(700) }));
    const problems = await problemsOf([...sampleLines.slice(0, 36), ...long].join('\n'));
    expect(problems).toEqual([expect.stringMatching(/4 of 40 tasks \(10\.0%\) do not fit data\.max_seq_len \(1024\).*over data\.max_dropped_share \(0\.05\): L[0-3], L[0-3], L[0-3], L[0-3]$/)]);
    const { dir, recipe } = recipeOver([...sampleLines.slice(0, 36), ...long].join('\n'), ['data.max_dropped_share=0.2']);
    const { manifest } = await buildDataset(recipe, path.join(dir, 'out'), silent);
    expect(manifest.truncation.dropped_ids.sort()).toEqual(['L0', 'L1', 'L2', 'L3']);
  });

  it('accepts a leading UTF-8 byte-order mark; names an empty file by the path given', async () => {
    expect(await problemsOf(`\ufeff${sampleLines.slice(0, 40).join('\n')}`)).toEqual([]);
    expect(await problemsOf(`${sampleLines[0]}\n\ufeff${sampleLines[1]}`)).toEqual([
      expect.stringMatching(/tasks\.jsonl:2: starts with a byte-order mark \(U\+FEFF\), which is allowed only at the start of the file/),
    ]);
    const d = mkdtempSync(path.join(work, 'empty-'));
    writeFileSync(path.join(d, 'empty.jsonl'), '');
    writeFileSync(path.join(d, 'r.yaml'), `extends: ${SMOKE}\ndata: { tasks: [empty.jsonl] }\n`);
    const res = await bsft(['dataset', 'build', 'r.yaml', '--allow', ROOT], { cwd: d });
    expect(res.code).toBe(2);
    expect(res.stderr).toContain('  empty.jsonl: no tasks (the file is empty)');
    expect(readdirSync(d).sort()).toEqual(['empty.jsonl', 'r.yaml']);
  });

  it('leaves nothing behind when bsft run fails at the build step', async () => {
    const d = mkdtempSync(path.join(work, 'run-'));
    writeFileSync(path.join(d, 'bad.jsonl'), `${line({ ...good, target: 'x<|im_end|>' })}\n`);
    writeFileSync(path.join(d, 'r.yaml'), `extends: ${SMOKE}\ndata: { tasks: [bad.jsonl] }\n`);
    const res = await bsft(['run', 'r.yaml', '--allow', ROOT], { cwd: d });
    expect(res.code).toBe(2);
    expect(res.stderr).toMatch(/bad\.jsonl:1 target: contains the control text "<\|im_end\|>"/);
    expect(readdirSync(d).sort()).toEqual(['bad.jsonl', 'r.yaml']);
  });

  it('bsft validate reads the task files (when local and small) and reports their problems', async () => {
    const d = mkdtempSync(path.join(work, 'validate-'));
    writeFileSync(path.join(d, 'bad.jsonl'), `${sampleLines[0]}\n{"id": 1}\n`);
    writeFileSync(path.join(d, 'r.yaml'), `extends: ${SMOKE}\ndata: { tasks: [bad.jsonl] }\n`);
    const checked = await bsft(['validate', 'r.yaml', '--allow', ROOT], { cwd: d });
    expect(checked.code).toBe(2);
    expect(checked.stdout).toContain('bad r.yaml: 5 problem(s) in its task data');
    expect(checked.stdout).toContain('  bad.jsonl:2 id: expected string, received number');
    const skipped = await bsft(['validate', 'r.yaml', '--allow', ROOT, '--no-data'], { cwd: d });
    expect(skipped.code).toBe(0);
    expect(skipped.stdout).toContain('1 task file(s) not read: --no-data');
    const good = await bsft(['validate', SMOKE]);
    expect(good.stdout).toMatch(/ok  .*smoke\.yaml  \(run id smoke-[0-9a-f]{8}; 630 tasks in 1 file\(s\), 0\.4 MiB, checked\)/);
  });

  it('leaves nothing behind with --out either', async () => {
    const d = mkdtempSync(path.join(work, 'out-'));
    writeFileSync(path.join(d, 'bad.jsonl'), '{"id": 1}\n');
    writeFileSync(path.join(d, 'r.yaml'), `extends: ${SMOKE}\ndata: { tasks: [bad.jsonl] }\n`);
    const res = await bsft(['dataset', 'build', 'r.yaml', '--allow', ROOT, '--out', 'ds'], { cwd: d });
    expect(res.code).toBe(2);
    expect(readdirSync(d).sort()).toEqual(['bad.jsonl', 'r.yaml']);
  });
});

describe('text rules', () => {
  it('fills every {behaviors} placeholder and keeps $ patterns in descriptions literal', () => {
    const behaviors = { a: { token: '<|a|>', description: 'costs $& or $$ and $\' too' }, b: { token: '<|b|>', description: 'B' } };
    expect(instructionPrompt({ mode: 'instruction', behaviors, instruction: '{behaviors}\n--\n{behaviors}' })).toBe(
      "- a: costs $& or $$ and $' too\n- b: B\n--\n- a: costs $& or $$ and $' too\n- b: B",
    );
  });

  it("strips targets as Python's str.strip() does (U+0085 and U+001F go, U+FEFF and U+200B stay)", async () => {
    expect(pyStrip('\u0085\u001f Reply.\u3000\n')).toBe('Reply.');
    expect(pyStrip('\ufeffReply.\u200b')).toBe('\ufeffReply.\u200b');
    const { dir, recipe } = recipeOver([...sampleLines.slice(0, 40), line({ ...good, id: 'w1', case_id: 'w', target: '\u0085Reply.\ufeff ' })].join('\n'));
    await buildDataset(recipe, path.join(dir, 'out'), silent);
    const all = SPLITS.flatMap((s) => readFileSync(path.join(dir, 'out', `${s}.messages.jsonl`), 'utf8').split('\n').filter(Boolean).map((l) => JSON.parse(l) as MessagesRecord));
    expect(all.find((r) => r.id === 'w1')!.completion[0]!.content).toBe('<|behavior:proactive|>Reply.\ufeff'.replace('proactive', good.behavior as string));
  });

  const refused = (set: string[]) => {
    try {
      resolveRecipe(SMOKE, { policy: { workspace: ROOT, allow: [] }, set });
    } catch (e) {
      if (e instanceof RecipeError) return e.message;
      throw e;
    }
    return '';
  };

  it('refuses behavior tokens that contain one another, naming both', () => {
    const message = refused([`data.behaviors={"reactive":{"token":"[[R]]","description":"a"},"proactive":{"token":"[[R]]!","description":"b"}}`]);
    expect(message).toMatch(/data\.behaviors\.reactive\.token: token "\[\[R\]\]" is part of the token "\[\[R\]\]!" of behavior "proactive"/);
  });

  it('refuses seeds above 2^32 - 1 (they would alias smaller seeds)', () => {
    expect(refused([`data.seed=${2 ** 32 + 7}`])).toMatch(/--set data\.seed: expected <= 4294967295/);
    expect(refused([`train.seed=${2 ** 32}`])).toMatch(/--set train\.seed: expected <= 4294967295/);
    expect(refused([`data.seed=${2 ** 32 - 1}`])).toBe('');
  });
});
