import { execFileSync } from 'node:child_process';
import { chmodSync, copyFileSync, mkdirSync, mkdtempSync, readdirSync, readFileSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import path from 'node:path';
import { execa } from 'execa';
import { parse } from 'yaml';
import { afterEach, describe, expect, it, onTestFinished } from 'vitest';
import { bsft, ROOT } from './helpers/cli.js';
import { FakeOpenAI, replyOf } from './helpers/fake-openai.js';
import { queueEnv, startWorkerProc, stop, type WorkerProc } from './helpers/queue.js';
import { limit } from './helpers/time-scale.js';

describe('worker image and compose file', () => {
  const compose = parse(readFileSync(path.join(ROOT, 'docker', 'compose.yml'), 'utf8'));

  it('runs Redis for a queue: AOF on, noeviction, a password; everything bound to localhost', () => {
    const cmd: string[] = compose.services.redis.command;
    const arg = (flag: string) => cmd[cmd.indexOf(flag) + 1];
    expect(arg('--appendonly')).toBe('yes');
    expect(arg('--maxmemory-policy')).toBe('noeviction');
    expect(arg('--requirepass')).toMatch(/^\$\{REDIS_PASSWORD/);
    for (const [name, svc] of Object.entries<{ ports?: string[] }>(compose.services)) {
      for (const p of svc.ports ?? []) expect(p, name).toMatch(/^127\.0\.0\.1:/);
    }
  });

  it('reserves GPUs for workers, gives them a stop grace period, and keeps secrets out of the files', () => {
    const w = compose.services.worker;
    expect(w.deploy.resources.reservations.devices[0]).toMatchObject({ driver: 'nvidia', capabilities: ['gpu'] });
    expect(w.stop_grace_period).toBe('90s');
    expect(w.environment.HF_TOKEN).toBe('${HF_TOKEN:-}');
    const dockerfile = readFileSync(path.join(ROOT, 'docker', 'worker.Dockerfile'), 'utf8');
    expect(dockerfile).toMatch(/^USER bsft$/m);
    expect(dockerfile).toMatch(/^ENTRYPOINT \[.*"bsft", "worker"\]$/m);
    expect(dockerfile).toMatch(/^VOLUME \[".*huggingface"/m);
    expect(dockerfile).not.toMatch(/^(ENV|ARG)\s.*(HF_TOKEN|REDIS_URL|PASSWORD)/m);
  });

  it("pins the worker image's trainer packages to the floors the trainer suite passed with", () => {
    const norm = (name: string) => name.toLowerCase().replace(/_/g, '-');
    const pyproject = readFileSync(path.join(ROOT, 'trainer-python', 'pyproject.toml'), 'utf8');
    const floors = new Map([...pyproject.matchAll(/"([\w-]+)>=([\d.]+)"/g)].map((m) => [norm(m[1]!), m[2]!]));
    const dockerfile = readFileSync(path.join(ROOT, 'docker', 'worker.Dockerfile'), 'utf8');
    expect(dockerfile).toContain('pip install --no-cache-dir -r /opt/bsft/trainer-python/pins.txt');
    expect(dockerfile).not.toMatch(/==\d/); // no second set of pins
    const pins = [...readFileSync(path.join(ROOT, 'trainer-python', 'pins.txt'), 'utf8').matchAll(/^([\w-]+)==([\d.]+)$/gm)];
    expect(pins.map((m) => norm(m[1]!)).sort()).toEqual(['peft', 'safetensors', 'transformers']);
    for (const [, name, version] of pins) expect(`${version}.`, name).toMatch(new RegExp(`^${floors.get(norm(name!))!.replace(/\./g, '\\.')}\\.`));
  });
});

describe('scripts', () => {
  it('shellcheck passes on every script', () => {
    const scripts = readdirSync(path.join(ROOT, 'scripts')).filter((f) => f.endsWith('.sh')).map((f) => path.join('scripts', f));
    expect(scripts.length).toBeGreaterThanOrEqual(4);
    execFileSync('shellcheck', [...scripts, '.ci/run'], { cwd: ROOT, stdio: 'pipe' });
  });

  it('setup-worker.sh checks the driver first and plans an idempotent install with a systemd unit (dry run)', async () => {
    const noDriver = await execa('bash', ['scripts/setup-worker.sh', '--dry-run'], { cwd: ROOT, reject: false, env: { PATH: '/usr/bin:/bin' } });
    expect(noDriver.exitCode).toBe(1);
    expect(String(noDriver.stderr)).toContain('no working NVIDIA driver');
    const bin = mkdtempSync(path.join(tmpdir(), 'fake-nvidia-'));
    writeFileSync(path.join(bin, 'nvidia-smi'), '#!/bin/sh\necho "NVIDIA H200, 570.00, 143771 MiB"\n');
    chmodSync(path.join(bin, 'nvidia-smi'), 0o755);
    const res = await execa('bash', ['scripts/setup-worker.sh', '--dry-run', '--gpus', '0,1'], {
      cwd: ROOT, reject: false, env: { PATH: `${bin}:${process.env.PATH}`, BSFT_UNIT_DIR: mkdtempSync(path.join(tmpdir(), 'unit-')), BSFT_ENV_DIR: mkdtempSync(path.join(tmpdir(), 'env-')) },
    });
    expect(res.exitCode, String(res.stderr)).toBe(0);
    const out = String(res.stdout);
    for (const step of ['== NVIDIA driver', '== Node', '== Python venv with the trainer', '== systemd unit bsft-worker.service']) expect(out).toContain(step);
    expect(out).toContain('would write');
  });
});

describe('bsft reproduce', () => {
  const workers: WorkerProc[] = [];
  afterEach(async () => {
    await Promise.all(workers.splice(0).map((w) => stop(w, 'SIGKILL')));
  });

  it('refuses to run without --data or --sample (it would silently use the 630-task sample)', async () => {
    const res = await bsft(['reproduce', '--dry-run']);
    expect(res.code).toBe(2);
    expect(res.stderr).toContain("name the BehaviorBench task files with --data 'path/to/behaviorbench/*.jsonl', or pass --sample");
    const both = await bsft(['reproduce', '--dry-run', '--sample', '--data', 'x.jsonl']);
    expect(both.stderr).toContain('--data and --sample exclude each other');
  });

  it('--with-base adds the base model as it ships, zero-shot and instructed, predicting through its chat endpoint', async () => {
    const dir = mkdtempSync(path.join(tmpdir(), 'bsft-repro-base-'));
    const res = await bsft(['reproduce', '--dry-run', '--sample', '--allow', dir, '--set', `store.path=${dir}`, '--with-base', 'http://gpu-host:8000/v1', '--show-recipes']);
    expect(res.code, res.stderr).toBe(0);
    expect(res.stdout).toMatch(/^base-zero-shot-[0-9a-f]{8}\s+none\s+none\s+[\d,]+\s+0\s/m);
    expect(res.stdout).toMatch(/^base-instructed-[0-9a-f]{8}\s+none\s+instruction\s+[\d,]+\s+0\s/m);
    expect(res.stdout).toMatch(/^base-instructed-[0-9a-f]{8}\s+1\s+61\s.*endpoint http:\/\/gpu-host:8000\/v1/m);
    const shown = res.stdout.slice(res.stdout.indexOf('# base-instructed-'));
    expect(shown).toMatch(/engine: openai-chat\n\s+endpoint:\n\s+base_url: http:\/\/gpu-host:8000\/v1\n\s+model: Qwen\/Qwen2.5-7B-Instruct/);
    expect(readdirSync(dir)).toEqual([]);
    expect((await bsft(['reproduce', '--dry-run', '--sample', '--with-base', 'gpu-host'])).stderr).toContain('--with-base: the chat endpoint serving the base model');
  });

  it('--dry-run prints the four runs and GPU-hour estimates and writes nothing; resolved recipes on request; --data sets their task files', async () => {
    const dir = mkdtempSync(path.join(tmpdir(), 'bsft-repro-'));
    const res = await bsft(['reproduce', '--dry-run', '--sample', '--allow', dir, '--set', `store.path=${dir}`]);
    expect(res.code, res.stderr).toBe(0);
    for (const name of ['paper-behaviorsft-lora', 'paper-behaviorsft-full', 'paper-standard-sft', 'paper-instructed']) {
      expect(res.stdout).toMatch(new RegExp(`^${name}-[0-9a-f]{8}\\s+(lora|full)`, 'm'));
    }
    expect(res.stdout).not.toMatch(/^# paper-/m); // the plan, not 400 lines of YAML
    expect(res.stdout.split('\n').length).toBeLessThan(60);
    expect(res.stdout).toContain('nothing was written');
    expect(readdirSync(dir)).toEqual([]); // no datasets left under the runs folder
    const shown = await bsft(['reproduce', '--dry-run', '--sample', '--show-recipes', '--allow', dir, '--set', `store.path=${dir}`]);
    for (const name of ['paper-behaviorsft-lora', 'paper-behaviorsft-full', 'paper-standard-sft', 'paper-instructed']) {
      expect(shown.stdout).toMatch(new RegExp(`^# ${name}-[0-9a-f]{8} \\(`, 'm'));
    }
    expect(res.stdout).toMatch(/total: \d+\.\d\d GPU hours \(training \d+\.\d\d, prediction and judging \d+\.\d\d; scoring runs on a CPU\)/);
    expect(res.stdout).toContain('9,037 tok/s measured on one H200');
    // Prediction is counted: BehaviorSFT predicts the test split chosen and forced to each behavior (4 files of 61 tasks),
    // the baselines once; its rate is said to be an estimate.
    expect(res.stdout).toMatch(/^paper-behaviorsft-lora-[0-9a-f]{8}\s+4\s+244\s+[\d,]+\s+62,464\s+-\s+\d+\.\d\d\s+-$/m);
    expect(res.stdout).toMatch(/^paper-standard-sft-[0-9a-f]{8}\s+1\s+61\s+[\d,]+\s+15,616\s/m);
    // The shards' own prompts: the same conversations as the standard SFT's, chosen once and forced three times
    // (each forced prompt holds its behavior token).
    const promptTokens = (run: string) => Number(new RegExp(`^${run}-[0-9a-f]{8}\\s+\\d+\\s+\\d+\\s+([\\d,]+)`, 'm').exec(res.stdout)![1]!.replaceAll(',', ''));
    expect(promptTokens('paper-behaviorsft-lora')).toBe(4 * promptTokens('paper-standard-sft') + 3 * 61);
    expect(res.stdout).toContain('predict at 1,000 generated tok/s per GPU: an ESTIMATE, not measured here');
    const overridden = await bsft(['reproduce', '--dry-run', '--sample', '--allow', dir, '--set', `store.path=${dir}`, '--tokens-per-s', '1000', '--json']);
    const plan = JSON.parse(overridden.stdout);
    expect(plan.runs.map((r: Record<string, string>) => r['tok/s'])).toEqual(['1,000', '1,000', '1,000', '1,000']);
    expect(plan.recipes).toHaveLength(4);
    expect(plan.gpu_hours).toBeGreaterThan(0);
    expect(plan.gpu_hours).toBeCloseTo(plan.gpu_hours_train + plan.gpu_hours_predict, 1);
    expect(plan.predict_rate).toEqual({ tokens_per_s: 1000, measured: false, given: false });
    const fast = JSON.parse((await bsft(['reproduce', '--dry-run', '--sample', '--allow', dir, '--set', `store.path=${dir}`, '--predict-tokens-per-s', '100000', '--json'])).stdout);
    expect(fast.predict_rate).toEqual({ tokens_per_s: 100000, measured: false, given: true });
    expect(fast.gpu_hours_predict).toBeLessThan(plan.gpu_hours_predict);
    const data = path.join(dir, 'bench');
    mkdirSync(data);
    copyFileSync(path.join(ROOT, 'recipes', 'data', 'behaviorbench-sample.jsonl'), path.join(data, 'part-1.jsonl'));
    const given = await bsft(['reproduce', '--dry-run', '--show-recipes', '--data', `${data}/*.jsonl`, '--allow', dir, '--set', `store.path=${dir}`]);
    expect(given.code, given.stderr).toBe(0);
    expect(given.stdout).toContain(`- ${path.join(data, 'part-1.jsonl')}`);
  });

  it('submits the paper set, two workers with fixture trainers drain it, a judge labels the baselines and forced replies, and it ends with a report of the four runs', async () => {
    const env = queueEnv({ FIXTURE_STEP_MS: '20' });
    // The judge: an OpenAI-compatible endpoint whose answer is the first word of the reply (fixture replies start with their behavior).
    const judge = new FakeOpenAI();
    judge.answer = (user, constrained) => {
      const label = replyOf(user).split(' ')[0]!;
      return constrained ? JSON.stringify({ label }) : `label: ${label}`;
    };
    await judge.start();
    onTestFinished(() => judge.stop());
    const dir = mkdtempSync(path.join(tmpdir(), 'bsft-repro-'));
    const a = startWorkerProc('ok', env, ['--name', 'gpu-0']);
    const b = startWorkerProc('ok', env, ['--name', 'gpu-1']);
    workers.push(a, b);
    await Promise.all([a.ready, b.ready]);
    const res = await bsft(['reproduce', '--sample', '--allow', dir, '--set', `store.path=${dir}`, '--set', 'train.epochs=null', '--set', 'train.max_steps=4',
      '--set', 'train.checkpoint_every=2', '--set', 'eval.bootstrap=100', '--set', `judge={kind: openai, base_url: "${judge.url}", model: judge-model}`,
      '--out', path.join(dir, 'report')], { env });
    expect(res.code, res.stdout + res.stderr).toBe(0);
    expect(res.stdout.match(/^submitted: /gm)).toHaveLength(4);
    // LoRA and full fine-tuning train on the same data: one build, shared.
    expect(res.stdout).toMatch(/^dataset of paper-behaviorsft-lora-\S+: ([0-9a-f]{12}) \(built\)$/m);
    const lora = /^dataset of paper-behaviorsft-lora-\S+: ([0-9a-f]{12})/m.exec(res.stdout)![1];
    expect(res.stdout).toMatch(new RegExp(`^dataset of paper-behaviorsft-full-\\S+: ${lora} \\(shared build\\)$`, 'm'));
    const report = JSON.parse(readFileSync(path.join(dir, 'report', 'report.json'), 'utf8'));
    expect(report.runs.map((r: { label: string }) => r.label.split(' ')[0])).toEqual(['paper-behaviorsft-lora', 'paper-behaviorsft-full', 'paper-standard-sft', 'paper-instructed']);
    expect(report.deltas).toHaveLength(3);
    // The baselines' labels come from the judge, the token runs' from their tokens: one scale for all four.
    expect(report.runs.map((r: { label_source: { token: number; judge: number } }) => r.label_source.judge > 0)).toEqual([false, false, true, true]);
    // Every run's judge was also asked about the gold replies (this fake cannot read them: its validity shows it).
    expect(report.runs.every((r: { judge: { validity: { n: number; unparseable: number } } }) => r.judge.validity.n > 0 && r.judge.validity.unparseable === r.judge.validity.n)).toBe(true);
    expect(report.runs[0].steering).toMatchObject({ reactive: { accuracy: 1 }, proactive: { accuracy: 1 }, restraint: { accuracy: 1 } });
    expect(res.stdout).toMatch(/labels and the judge/);
    expect(res.stdout).toMatch(/paper: BehaviorSFT, Qwen2\.5-7B-Instruct \(published\) \(NOT COMPARABLE\)\s+97\.3/);
    expect(res.stdout).toMatch(/note: run paper-behaviorsft-lora-[0-9a-f]{8} used the bundled 630-task sample, not BehaviorBench: the paper row is not comparable/);
    expect(report.reference_not_comparable).toContain('bundled 630-task sample');
    const workersUsed = new Set([...a.stderr, ...b.stderr].filter((l) => l.includes('"train completed"')).map((l) => JSON.parse(l).worker));
    expect(workersUsed.size).toBe(2);
  }, limit(240_000));
});

describe('the bsft command after the quickstart', () => {
  it('scripts/link-bsft.sh puts a working bsft in npm\'s global bin and says how to reach it', () => {
    const prefix = mkdtempSync(path.join(tmpdir(), 'bsft-prefix-'));
    const env = { ...process.env, npm_config_prefix: prefix, NPM_CONFIG_PREFIX: prefix, PATH: `${path.join(prefix, 'bin')}:${process.env.PATH}` };
    const said = execFileSync('bash', [path.join(ROOT, 'scripts', 'link-bsft.sh')], { env, encoding: 'utf8' });
    expect(said).toContain(`bsft is on your PATH (${path.join(prefix, 'bin', 'bsft')}): try  bsft --help`);
    expect(execFileSync('bsft', ['--version'], { env, encoding: 'utf8' }).trim()).toMatch(/^\d+\.\d+\.\d+$/);
    // Not on PATH: the exact export line, and npx as the alternative.
    const elsewhere = execFileSync('bash', [path.join(ROOT, 'scripts', 'link-bsft.sh')], { env: { ...env, PATH: process.env.PATH! }, encoding: 'utf8' });
    expect(elsewhere).toContain(`export PATH="${path.join(prefix, 'bin')}:$PATH"`);
    expect(elsewhere).toContain('npx bsft --help');
    expect(readFileSync(path.join(ROOT, 'scripts', 'quickstart.sh'), 'utf8')).toContain('bash scripts/link-bsft.sh');
  }, limit(120_000));
});
