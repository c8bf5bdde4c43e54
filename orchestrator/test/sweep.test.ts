import { existsSync, mkdtempSync, readdirSync, readFileSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import path from 'node:path';
import { Redis } from 'ioredis';
import { pathToFileURL } from 'node:url';
import { parse as parseYaml } from 'yaml';
import { describe, expect, it } from 'vitest';
import { countPoints, expandPoints, yamlValue, type SweepSpec } from '../src/sweep/points.js';
import { specFromOptions, splitTopLevel, SweepError } from '../src/sweep/spec.js';
import { CHROMIUM, openPage } from './helpers/browser.js';
import { bsft, FIXTURES } from './helpers/cli.js';
import { torchPython } from './helpers/python.js';
import { queueEnv, REDIS_URL, startWorkerProc, stop, testRecipeArgs, waitForRun, withRunQueues } from './helpers/queue.js';
import { limit } from './helpers/time-scale.js';
import { sampleTasks, studyRun } from './helpers/study-runs.js';
import { sweepReport, formatSweepReport } from '../src/sweep/sweep-report.js';
import type { SweepRecord } from '../src/sweep/resolve-sweep.js';

const py = torchPython();
const TOY = path.join(FIXTURES, 'recipes', 'toy-run.yaml');

describe('the points of a sweep', () => {
  it('a grid is every combination, the first key outermost, in the order written', () => {
    const spec: SweepSpec = { grid: [['train.lr', [1e-5, 2e-5, 5e-5]], ['train.lora.r', [8, 16]]], ranges: [] };
    const { points } = expandPoints(spec);
    expect(countPoints(spec)).toBe(6);
    expect(points.map((p) => [p.index, p.values['train.lr'], p.values['train.lora.r']])).toEqual([
      [1, 1e-5, 8], [2, 1e-5, 16], [3, 2e-5, 8], [4, 2e-5, 16], [5, 5e-5, 8], [6, 5e-5, 16],
    ]);
  });

  it('a random search is seeded, stays in its ranges (integers where both ends are), draws log ranges log-uniformly, and keeps a repeated point once', () => {
    const spec: SweepSpec = {
      grid: [['train.lora.r', [8, 16, 32]]],
      ranges: [['train.lr', { min: 1e-5, max: 1e-3, log: true, int: false }], ['train.warmup_steps', { min: 0, max: 100, log: false, int: true }]],
      random: { n: 4000, seed: 7 },
    };
    const a = expandPoints(spec).points;
    expect(expandPoints(spec).points).toEqual(a);
    expect(expandPoints({ ...spec, random: { n: 4000, seed: 8 } }).points).not.toEqual(a);
    const lrs = a.map((p) => p.values['train.lr'] as number).sort((x, y) => x - y);
    expect(lrs[0]).toBeGreaterThanOrEqual(1e-5);
    expect(lrs.at(-1)).toBeLessThanOrEqual(1e-3);
    // log-uniform on [1e-5, 1e-3]: the median is near 1e-4 and a quarter lies below 10^-4.5 (uniform: the median is near 5e-4)
    expect(lrs[Math.floor(lrs.length / 2)]).toBeGreaterThan(0.8e-4);
    expect(lrs[Math.floor(lrs.length / 2)]).toBeLessThan(1.25e-4);
    expect(lrs.filter((x) => x < 10 ** -4.5).length / lrs.length).toBeCloseTo(0.25, 1);
    const warm = a.map((p) => p.values['train.warmup_steps'] as number);
    expect(warm.every((w) => Number.isInteger(w) && w >= 0 && w <= 100)).toBe(true);
    expect(new Set(warm).size).toBe(101); // both ends reached
    expect(new Set(a.map((p) => p.values['train.lora.r']))).toEqual(new Set([8, 16, 32]));
    // Only 3 distinct points exist: 10 draws keep 3, the others are dropped and counted.
    const small = expandPoints({ grid: [['train.lora.r', [8, 16, 32]]], ranges: [], random: { n: 10, seed: 1 } });
    expect(small.points.length).toBe(3);
    expect(small.dropped).toBe(7);
    expect(small.points.map((p) => p.index)).toEqual([1, 2, 3]);
  });

  it('a value is written back as YAML that reads as the same value', () => {
    for (const v of [1e-5, 2e-5, 3.162e-5, 0.001, 5e-3, 16, 0, -2, 1e7, 0.5, 'lora', 'full', 'true', 'null', 'a b', '', true, false, null, [1, 2], ['q_proj', 'v_proj'], { a: 1 }]) {
      expect(parseYaml(yamlValue(v)), `${JSON.stringify(v)} -> ${yamlValue(v)}`).toEqual(v);
    }
    expect(yamlValue(2e-5)).toBe('2e-5');
    expect(splitTopLevel('1e-5,[a,b],{x: 1, y: 2},"c,d"')).toEqual(['1e-5', '[a,b]', '{x: 1, y: 2}', '"c,d"']);
  });

  it('a bad command line lists every problem, with the option and a close recipe key', () => {
    let err: SweepError | undefined;
    try {
      specFromOptions('r.yaml', { grid: ['train.lrr=1e-5,2e-5', 'train.lora.r'], range: ['train.warmup_steps=10:5'], 'log-range': ['train.lr=0:1'], seed: '3' });
    } catch (e) {
      err = e as SweepError;
    }
    expect(err).toBeInstanceOf(SweepError);
    expect(err!.problems).toEqual(expect.arrayContaining([
      '--grid train.lora.r: expected key=value,value,...',
      '--range train.warmup_steps: MIN must be below MAX, got 10:5',
      '--log-range train.lr: a log range needs MIN > 0, got 0',
      '--seed is for a random search (--random N)',
      '--grid train.lrr: unknown recipe key "train.lrr" (did you mean train.lr?)',
    ]));
  });
});

/** Every key of a queue prefix in Redis (a refused sweep must leave none). */
async function prefixKeys(prefix: string): Promise<string[]> {
  const redis = new Redis(REDIS_URL);
  try {
    return await redis.keys(`${prefix}:*`);
  } finally {
    redis.disconnect();
  }
}

describe('bsft sweep refuses a sweep before anything is written or queued', () => {
  it('names the invalid point, the point that is the same run as another, and the size cap', async () => {
    const env = queueEnv();
    const { args, runs } = testRecipeArgs();
    const bad = await bsft(['sweep', ...args, '--grid', 'train.lr=1e-3,abc', '--grid', 'train.method=full,lora'], { env });
    expect(bad.code, bad.stderr).toBe(2);
    expect(bad.stderr).toContain('point 3 (train.lr=abc, train.method=full)');
    expect(bad.stderr).toContain('point 4 (train.lr=abc, train.method=lora)');
    expect(bad.stderr).toContain(`--set train.lr: expected a number, got "abc"`);
    expect(bad.stderr).not.toContain('point 1 ');
    // eval settings do not make another run: two points would be one
    const same = await bsft(['sweep', ...args, '--grid', 'eval.batch_size=4,8'], { env });
    expect(same.code).toBe(2);
    expect(same.stderr).toMatch(/point 2 \(eval\.batch_size=8\): the same run as point 1/);
    const big = await bsft(['sweep', ...args, '--grid', 'train.lr=1e-3,2e-3,3e-3,4e-3,5e-3', '--grid', 'train.max_steps=2,3,4,5,6'], { env });
    expect(big.code).toBe(2);
    expect(big.stderr).toContain('this sweep has 25 points, more than --max-points 20');
    expect(existsSync(path.join(runs, '_sweeps'))).toBe(false);
    expect(readdirSync(runs)).toEqual([]);
    expect(await prefixKeys(env.BSFT_QUEUE_PREFIX!)).toEqual([]);

    // --dry-run shows all 25 points, their memory plan and GPU hours, and writes nothing
    const dry = await bsft(['sweep', ...args, '--grid', 'train.lr=1e-3,2e-3,3e-3,4e-3,5e-3', '--grid', 'train.max_steps=2,3,4,5,6', '--dry-run'], { env });
    expect(dry.code, dry.stderr).toBe(0);
    expect(dry.stdout).toMatch(/sweep smoke-sweep-[0-9a-f]{8}: 25 points, grid train\.lr × train\.max_steps/);
    expect(dry.stdout.match(/^ +\d+ +0\.00\d +\d +smoke-[0-9a-f]{8}$/gm)?.length).toBe(25);
    expect(dry.stdout).toMatch(/total: [\d.]+ GPU hours/);
    expect(dry.stdout).toContain('GPU memory per recipe');
    expect(readdirSync(runs)).toEqual([]);
    expect(await prefixKeys(env.BSFT_QUEUE_PREFIX!)).toEqual([]);
  });

  it('reads a sweep file next to the recipe, and names the problems of a bad one with their paths', async () => {
    const dir = mkdtempSync(path.join(tmpdir(), 'bsft-sweepfile-'));
    const file = path.join(dir, 'lr.yaml');
    writeFileSync(file, `sweep:\n  recipe: ${path.join(FIXTURES, 'recipes', 'toy-run.yaml')}\n  name: lr\n  set: { store.path: ${dir} }\n  random: { n: 3, seed: 5 }\n  grid: { train.max_steps: [2, 3] }\n  ranges:\n    train.lr: { min: 1.0e-4, max: 1.0e-2, log: true }\n`);
    const dry = await bsft(['sweep', file, '--allow', dir, '--dry-run'], { env: queueEnv() });
    expect(dry.code, dry.stderr).toBe(0);
    expect(dry.stdout).toContain('sweep lr: 3 random points of train.max_steps, train.lr (seed 5)');
    expect(dry.stdout.match(/^ +[123] +[23] +[\d.e-]+ +toy-run-[0-9a-f]{8}$/gm)?.length).toBe(3);
    writeFileSync(file, `sweep:\n  recipe: nowhere.yaml\n  grid: { train.lr: [] , train.epochs: 3 }\n  extra: 1\n`);
    const bad = await bsft(['sweep', file, '--dry-run'], { env: queueEnv() });
    expect(bad.code).toBe(2);
    expect(bad.stderr).toContain(`${file} sweep.grid.train.lr: list at least one value`);
    expect(bad.stderr).toContain(`${file} sweep.grid.train.epochs:`);
    expect(bad.stderr).toMatch(/sweep: Unrecognized key: "extra"/);
    const mixed = await bsft(['sweep', file, '--grid', 'train.lr=1', '--dry-run'], { env: queueEnv() });
    expect(mixed.stderr).toContain('is a sweep file: its points come from the file, not from --grid');
  });
});

/** Macro-F1 over the three behaviors, computed here from the files (a class without gold or predictions: F1 0). */
function macroF1(runDir: string, split: string): number {
  const read = (f: string) => readFileSync(f, 'utf8').trim().split('\n').map((l) => JSON.parse(l));
  const gold = new Map(read(path.join(runDir, 'dataset', `${split}.messages.jsonl`)).map((g) => [g.id, g.behavior as string]));
  const pred = new Map(read(path.join(runDir, 'predictions', `${split}.jsonl`)).map((p) => [p.id, p.predicted_behavior as string]));
  const f1s = ['reactive', 'proactive', 'restraint'].map((b) => {
    let tp = 0, fp = 0, fn = 0;
    for (const [id, g] of gold) {
      const p = pred.get(id);
      if (p === b && g === b) tp++;
      else if (p === b) fp++;
      else if (g === b) fn++;
    }
    return tp === 0 ? 0 : (2 * tp) / (2 * tp + fp + fn);
  });
  return f1s.reduce((a, b) => a + b, 0) / 3;
}

describe('a sweep through the queue (fixture trainers)', () => {
  it('queues a 2×2 sweep with one priority, lists it, ranks its points on validation as computed here, a second submit reuses every point, and rm --sweep removes it', async () => {
    const env = queueEnv();
    const { args, runs } = testRecipeArgs();
    const sweepArgs = ['sweep', ...args, '--grid', 'train.lr=1e-4,1e-3', '--grid', 'train.max_steps=4,6', '--name', 'lr-steps', '--priority', '3'];
    const sub = await bsft(sweepArgs, { env });
    expect(sub.code, sub.stderr).toBe(0);
    expect(sub.stdout).toContain('sweep lr-steps: 4 points, grid train.lr × train.max_steps');
    expect(sub.stdout.match(/ submitted$/gm)?.length).toBe(4);
    const record = JSON.parse(readFileSync(path.join(runs, '_sweeps', 'lr-steps.json'), 'utf8'));
    const ids: string[] = record.points.map((p: { run_id: string }) => p.run_id);
    expect(new Set(ids).size).toBe(4);
    await withRunQueues(env, async (q) => {
      for (const id of ids) {
        const job = await q.queues.train.getJob(id);
        expect(job!.opts.priority).toBe(3);
        expect(job!.data.recipe.eval.splits).toEqual(['val', 'test']); // each point predicts validation for the comparison
      }
    });
    const listed = await bsft(['status', '--sweep', 'lr-steps'], { env });
    expect(listed.stdout).toContain('sweep lr-steps: 4 points, grid train.lr × train.max_steps; 4 waiting');
    const worker = startWorkerProc('lr-sensitive', env);
    try {
      await worker.ready;
      for (const id of ids) expect((await waitForRun(env, id, (v) => ['completed', 'failed'].includes(v.state), 120_000)).state).toBe('completed');
    } finally {
      await stop(worker);
    }
    const status = await bsft(['status'], { env });
    expect(status.stdout).toMatch(/lr-steps +4 +4 completed/);
    const again = await bsft(sweepArgs, { env });
    expect(again.code).toBe(0);
    expect(again.stdout.match(/already submitted \(completed\)$/gm)?.length).toBe(4);

    const out = path.join(runs, 'sweep-report');
    const rep = await bsft(['report', '--sweep', 'lr-steps', '--runs-dir', runs, '--out', out, '--bootstrap', '200'], { env });
    expect(rep.code, rep.stderr).toBe(0);
    const report = JSON.parse(readFileSync(path.join(out, 'report.json'), 'utf8'));
    // The ranking and the figures, against macro-F1 computed here from each point's validation files.
    const expected = record.points.map((p: { index: number; run_id: string }) => ({ index: p.index, f1: macroF1(path.join(runs, p.run_id), 'val') }))
      .sort((a: { f1: number; index: number }, b: { f1: number; index: number }) => b.f1 - a.f1 || a.index - b.index);
    expect(report.points.map((p: { index: number }) => p.index)).toEqual(expected.map((e: { index: number }) => e.index));
    for (const [i, p] of report.points.entries()) expect(p.val.macro_f1.value).toBeCloseTo(expected[i].f1, 12);
    expect(expected[0].f1).toBeGreaterThan(expected[3].f1 + 0.05); // lr 1e-3 is the fixture's best: the ranking is not a tie
    expect(report.same_tasks).toBe(true);
    const best = report.points[0];
    expect(best.values['train.lr']).toBe(1e-3);
    expect(report.best.index).toBe(best.index);
    expect(report.best.command).toBe(`bsft run recipes/smoke.yaml --allow ${runs} ${args.slice(3).join(' ')} --set train.lr=0.001 --set train.max_steps=${best.values['train.max_steps']}`);
    expect(report.best.test.macro_f1.value).toBeCloseTo(macroF1(path.join(runs, best.run_id), 'test'), 12);
    // Test figures appear for the chosen point only.
    expect(report.points.every((p: Record<string, unknown>) => !('test' in p))).toBe(true);
    const lrEffect = report.effects.find((e: { key: string }) => e.key === 'train.lr');
    const mean = (lr: number) => { const xs = record.points.filter((p: { values: Record<string, number> }) => p.values['train.lr'] === lr).map((p: { run_id: string }) => macroF1(path.join(runs, p.run_id), 'val')); return xs.reduce((a: number, b: number) => a + b, 0) / xs.length; };
    expect(lrEffect.values.map((v: { text: string; mean_macro_f1: number }) => [v.text, v.mean_macro_f1])).toEqual([['1e-4', expect.closeTo(mean(1e-4), 12)], ['0.001', expect.closeTo(mean(1e-3), 12)]]);
    expect(rep.stdout).toContain(`best point: #${best.index} train.lr=0.001, train.max_steps=${best.values['train.max_steps']}`);
    expect(rep.stdout).toMatch(/test split \(this point only\): macro-F1 /);

    const local = await bsft(['runs', '--dir', runs, '--sweep', 'lr-steps'], { env });
    expect(local.stdout).toContain('sweep lr-steps: 4 points');
    expect(local.stdout.match(/scored/g)?.length).toBe(4);

    // bsft rm --sweep: every point's folder and queued jobs, then the record (here and in Redis)
    const removed = await bsft(['rm', '--sweep', 'lr-steps', '--dir', runs, '--yes'], { env });
    expect(removed.code, removed.stdout + removed.stderr).toBe(0);
    expect(removed.stdout).toContain('removed 4 run folder(s)');
    expect(removed.stdout).toContain('sweep lr-steps: record removed');
    for (const id of ids) expect(existsSync(path.join(runs, id))).toBe(false);
    expect(existsSync(path.join(runs, '_sweeps', 'lr-steps.json'))).toBe(false);
    expect((await bsft(['status', '--sweep', 'lr-steps'], { env })).stderr).toContain('no sweep lr-steps in the queue');
    expect(await withRunQueues(env, async (q) => Promise.all(ids.map((id) => q.view(id))))).toEqual([undefined, undefined, undefined, undefined]);
  });

  it('bsft cancel --sweep stops every point: the one training and the ones waiting; bsft retry --sweep puts them back', async () => {
    const env = queueEnv({ FIXTURE_STEP_MS: '400' });
    const { args } = testRecipeArgs(['train.max_steps=200']);
    const sub = await bsft(['sweep', ...args, '--grid', 'train.lr=1e-3,2e-3,3e-3', '--name', 'to-cancel'], { env });
    expect(sub.code, sub.stderr).toBe(0);
    const worker = startWorkerProc('ok', env);
    try {
      await worker.ready;
      const ids = JSON.parse((await bsft(['status', '--sweep', 'to-cancel', '--json'], { env })).stdout).sweep.points.map((p: { run_id: string }) => p.run_id);
      await Promise.any(ids.map((id: string) => waitForRun(env, id, (v) => v.state === 'training' && (v.progress?.done ?? 0) >= 1, 60_000)));
      const cancelled = await bsft(['cancel', '--sweep', 'to-cancel'], { env });
      expect(cancelled.code, cancelled.stdout + cancelled.stderr).toBe(0);
      expect(cancelled.stdout).toContain('cancelling 3 point(s)');
      for (const id of ids) expect((await waitForRun(env, id, () => true)).state).toBe('cancelled');
      const listed = await bsft(['status', '--sweep', 'to-cancel'], { env });
      expect(listed.stdout).toContain('; 3 cancelled');
      // and resumed as a whole: every point back, the one that trained from its checkpoint
      const retried = await bsft(['retry', '--sweep', 'to-cancel'], { env });
      expect(retried.code, retried.stderr).toBe(0);
      expect(retried.stdout).toContain('retrying 3 point(s)');
      for (const id of ids) await waitForRun(env, id, (v) => v.state !== 'cancelled' && v.state !== 'failed', 30_000);
    } finally {
      await stop(worker);
    }
  }, limit(120_000));
});

describe('a sweep when its worker dies', () => {
  it('a worker killed with SIGKILL mid-sweep loses nothing: another finishes every point, resuming the one it held', async () => {
    const env = queueEnv({ FIXTURE_STEP_MS: '150' });
    const { args } = testRecipeArgs(['train.max_steps=12', 'train.checkpoint_every=3']);
    const sub = await bsft(['sweep', ...args, '--grid', 'train.lr=1e-3,2e-3,3e-3', '--name', 'lost'], { env });
    expect(sub.code, sub.stderr).toBe(0);
    const ids: string[] = JSON.parse((await bsft(['status', '--sweep', 'lost', '--json'], { env })).stdout).sweep.points.map((p: { run_id: string }) => p.run_id);
    const first = startWorkerProc('ok', env);
    let held: string;
    try {
      await first.ready;
      held = await Promise.any(ids.map((id) => waitForRun(env, id, (v) => v.state === 'training' && (v.progress?.done ?? 0) >= 5, 60_000).then(() => id)));
    } finally {
      await stop(first, 'SIGKILL');
    }
    const second = startWorkerProc('ok', env);
    try {
      await second.ready;
      for (const id of ids) expect((await waitForRun(env, id, (v) => ['completed', 'failed'].includes(v.state), 120_000)).state, id).toBe('completed');
    } finally {
      await stop(second);
    }
    const listed = await bsft(['status', '--sweep', 'lost'], { env });
    expect(listed.stdout).toContain('; 3 completed');
    // The held point went on from its checkpoint (step 3 or later), not from the start.
    const logs = await bsft(['logs', held!], { env });
    const resumed = [...logs.stdout.matchAll(/"resumed_from_step":(\d+)/g)].map((m) => Number(m[1]));
    expect(resumed[0]).toBe(0);
    expect(resumed.at(-1)).toBeGreaterThanOrEqual(3);
  }, limit(180_000));
});

describe.skipIf(!py)('a 2×2 sweep of the toy model with the real trainer', () => {
  it('through a worker, then locally with bsft run: every point is reused (no step runs again) and the points are ranked', async () => {
    const runs = mkdtempSync(path.join(tmpdir(), 'bsft-sweep-toy-'));
    const env = { ...queueEnv(), BSFT_PYTHON: py! };
    const args = [TOY, '--allow', runs, '--set', `store.path=${runs}`, '--grid', 'train.lr=1e-3,3e-3', '--grid', 'train.max_steps=2,3', '--name', 'toy'];
    const sub = await bsft(['sweep', ...args], { env });
    expect(sub.code, sub.stderr).toBe(0);
    const ids: string[] = JSON.parse(readFileSync(path.join(runs, '_sweeps', 'toy.json'), 'utf8')).points.map((p: { run_id: string }) => p.run_id);
    const worker = startWorkerProc('', env);
    try {
      await worker.ready;
      for (const id of ids) expect((await waitForRun(env, id, (v) => ['completed', 'failed'].includes(v.state), 240_000)).state).toBe('completed');
    } finally {
      await stop(worker, 'SIGKILL');
    }
    const trained = Object.fromEntries(ids.map((id) => [id, readFileSync(path.join(runs, id, 'final', 'COMPLETE'), 'utf8')]));
    const local = await bsft(['run', ...args], { env });
    expect(local.code, local.stderr).toBe(0);
    expect(local.stdout).toContain('sweep toy: 4 points, grid train.lr × train.max_steps, one after another in this process');
    for (const id of ids) {
      const steps = JSON.parse(readFileSync(path.join(runs, id, 'run.json'), 'utf8')).steps.map((s: { state: string }) => s.state);
      expect(steps, id).toEqual(['skipped', 'skipped', 'skipped', 'skipped', 'skipped']);
      expect(readFileSync(path.join(runs, id, 'final', 'COMPLETE'), 'utf8')).toBe(trained[id]);
    }
    expect(local.stderr).not.toContain('"event":"step"');
    expect(local.stdout).toMatch(/best point: #\d train\.lr=0\.00\d, train\.max_steps=\d \(toy-run-[0-9a-f]{8}\)/);
    expect(local.stdout.match(/^\d +\d +0\.00\d +\d +[\d.]+ \[/gm)?.length).toBe(4);
  }, limit(480_000));
});

describe.skipIf(!CHROMIUM)('a sweep\'s report.html in Chromium', () => {
  it('draws one chart per swept key with a mark per scored point, the best as a square, and the commands', async () => {
    const env = queueEnv();
    const { args, runs } = testRecipeArgs();
    const worker = startWorkerProc('lr-sensitive', env);
    try {
      const sub = await bsft(['sweep', ...args, '--grid', 'train.lr=1e-5,1e-4,1e-3', '--grid', 'data.conditioning=token,none', '--name', 'html'], { env });
      expect(sub.code, sub.stderr).toBe(0);
      await worker.ready;
      const ids: string[] = JSON.parse(readFileSync(path.join(runs, '_sweeps', 'html.json'), 'utf8')).points.map((p: { run_id: string }) => p.run_id);
      for (const id of ids) expect((await waitForRun(env, id, (v) => ['completed', 'failed'].includes(v.state), 120_000)).state).toBe('completed');
    } finally {
      await stop(worker);
    }
    const out = path.join(runs, 'rep');
    const rep = await bsft(['report', '--sweep', 'html', '--runs-dir', runs, '--out', out, '--bootstrap', '100'], { env });
    expect(rep.code, rep.stderr).toBe(0);
    const { page, errors, close } = await openPage(pathToFileURL(path.join(out, 'report.html')).href);
    try {
      const charts = await page.$$eval('svg[data-chart="sweep-effect"]', (svgs) => svgs.map((s) => ({
        key: s.getAttribute('data-key'), marks: s.querySelectorAll('.mark').length, best: s.querySelectorAll('.mark.best').length,
        ticks: [...s.querySelectorAll('.tick')].map((t) => t.textContent), box: s.getBoundingClientRect().width,
        inside: [...s.querySelectorAll('.mark')].every((m) => { const b = (m as SVGGraphicsElement).getBBox(); return b.x >= 0 && b.y >= 0 && b.x + b.width <= 440 && b.y + b.height <= 250; }),
      })));
      // The "none" points have no behavior token: the fixture's replies carry no label, so they score 0, still marked.
      expect(charts).toEqual([
        { key: 'train.lr', marks: 6, best: 1, ticks: ['1e-5', '1e-4', '0.001'], box: 440, inside: true },
        { key: 'data.conditioning', marks: 6, best: 1, ticks: ['token', 'none'], box: 440, inside: true },
      ]);
      const bestTitle = await page.$eval('svg[data-key="train.lr"] .mark.best title', (t) => t.textContent);
      expect(bestTitle).toMatch(/^point \d \(train\.lr=0\.001, data\.conditioning=token\): val macro-F1 100\.0 \[100\.0, 100\.0\], best$/);
      expect(await page.$eval('#best', (p) => p.textContent)).toContain('train.lr=0.001, data.conditioning=token');
      expect(await page.locator('text=Train it again').count()).toBe(1);
      expect(errors).toEqual([]);
    } finally {
      await close();
    }
  });
});

describe('a sweep whose points were scored on different validation tasks', () => {
  it('ranks them, pairs none with the best, and says so', async () => {
    const root = mkdtempSync(path.join(tmpdir(), 'bsft-sweep-data-'));
    const points: SweepRecord['points'] = [];
    for (const [i, from] of [0, 10].entries()) {
      const dir = studyRun(root, `p${i}-0123abc${i}`, 'token', 'lora', sampleTasks(60 + from).slice(from), () => 'reply');
      for (const f of ['dataset/test.messages.jsonl', 'predictions/test.jsonl']) writeFileSync(path.join(dir, f.replace('test', 'val')), readFileSync(path.join(dir, f)));
      points.push({ index: i + 1, values: { 'data.seed': i + 1 }, set: [`data.seed=${i + 1}`], run_id: path.basename(dir) });
    }
    const record = { format: 'bsft-sweep-v1', name: 'data', recipe_file: path.join(root, 'r.yaml'), set: [], allow: [], keys: ['data.seed'], spec: { grid: [['data.seed', [1, 2]]], ranges: [] },
      rank_split: 'val', runs_dir: root, store: { kind: 'local' }, created_at: new Date().toISOString(), points } as unknown as SweepRecord;
    const report = await sweepReport(record, { resamples: 20, seed: 1 });
    expect(report.same_tasks).toBe(false);
    expect(report.points.map((p) => p.delta_vs_best)).toEqual([null, null]);
    expect(formatSweepReport(report).join('\n')).toContain('the points were scored on different validation tasks');
  });
});
