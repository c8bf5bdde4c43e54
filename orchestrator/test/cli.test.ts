import { mkdtempSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import path from 'node:path';
import { pathToFileURL } from 'node:url';
import { describe, expect, it } from 'vitest';
import { COMMANDS } from '../src/cli/commands.js';
import { bsft, FIXTURES, ROOT } from './helpers/cli.js';

describe('bsft CLI', () => {
  it('prints its version', async () => {
    const pkg = JSON.parse(readFileSync(path.join(ROOT, 'package.json'), 'utf8'));
    const res = await bsft(['--version']);
    expect(res.code).toBe(0);
    expect(res.stdout.trim()).toBe(pkg.version);
  });

  it('lists every command in --help', async () => {
    const res = await bsft(['--help']);
    expect(res.code).toBe(0);
    for (const c of COMMANDS) expect(res.stdout).toContain(`  ${c.name}`);
  });

  it('has --help on every command, with its usage and options', async () => {
    for (const c of COMMANDS) {
      const res = await bsft([...c.name.split(' '), '--help']);
      expect(res.code, c.name).toBe(0);
      expect(res.stdout).toContain(`usage: ${c.usage}`);
      for (const opt of Object.keys(c.options)) expect(res.stdout, `${c.name} --${opt}`).toContain(`--${opt}`);
    }
  });

  it('shows each default once, in --help, and uses it', async () => {
    const res = await bsft(['status', '--help']);
    expect(res.stdout).toMatch(/--limit <value> +number of runs to list \(default: 20\)/);
    expect((await bsft(['report', '--help'])).stdout).toMatch(/--bootstrap <value> +bootstrap resamples \(default: 1000\)/);
  });

  it('--help and validate load only what they need: never BullMQ, Bull Board, express or the tokenizer', async () => {
    const dir = mkdtempSync(path.join(tmpdir(), 'bsft-imports-'));
    for (const args of [['--help'], ['status', '--help'], ['validate', 'recipes/smoke.yaml', '--no-data']]) {
      const file = path.join(dir, `${args.join('_').replace(/[^\w]/g, '')}.txt`);
      const res = await bsft(args, { env: { RECORD_IMPORTS: file, NODE_OPTIONS: `--import ${pathToFileURL(path.join(FIXTURES, 'record-imports.mjs')).href}` } });
      expect(res.code, args.join(' ')).toBe(0);
      const loaded = readFileSync(file, 'utf8');
      expect(loaded, args.join(' ')).toContain('/dist/cli/main.js');
      for (const heavy of ['/node_modules/bullmq/', '/node_modules/@bull-board/', '/node_modules/express/', '/node_modules/@huggingface/tokenizers/', '/node_modules/ioredis/']) {
        expect(loaded, `${args.join(' ')} loads ${heavy}`).not.toContain(heavy);
      }
    }
  });

  it('takes ./bsft.yaml (what bsft init writes) when a recipe command is given none', async () => {
    const dir = mkdtempSync(path.join(tmpdir(), 'bsft-default-'));
    writeFileSync(path.join(dir, 'bsft.yaml'), `extends: ${path.join(ROOT, 'recipes', 'smoke.yaml')}\nname: from-bsft-yaml\n`);
    const res = await bsft(['show', '--json', '--allow', ROOT], { cwd: dir });
    expect(res.code, res.stderr).toBe(0);
    expect(JSON.parse(res.stdout).name).toBe('from-bsft-yaml');
    expect((await bsft(['show', '--help'], { cwd: dir })).stdout).toContain('./bsft.yaml is used when it exists');
  });

  it('validate --json: one result per recipe, problems with their paths', async () => {
    const dir = mkdtempSync(path.join(tmpdir(), 'bsft-json-'));
    writeFileSync(path.join(dir, 'bad.yaml'), `extends: ${path.join(ROOT, 'recipes', 'smoke.yaml')}\ntrain: { lr: fast }\n`);
    const res = await bsft(['validate', 'recipes/smoke.yaml', path.join(dir, 'bad.yaml'), '--no-data', '--json', '--allow', dir, '--allow', ROOT]);
    expect(res.code).toBe(2);
    const [ok, bad] = JSON.parse(res.stdout);
    expect(ok).toMatchObject({ file: 'recipes/smoke.yaml', ok: true, run_id: expect.stringMatching(/^smoke-/) });
    expect(bad).toMatchObject({ ok: false, problems: [expect.objectContaining({ path: 'train.lr', message: 'expected a number, got "fast"' })] });
  });

  it('exits 2 on usage errors', async () => {
    expect((await bsft([])).code).toBe(2);
    const unknown = await bsft(['frobnicate']);
    expect(unknown.code).toBe(2);
    expect(unknown.stderr).toContain('unknown command "frobnicate"');
    const badOpt = await bsft(['validate', '--frob', 'recipes/smoke.yaml']);
    expect(badOpt.code).toBe(2);
    expect(badOpt.stderr).toMatch(/Unknown option '--frob'/);
    const noArg = await bsft(['show']);
    expect(noArg.code).toBe(2);
    expect(noArg.stderr).toContain('usage: bsft show');
    const level = await bsft(['validate', '--log-level', 'loud', 'recipes/smoke.yaml']);
    expect(level.code).toBe(2);
  });

  it('init writes a starter recipe that validates, and refuses to overwrite', async () => {
    const dir = mkdtempSync(path.join(tmpdir(), 'bsft-init-'));
    const res = await bsft(['init', 'r.yaml', '--name', 'demo', '--model', `./models/qwen2.5-tiny`, '--tasks', 'data/*.jsonl'], { cwd: dir });
    expect(res.code).toBe(0);
    // Put it beside the bundled models and data so that its paths resolve.
    const text = readFileSync(path.join(dir, 'r.yaml'), 'utf8');
    expect(text).toContain('name: demo');
    const again = await bsft(['init', 'r.yaml'], { cwd: dir });
    expect(again.code).toBe(2);
    expect(again.stderr).toContain('--force');
    const { writeFileSync } = await import('node:fs');
    const target = path.join(ROOT, 'recipes', `.init-test-${process.pid}.yaml`);
    writeFileSync(target, text.replace('./models/qwen2.5-tiny', './models/qwen2.5-tiny\n  tokenizer: ./models/qwen2.5-tokenizer'));
    try {
      const v = await bsft(['validate', target]);
      expect(v.stdout).toContain('ok ');
      expect(v.code).toBe(0);
    } finally {
      (await import('node:fs')).rmSync(target);
    }
  });

  it('init --preset behaviorbench writes a starter with the 13 categories', async () => {
    const target = path.join(ROOT, 'recipes', `.init-bb-${process.pid}.yaml`);
    try {
      const res = await bsft(['init', target, '--preset', 'behaviorbench', '--model', './models/qwen2.5-tiny', '--tasks', 'data/behaviorbench-sample.jsonl']);
      expect(res.code, res.stderr).toBe(0);
      const shown = await bsft(['show', '--json', target, '--set', 'model.tokenizer=./models/qwen2.5-tokenizer']);
      expect(shown.code, shown.stderr).toBe(0);
      const categories = JSON.parse(shown.stdout).data.categories;
      expect(Object.keys(categories)).toHaveLength(13);
      expect(categories).toMatchObject({ risk_alert: 'proactive', lab_interpretation: 'reactive', social_exchange: 'restraint' });
      expect((await bsft(['init', target, '--force', '--preset', 'nope'])).stderr).toContain('unknown preset "nope" (behaviorbench)');
    } finally {
      rmSync(target, { force: true });
    }
  });

  it('show prints the resolved recipe with defaults and absolute paths', async () => {
    const res = await bsft(['show', '--json', 'recipes/smoke.yaml', '--set', 'train.lr=0.01']);
    expect(res.code).toBe(0);
    const r = JSON.parse(res.stdout);
    expect(r.train.lr).toBe(0.01);
    expect(r.run_id).toMatch(/^smoke-[0-9a-f]{8}$/);
    expect(r.task_files).toEqual([path.join(ROOT, 'recipes', 'data', 'behaviorbench-sample.jsonl')]);
    expect(path.isAbsolute(r.tokenizer)).toBe(true);
    expect(r.data.behaviors.proactive.token).toBe('<|behavior:proactive|>');
  });

  it('run writes JSON log lines to stderr when not on a TTY, and stops with a message at a step it cannot run', async () => {
    const runs = mkdtempSync(path.join(tmpdir(), 'bsft-runs-'));
    // A Python without the trainer's packages: the run must stop at the train step and say what to install.
    const res = await bsft(['run', 'recipes/smoke.yaml', '--allow', runs, '--set', `store.path=${runs}`, '--log-level', 'info'], { env: { BSFT_PYTHON: '/nonexistent/python3' } });
    const logs = res.stderr.split('\n').filter((l) => l.startsWith('{')).map((l) => JSON.parse(l));
    expect(logs.find((l) => l.msg === 'run started')).toMatchObject({ level: 30, run_id: expect.stringMatching(/^smoke-/) });
    expect(res.code).toBe(1);
    expect(res.stderr).toMatch(/stopped before step "train": the trainer's Python packages are missing for \/nonexistent\/python3: bsft_trainer, torch, numpy, transformers, peft, safetensors/);
    expect(res.stderr).toMatch(/Install them with:\n {2}python3 -m pip install -e ".*trainer-python"/);
  });
});
