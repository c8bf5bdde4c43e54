import { spawn, type ChildProcess } from 'node:child_process';
import { mkdtempSync } from 'node:fs';
import { tmpdir } from 'node:os';
import path from 'node:path';
import { Redis } from 'ioredis';
import { RunQueues, type RunView } from '../../src/queue/runs.js';
import { bsft, BSFT, FIXTURES, ROOT } from './cli.js';
import { limit } from './time-scale.js';

export const REDIS_URL = process.env.REDIS_URL || 'redis://127.0.0.1:6379';

/** A fresh queue prefix and run folder per test: tests share one Redis without seeing each other's jobs. */
export function queueEnv(extra: Record<string, string> = {}): Record<string, string> {
  return {
    REDIS_URL,
    BSFT_QUEUE_PREFIX: `bsft-test-${process.pid}-${Math.random().toString(36).slice(2, 8)}`,
    BSFT_LOCK_MS: '2000',
    // Test runs live in the temp folder: workers must be allowed to touch it (as recipes are, with --allow).
    BSFT_ALLOW_PATHS: tmpdir(),
    BSFT_LOG_LEVEL: 'info',
    FIXTURE_STEP_MS: '30',
    ...extra,
  };
}

export interface WorkerProc {
  proc: ChildProcess;
  stderr: string[];
  ready: Promise<void>;
  exited: Promise<number | null>;
}

/** A `bsft worker` process with a fixture trainer (`trainer` names one), or with the real trainer (`trainer` ''). */
export function startWorkerProc(trainer: string, env: Record<string, string>, args: string[] = []): WorkerProc {
  const fixture = trainer ? ['--trainer', `${process.execPath} ${path.join(FIXTURES, 'trainers', `${trainer}.mjs`)}`] : [];
  const proc = spawn(process.execPath, [BSFT, 'worker', ...fixture, ...args], {
    cwd: ROOT,
    env: { ...process.env, ...env },
    stdio: ['ignore', 'pipe', 'pipe'],
  });
  const stderr: string[] = [];
  let buffer = '';
  const ready = new Promise<void>((resolve, reject) => {
    proc.stderr!.on('data', (d: Buffer) => {
      buffer += d.toString();
      const lines = buffer.split('\n');
      buffer = lines.pop()!;
      for (const l of lines) {
        stderr.push(l);
        if (l.includes('"worker ready"')) resolve();
      }
    });
    proc.once('exit', (code) => reject(new Error(`worker exited ${code} before ready:\n${stderr.join('\n')}`)));
  });
  ready.catch(() => undefined);
  const exited = new Promise<number | null>((resolve) => proc.once('exit', (code) => resolve(code)));
  return { proc, stderr, ready, exited };
}

export function testRecipeArgs(sets: string[] = []): { args: string[]; runs: string } {
  const runs = mkdtempSync(path.join(tmpdir(), 'bsft-q-'));
  return {
    runs,
    args: [
      'recipes/smoke.yaml', '--allow', runs,
      '--set', `store.path=${runs}`, '--set', 'train.max_steps=6', '--set', 'train.checkpoint_every=2',
      '--set', 'queue.attempts=2', '--set', 'queue.backoff_ms=200', '--set', 'eval.bootstrap=20',
      ...sets.flatMap((s) => ['--set', s]),
    ],
  };
}

export async function submitRun(env: Record<string, string>, sets: string[] = []): Promise<{ runId: string; runs: string }> {
  const { args, runs } = testRecipeArgs(sets);
  const res = await bsft(['submit', ...args], { env });
  const m = /submitted run (\S+)/.exec(res.stdout);
  if (!m) throw new Error(`submit failed (${res.code}): ${res.stdout}${res.stderr}`);
  return { runId: m[1]!, runs };
}

export async function withRunQueues<T>(env: Record<string, string>, fn: (q: RunQueues) => Promise<T>): Promise<T> {
  const old = process.env.BSFT_QUEUE_PREFIX;
  process.env.BSFT_QUEUE_PREFIX = env.BSFT_QUEUE_PREFIX;
  const redis = new Redis(env.REDIS_URL!, { maxRetriesPerRequest: 3 });
  const q = new RunQueues(redis);
  try {
    return await fn(q);
  } finally {
    await q.close();
    redis.disconnect();
    process.env.BSFT_QUEUE_PREFIX = old;
  }
}

export async function waitForRun(env: Record<string, string>, runId: string, pred: (v: RunView) => boolean, timeoutMs = 60_000): Promise<RunView> {
  const until = Date.now() + limit(timeoutMs);
  let last: RunView | undefined;
  while (Date.now() < until) {
    last = await withRunQueues(env, (q) => q.view(runId));
    if (last && pred(last)) return last;
    await new Promise((r) => setTimeout(r, 200));
  }
  throw new Error(`timed out waiting for run ${runId}; last view ${JSON.stringify(last)}`);
}

export function stop(w: WorkerProc, signal: NodeJS.Signals = 'SIGTERM'): Promise<number | null> {
  if (w.proc.exitCode === null && w.proc.signalCode === null) w.proc.kill(signal);
  return w.exited;
}

/** The train step a run's job data reports (0 before training, and while another stage runs). */
export const trainStep = (v: RunView): number => (v.progress?.stage === 'train' ? v.progress.done : 0);
