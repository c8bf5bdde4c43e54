import { mkdtempSync, mkdirSync, symlinkSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import path from 'node:path';
import { beforeAll, describe, expect, it } from 'vitest';
import { keysAt } from '../src/recipe/format-issues.js';
import { OTHER_TOOL_KEYS } from '../src/recipe/other-tools.js';
import { RecipeError } from '../src/recipe/recipe-error.js';
import { resolveRecipe } from '../src/recipe/resolve.js';
import { bsft, ROOT } from './helpers/cli.js';

const GOOD = `name: t
model: { name_or_path: ./model }
data: { tasks: [tasks.jsonl] }
train: { lr: 1.0e-4, max_steps: 10, batch_tokens: 8192 }
`;

let dir: string;
const write = (name: string, text: string) => {
  const p = path.join(dir, name);
  mkdirSync(path.dirname(p), { recursive: true });
  writeFileSync(p, text);
  return p;
};
const policy = () => ({ workspace: dir, allow: [] });
const problemsOf = (file: string, set: string[] = []) => {
  try {
    resolveRecipe(file, { policy: policy(), set });
  } catch (e) {
    if (e instanceof RecipeError) return e.problems;
    throw e;
  }
  return [];
};

beforeAll(() => {
  dir = mkdtempSync(path.join(tmpdir(), 'bsft-recipe-'));
  write('model/config.json', '{}');
  write('model/tokenizer.json', '{}');
  write('tasks.jsonl', '');
  write('good.yaml', GOOD);
});

describe('shipped recipes', () => {
  it('all validate', async () => {
    const res = await bsft(['validate', 'recipes/smoke.yaml', 'recipes/paper/behaviorsft-lora.yaml',
      'recipes/paper/behaviorsft-full.yaml', 'recipes/paper/standard-sft.yaml', 'recipes/paper/instructed.yaml']);
    expect(res.stdout).not.toContain('bad ');
    expect(res.code).toBe(0);
  });

  it('paper recipes share their base through extends and differ only where they should', async () => {
    const show = async (f: string) => JSON.parse((await bsft(['show', '--json', f])).stdout);
    const lora = await show('recipes/paper/behaviorsft-lora.yaml');
    const full = await show('recipes/paper/behaviorsft-full.yaml');
    const none = await show('recipes/paper/standard-sft.yaml');
    const inst = await show('recipes/paper/instructed.yaml');
    expect(lora.model.name_or_path).toBe('Qwen/Qwen2.5-7B-Instruct');
    expect([lora.train.method, full.train.method]).toEqual(['lora', 'full']);
    expect([lora.data.conditioning, none.data.conditioning, inst.data.conditioning]).toEqual(['token', 'none', 'instruction']);
    expect(new Set([lora.run_id, full.run_id, none.run_id, inst.run_id]).size).toBe(4);
    expect(Object.keys(lora.data.categories)).toHaveLength(13);
  });
});

describe('run id', () => {
  const idWith = (set: string[]) =>
    resolveRecipe(path.join(ROOT, 'recipes', 'smoke.yaml'), { policy: { workspace: ROOT, allow: [tmpdir()] }, set }).run_id;

  it('covers what trains the weights and nothing else', () => {
    const base = idWith([]);
    const speedSwitches = ['train.compile=true', 'train.step_sync=every_step', 'train.activation_checkpointing=true', 'train.cpu_offload=true'];
    for (const perRun of ['eval.bootstrap=50', 'eval.max_new_tokens=9', 'queue.priority=3', 'description=other', 'resources.gpus=2', 'resources.gpu_memory_gb=141', `store.path=${tmpdir()}/elsewhere`, 'judge={kind: openai, base_url: "http://127.0.0.1:8000/v1", model: m}', ...speedSwitches]) {
      expect(idWith([perRun]), perRun).toBe(base);
    }
    for (const training of ['train.lr=0.001', 'train.lora.compute_dtype=float32', 'train.master_weights=bf16_compensated', 'data.seed=7', 'data.max_seq_len=512', 'model.dtype=bfloat16', 'name=other']) {
      expect(idWith([training]), training).not.toBe(base);
    }
  });

  it('bsft show says which fields the id covers', async () => {
    const res = await bsft(['show', 'recipes/smoke.yaml']);
    expect(res.stdout.split('\n')[0]).toMatch(/^# run id smoke-[0-9a-f]{8} covers: name, model, data, train .*eval, queue, store, resources, tracking, judge and description are per-run settings/);
  });
});

describe('recipe problems', () => {
  it('reports every problem at once with dotted path, file and line', () => {
    const f = write('many.yaml', `name: t
model:
  name_or_path: ./model
data:
  tasks: [tasks.jsonl]
  conditioning: tokens
train:
  lr: fast
  max_steps: -3
  batch_tokens: 8192
  lrr: 1
`);
    const problems = problemsOf(f);
    const text = problems.map((p) => `${p.file}:${p.line} ${p.path}: ${p.message}`);
    expect(text).toContainEqual(expect.stringMatching(/many\.yaml:8 train\.lr: expected a number, got "fast"/));
    expect(text).toContainEqual(expect.stringMatching(/many\.yaml:9 train\.max_steps: expected > 0/));
    expect(text).toContainEqual(expect.stringMatching(/many\.yaml:6 data\.conditioning: expected one of "token", "none", "instruction", got "tokens"/));
    expect(text).toContainEqual(expect.stringMatching(/many\.yaml:11 train\.lrr: unknown key \(did you mean "lr"\?\)/));
  });

  it('names missing required fields', () => {
    const problems = problemsOf(write('missing.yaml', 'name: t\nmodel: { name_or_path: ./model }\n'));
    expect(problems.map((p) => `${p.path}: ${p.message}`)).toEqual(
      expect.arrayContaining(['data: required', 'train: required']),
    );
  });

  it('suggests the section name for a misspelled top-level key', () => {
    const problems = problemsOf(write('typo.yaml', `${GOOD}trian: {}\n`));
    expect(problems).toContainEqual(expect.objectContaining({ path: 'trian', line: 5, message: expect.stringContaining('did you mean "train"') }));
  });

  it('merges extends chains deeply and locates problems in the file that wrote them', () => {
    write('chain/base.yaml', GOOD.replace('./model', '../model').replace('tasks.jsonl', '../tasks.jsonl'));
    write('chain/mid.yaml', 'extends: base.yaml\ntrain: { lr: 3.0e-4 }\n');
    const child = write('chain/child.yaml', 'extends: mid.yaml\nname: child\ntrain:\n  grad_accum: zero\n');
    const problems = problemsOf(child);
    expect(problems).toEqual([expect.objectContaining({ path: 'train.grad_accum', line: 4, file: expect.stringContaining('child.yaml') })]);
    const ok = write('chain/ok.yaml', 'extends: mid.yaml\nname: ok\n');
    const r = resolveRecipe(ok, { policy: policy() });
    expect(r.train.lr).toBe(3e-4);
    expect(r.train.batch_tokens).toBe(8192);
    expect(r.name).toBe('ok');
  });

  it('resolves paths relative to the file that wrote them, also through extends', () => {
    write('sub/deeper/child.yaml', `extends: ../../good.yaml\nname: c\n`);
    const r = resolveRecipe(path.join(dir, 'sub/deeper/child.yaml'), { policy: policy() });
    expect(r.task_files).toEqual([path.join(dir, 'tasks.jsonl')]);
    expect(r.model.name_or_path).toBe(path.join(dir, 'model'));
  });

  it('detects extends cycles and missing parents', () => {
    write('cyc/a.yaml', 'extends: b.yaml\nname: a\n');
    write('cyc/b.yaml', 'extends: a.yaml\n');
    expect(problemsOf(path.join(dir, 'cyc/a.yaml'))).toContainEqual(
      expect.objectContaining({ path: 'extends', message: expect.stringMatching(/extends cycle: .*a\.yaml -> .*b\.yaml -> .*a\.yaml/) }),
    );
    const missing = problemsOf(write('orphan.yaml', 'extends: nowhere.yaml\nname: o\n'));
    expect(missing).toContainEqual(expect.objectContaining({ path: 'extends', line: 1, message: expect.stringContaining('file not found') }));
  });

  it('applies --set overrides and validates them', () => {
    const f = path.join(dir, 'good.yaml');
    expect(resolveRecipe(f, { policy: policy(), set: ['train.lr=2e-5', 'data.seed=7'] }).train.lr).toBe(2e-5);
    expect(problemsOf(f, ['train.lr=fast'])).toEqual([
      expect.objectContaining({ file: '--set', path: 'train.lr', message: 'expected a number, got "fast"' }),
    ]);
    expect(problemsOf(f, ['nonsense'])[0]!.message).toContain('expected path=value');
  });

  it('takes a Hub endpoint only over https (http only on a loopback address, for a local test hub)', () => {
    const f = path.join(dir, 'good.yaml');
    expect(problemsOf(f, ['store.hub_url=http://hub.example.org'])).toEqual([
      expect.objectContaining({ path: 'store.hub_url', message: expect.stringMatching(/^expected an https URL/) }),
    ]);
    for (const ok of ['https://hub.example.org', 'http://127.0.0.1:8765']) expect(problemsOf(f, [`store.hub_url=${ok}`])).toEqual([]);
    // Not a URL at all: one problem, z.url()'s, not a crash.
    expect(problemsOf(f, ['store.hub_url=notaurl'])).toEqual([expect.objectContaining({ path: 'store.hub_url', message: 'Invalid URL, got "notaurl"' })]);
  });

  it('keeps paths inside the workspace: parent escapes, absolute paths and symlinks out', () => {
    const outside = mkdtempSync(path.join(tmpdir(), 'bsft-outside-'));
    writeFileSync(path.join(outside, 'tasks.jsonl'), '');
    symlinkSync(outside, path.join(dir, 'link-out'));
    const esc = problemsOf(write('esc.yaml', GOOD.replace('[tasks.jsonl]', '[../../etc/passwd]')));
    expect(esc).toContainEqual(expect.objectContaining({ path: 'data.tasks.0', message: expect.stringContaining('leaves the workspace') }));
    const abs = problemsOf(write('abs.yaml', GOOD.replace('[tasks.jsonl]', `[${outside}/tasks.jsonl]`)));
    expect(abs).toEqual([expect.objectContaining({ path: 'data.tasks.0', message: expect.stringMatching(/^absolute path ".*" leaves the workspace/) })]);
    // An absolute path inside the workspace is the workspace's: no problem, and reported once when it is not.
    expect(problemsOf(write('abs-in.yaml', GOOD.replace('[tasks.jsonl]', `[${path.join(dir, 'tasks.jsonl')}]`)))).toEqual([]);
    const link = problemsOf(write('link.yaml', GOOD.replace('[tasks.jsonl]', '[link-out/tasks.jsonl]')));
    expect(link).toContainEqual(expect.objectContaining({ path: 'data.tasks.0', message: expect.stringContaining('a symlink to') }));
    const store = problemsOf(write('store.yaml', `${GOOD}store: { path: ../../tmp/x }\n`));
    expect(store).toContainEqual(expect.objectContaining({ path: 'store.path' }));
    // An explicit allow-list lets the same recipe through.
    const allowed = resolveRecipe(path.join(dir, 'abs.yaml'), { policy: { workspace: dir, allow: [outside] } });
    expect(allowed.task_files).toEqual([path.join(outside, 'tasks.jsonl')]);
  });

  it("names bsft's setting for another tool's key, however far the spelling", () => {
    const f = write('habits.yaml', GOOD.replace('lr: 1.0e-4,', 'learning_rate: 1.0e-4, lr: 1.0e-4, micro_batch_size: 2,') +
      'num_epochs: 3\nlora_r: 8\ngradient_accumulation_steps: 4\nmax_seq_length: 2048\nbase_model: Qwen/Qwen2.5-7B-Instruct\n');
    const byPath = Object.fromEntries(problemsOf(f).map((p) => [p.path, p.message]));
    expect(byPath).toEqual({
      'train.learning_rate': expect.stringMatching(/^unknown key \(did you mean "train\.lr"\?\)/),
      'train.micro_batch_size': expect.stringMatching(/did you mean "train\.batch_tokens"\?; bsft batches count tokens/),
      num_epochs: expect.stringContaining('did you mean "train.epochs"?'),
      lora_r: expect.stringContaining('did you mean "train.lora.r"?'),
      gradient_accumulation_steps: expect.stringContaining('did you mean "train.grad_accum"?'),
      max_seq_length: expect.stringContaining('did you mean "data.max_seq_len"?'),
      base_model: expect.stringContaining('did you mean "model.name_or_path"?'),
    });
    // every setting the table points to exists in the recipe schema
    for (const [key, { path: to }] of Object.entries(OTHER_TOOL_KEYS)) {
      const parts = to.split('.');
      expect(keysAt(parts.slice(0, -1)), `${key} -> ${to}`).toContain(parts.at(-1));
    }
  });

  it("a judge section: an unknown key lists its kind's keys, api_key names BSFT_JUDGE_API_KEY, credentials in base_url are refused", () => {
    const judge = (body: string) => problemsOf(write('judge.yaml', `${GOOD}judge: { kind: openai, model: m, ${body} }\n`));
    const unknown = judge('base_url: "http://127.0.0.1:8000/v1", temprature: 0');
    expect(unknown).toEqual([expect.objectContaining({ path: 'judge.temprature', message: expect.stringMatching(/allowed: kind, base_url, model, max_concurrency, timeout_s, max_retries, prompt_version, also_token_runs$/) })]);
    const key = judge('base_url: "http://127.0.0.1:8000/v1", api_key: sk-abc');
    expect(key).toEqual([expect.objectContaining({ path: 'judge.api_key', message: expect.stringContaining('set BSFT_JUDGE_API_KEY') })]);
    const inUrl = judge('base_url: "http://user:sk-abc123@judge.example.org/v1"');
    expect(inUrl).toEqual([expect.objectContaining({ path: 'judge.base_url', message: expect.stringContaining('holds credentials in the URL') })]);
  });

  it('refuses secrets in recipes', () => {
    const p = problemsOf(write('secret.yaml', `${GOOD}store: { kind: hub, repo: me/x, token: hf_abcdefghijklmnopqrstuvwxyz0123 }\n`));
    expect(p.map((x) => x.path)).toEqual(expect.arrayContaining(['store.token']));
    expect(p.every((x) => x.message.includes('secrets never live in recipes'))).toBe(true);
    expect(p.some((x) => x.message.includes('HF_TOKEN'))).toBe(true);
  });
});

describe('broken recipes through the CLI: exit 2, every problem listed, no stack trace', () => {
  const cases: [string, () => string, RegExp][] = [
    ['wrong types', () => write('b-types.yaml', GOOD.replace('lr: 1.0e-4', 'lr: "fast"').replace('batch_tokens: 8192', 'batch_tokens: [1]')), /train\.lr: expected a number[\s\S]*train\.batch_tokens: expected a number/],
    ['unknown keys', () => write('b-unknown.yaml', `${GOOD}modle: {}\n`), /modle: unknown key \(did you mean "model"\?\)/],
    ['yaml syntax', () => write('b-syntax.yaml', 'name: t\nmodel: [unclosed\n  x: : y\n'), /b-syntax\.yaml:\d+ YAML syntax/],
    ['empty file', () => write('b-empty.yaml', ''), /recipe is empty/],
    ['not a mapping', () => write('b-list.yaml', '- a\n- b\n'), /expected a mapping of sections/],
    ['duplicate key', () => write('b-dup.yaml', `${GOOD}name: again\n`), /YAML syntax.*unique|YAML syntax.*[Dd]uplicate|Map keys must be unique/],
    ['alias bomb', () => write('b-bomb.yaml', ['a: &a [x, x, x, x, x, x, x, x, x]', 'b: &b [*a, *a, *a, *a, *a, *a, *a, *a, *a]', 'c: &c [*b, *b, *b, *b, *b, *b, *b, *b, *b]', 'd: &d [*c, *c, *c, *c, *c, *c, *c, *c, *c]', 'e: &e [*d, *d, *d, *d, *d, *d, *d, *d, *d]', 'f: [*e, *e, *e, *e, *e, *e, *e, *e, *e]'].join('\n')), /aliases expand too far/],
    ['50 MB file', () => write('b-huge.yaml', `name: t\nx: "${'a'.repeat(50 * 1024 * 1024)}"\n`), /limited to 1 MiB/],
    ['extends cycle', () => { write('b-c1.yaml', 'extends: b-c2.yaml\n'); return write('b-c2.yaml', 'extends: b-c1.yaml\n'); }, /extends cycle/],
    ['path escape', () => write('b-esc.yaml', GOOD.replace('./model', '../../../../etc')), /model\.name_or_path: path "..\/..\/..\/..\/etc" leaves the workspace/],
  ];
  for (const [name, make, pattern] of cases) {
    it(name, async () => {
      const file = make();
      const started = Date.now();
      const res = await bsft(['validate', file], { cwd: dir });
      expect(Date.now() - started).toBeLessThan(10_000);
      expect(res.code).toBe(2);
      expect(res.stdout).toMatch(pattern);
      expect(`${res.stdout}${res.stderr}`).not.toMatch(/\n\s+at .*\(.*:\d+:\d+\)/);
    });
  }

  it('show and run report invalid recipes with exit 2 on stderr', async () => {
    const file = path.join(dir, 'b-types.yaml');
    for (const cmd of ['show', 'run']) {
      const res = await bsft([cmd, file], { cwd: dir });
      expect(res.code).toBe(2);
      expect(res.stderr).toMatch(/invalid recipe, \d+ problem\(s\):\n {2}b-types\.yaml:\d+ train\.lr/);
    }
  });

});
