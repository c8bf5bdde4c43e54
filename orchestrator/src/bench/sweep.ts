/**
 * npm run bench:sweep — needs Redis (REDIS_URL, default 127.0.0.1:6379).
 * A 10 × 10 grid (100 points) of the smoke recipe through the CLI, as a user runs it:
 *  1. `bsft sweep ... --yes`: every point resolved and checked, then submitted (target: seconds), beside the shell
 *     loop a user writes without sweeps (one `bsft submit` process per point; 10 timed, scaled to 100 and labelled so).
 *  2. `bsft status --sweep NAME`: the 100 points listed with their values and runs' rows, beside `bsft status --limit 100`
 *     (the same runs without the sweep).
 *  3. `bsft report --sweep` at the paper's scale: 12 points x 14,000 validation predictions (and the best point's 14,000
 *     test predictions), 1,000 resamples each and a paired difference per point, beside `bsft report` of the same 12
 *     runs (scores and paired deltas against the first) — time and peak RSS.
 */
import { execFileSync } from 'node:child_process';
import { mkdirSync, mkdtempSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import path from 'node:path';
import { fileURLToPath } from 'node:url';
import { Redis } from 'ioredis';
import { redisUrl } from '../queue/connection.js';
import { redactUrl } from '../recipe/secrets.js';
import { compare } from '../score/report.js';
import { scoreRun } from '../score/run-scores.js';
import type { SweepRecord } from '../sweep/resolve-sweep.js';
import { sweepReport } from '../sweep/sweep-report.js';
import { Rng } from '../util/rng.js';

const ROOT = path.resolve(path.dirname(fileURLToPath(import.meta.url)), '..', '..');
const BSFT = path.join(ROOT, 'bin', 'bsft.js');
const LR = ['1e-4', '2e-4', '3e-4', '5e-4', '1e-3', '2e-3', '3e-3', '5e-3', '1e-2', '2e-2'];
const STEPS = ['100', '150', '200', '250', '300', '350', '400', '450', '500', '600'];

const prefix = `bench-sweep-${process.pid}`;
const dir = mkdtempSync(path.join(tmpdir(), 'bsft-bench-sweep-'));
const env = { ...process.env, BSFT_QUEUE_PREFIX: prefix, BSFT_LOG_LEVEL: 'warn' };
const base = ['recipes/smoke.yaml', '--allow', dir, '--set', `store.path=${dir}`];

function timed(args: string[]): { s: number; out: string } {
  const t0 = performance.now();
  const out = execFileSync(process.execPath, [BSFT, ...args], { cwd: ROOT, env, encoding: 'utf8', maxBuffer: 64 << 20 });
  return { s: (performance.now() - t0) / 1000, out };
}

async function main(): Promise<void> {
  console.log(`bench:sweep — 100 points (train.lr × train.max_steps, 10 × 10) of recipes/smoke.yaml; Redis ${redactUrl(redisUrl())}, prefix ${prefix}`);
  const sweep = timed(['sweep', ...base, '--grid', `train.lr=${LR.join(',')}`, '--grid', `train.max_steps=${STEPS.join(',')}`, '--name', 'bench', '--yes']);
  const submitted = sweep.out.match(/ submitted$/gm)?.length ?? 0;
  if (submitted !== 100) throw new Error(`expected 100 points submitted, got ${submitted}:\n${sweep.out}`);
  // The baseline: what a user does without sweeps, one process per point (other values, so each is a new run).
  const loop = 10;
  const t0 = performance.now();
  for (let i = 0; i < loop; i++) timed(['submit', ...base, '--set', `train.lr=${LR[i]}`, '--set', 'train.max_steps=700']);
  const loopS = (performance.now() - t0) / 1000;
  const listed = timed(['status', '--sweep', 'bench']);
  const rows = listed.out.split('\n').filter((l) => / smoke-[0-9a-f]{8} +waiting/.test(l)).length;
  if (rows !== 100) throw new Error(`expected 100 listed points, got ${rows}`);
  const plain = timed(['status', '--limit', '100']);

  const line = (what: string, s: number, note = '') => console.log(`  ${what.padEnd(64)} ${s.toFixed(2).padStart(7)} s${note ? `  ${note}` : ''}`);
  console.log('\nsubmit');
  line('bsft sweep --yes (one process: 100 points resolved, checked, submitted)', sweep.s, `${(sweep.s * 10).toFixed(0)} ms a point`);
  line(`baseline: a shell loop of bsft submit (${loop} timed, x10 for 100)`, loopS * (100 / loop), `${((loopS / loop) * 1000).toFixed(0)} ms a point (SCALED from ${loop})`);
  console.log('list');
  line('bsft status --sweep bench (100 points with values and runs)', listed.s);
  line('baseline: bsft status --limit 100 (the same runs, no sweep)', plain.s);

  const redis = new Redis(redisUrl());
  try {
    const keys = await redis.keys(`${prefix}:*`);
    for (let i = 0; i < keys.length; i += 500) await redis.del(...keys.slice(i, i + 500));
  } finally {
    redis.disconnect();
  }
}

/** 12 synthetic points, each a run folder with 14,000 validation and test tasks; accuracy varies with the point. */
function paperScaleSweep(): SweepRecord {
  const root = path.join(dir, 'paper-scale');
  const B = ['reactive', 'proactive', 'restraint'];
  const rng = new Rng(3);
  const points: SweepRecord['points'] = [];
  for (let p = 0; p < 12; p++) {
    const runId = `scale-${p.toString(16).padStart(8, '0')}`;
    const run = path.join(root, runId);
    mkdirSync(path.join(run, 'dataset'), { recursive: true });
    mkdirSync(path.join(run, 'predictions'), { recursive: true });
    writeFileSync(path.join(run, 'recipe.json'), JSON.stringify({
      name: 'scale', run_id: runId, model: { name_or_path: 'Qwen/Qwen2.5-7B-Instruct' }, data: { behaviors: Object.fromEntries(B.map((b) => [b, { token: `<|behavior:${b}|>`, description: b }])), categories: {}, conditioning: 'token' },
      train: { method: 'lora', seed: 1, lr: 1e-4 * (p + 1), schedule: 'cosine', max_steps: 1000 }, eval: { splits: ['val', 'test'], bootstrap: 1000 },
    }));
    const wrong = 0.05 + 0.02 * p;
    for (const split of ['val', 'test']) {
      const msg = [];
      const pred = [];
      for (let i = 0; i < 14_000; i++) {
        const behavior = B[i % 3]!;
        const said = rng.next() < wrong ? B[(i + 1) % 3]! : behavior;
        msg.push(JSON.stringify({ id: `${split}${i}`, case_id: `${split}c${i >> 3}`, category: `category_${i % 13}`, behavior, prompt: [{ role: 'user', content: `Question ${i}` }] }));
        pred.push(JSON.stringify({ id: `${split}${i}`, predicted_behavior: said, reply: `<|behavior:${said}|>Reply ${i}.` }));
      }
      writeFileSync(path.join(run, 'dataset', `${split}.messages.jsonl`), `${msg.join('\n')}\n`);
      writeFileSync(path.join(run, 'predictions', `${split}.jsonl`), `${pred.join('\n')}\n`);
    }
    points.push({ index: p + 1, values: { 'train.lr': 1e-4 * (p + 1), 'train.lora.r': [8, 16, 32][p % 3] }, set: [], run_id: runId });
  }
  return {
    format: 'bsft-sweep-v1', name: 'scale', recipe_file: path.join(ROOT, 'recipes', 'smoke.yaml'), set: [], allow: [], keys: ['train.lr', 'train.lora.r'],
    spec: { grid: [], ranges: [] }, rank_split: 'val', runs_dir: root, store: { kind: 'local' } as SweepRecord['store'], created_at: new Date().toISOString(), points,
  };
}

/** Runs `fn`, sampling the process's RSS every 20 ms: seconds and peak RSS in MiB. */
async function measure(fn: () => Promise<unknown>): Promise<{ s: number; peakMib: number }> {
  let peak = process.memoryUsage().rss;
  const timer = setInterval(() => { peak = Math.max(peak, process.memoryUsage().rss); }, 20);
  const t0 = performance.now();
  await fn();
  const s = (performance.now() - t0) / 1000;
  clearInterval(timer);
  return { s, peakMib: Math.max(peak, process.memoryUsage().rss) / 1024 / 1024 };
}

async function reportAtScale(): Promise<void> {
  const record = paperScaleSweep();
  const dirs = record.points.map((p) => path.join(record.runs_dir, p.run_id));
  const base = await measure(async () => {
    const scored = [];
    for (const d of dirs) scored.push(await scoreRun(d, 'val', { resamples: 1000, seed: 1 }));
    compare(scored, 1000, 1);
  });
  const ours = await measure(async () => {
    const r = await sweepReport(record, { resamples: 1000, seed: 1 });
    if (r.points[0]!.index !== 1 || !r.best?.test) throw new Error('the best point should be #1 (fewest wrong), with its test score');
  });
  console.log('report at the paper scale (12 points x 14,000 validation tasks, 1,000 resamples, a paired difference per point)');
  const line = (what: string, m: { s: number; peakMib: number }) => console.log(`  ${what.padEnd(64)} ${m.s.toFixed(2).padStart(7)} s  peak RSS ${m.peakMib.toFixed(0)} MiB`);
  line('bsft report --sweep (ranking, deltas vs best, effects, best point\'s test)', ours);
  line('baseline: bsft report of the same 12 runs (scores, deltas vs the first)', base);
}

main().then(reportAtScale).catch((e) => {
  console.error(e);
  process.exit(1);
});
