import { BsftError, DiskFullError } from '../errors.js';
import { buildDataset } from '../dataset/build.js';
import { createLogger, LOG_LEVELS, type LogLevel } from '../log.js';
import { scoreRun } from '../score/run-scores.js';
import { buildSummary, scoreSummaryOf, type ScoreSummary } from '../run/stage-summary.js';
import { readFileSync, rmSync } from 'node:fs';
import { monotonicMs, TRAINER_LAPSE_GRACE_MS as LAPSE_GRACE_MS } from './lease.js';
import type { OffloadHeartbeat, OffloadReply, OffloadTask } from './offload.js';

/** A child process of offload.ts: runs the tasks it is sent, one at a time, each answered by one reply. */
const level = (LOG_LEVELS as readonly string[]).includes(process.env.BSFT_LOG_LEVEL ?? '') ? (process.env.BSFT_LOG_LEVEL as LogLevel) : 'info';
const log = createLogger(level);

async function run(task: OffloadTask): Promise<unknown> {
  if (task.kind === 'build') return buildSummary(await buildDataset(task.recipe, task.outDir, log, task.cacheDir));
  const out: ScoreSummary = {};
  for (const split of task.splits) out[split] = scoreSummaryOf(task.runDir, split, await scoreRun(task.runDir, split));
  return out;
}

/** The task in hand's lease: the newest heartbeat's stamp, and the timer that checks it. */
let lease: { ms: number; stamp: number; timer: NodeJS.Timeout } | undefined;

/**
 * No heartbeat within the lease: the worker is frozen, cut off, or lost the job. Stop at once, publishing nothing:
 * this task's scratch folder and lock go (a build writes `<dir>.tmp-<pid>` and renames it only when done), and the
 * process exits 76 (lease lost, as a trainer's).
 */
function lapse(task: OffloadTask, silentMs: number): never {
  log.warn({ kind: task.kind, silent_s: +(silentMs / 1000).toFixed(1), lease_s: lease!.ms / 1000 },
    `no heartbeat from the worker for ${(silentMs / 1000).toFixed(1)} s (lease ${lease!.ms / 1000} s): stopping the ${task.kind} without publishing`);
  if (task.kind === 'build') {
    rmSync(`${task.outDir}.tmp-${process.pid}`, { recursive: true, force: true });
    try {
      if ((JSON.parse(readFileSync(`${task.outDir}.lock`, 'utf8')) as { pid: number }).pid === process.pid) rmSync(`${task.outDir}.lock`, { force: true });
    } catch {
      // no lock of ours
    }
  }
  process.exit(76);
}

process.on('disconnect', () => process.exit(1)); // the worker is gone
process.on('message', (message: OffloadTask | OffloadHeartbeat) => {
  if ('heartbeat' in message) {
    if (lease) lease.stamp = Math.max(lease.stamp, message.heartbeat);
    return;
  }
  const task = message;
  const started = performance.now();
  if (task.lease_ms) {
    const ms = task.lease_ms;
    // Checked after this turn's I/O (setImmediate): a build that held the loop for a while has heartbeats waiting in
    // the channel, and a timer runs before they are read.
    const check = () => {
      if (!lease) return;
      const silent = monotonicMs() - lease.stamp;
      if (silent > ms + LAPSE_GRACE_MS) lapse(task, silent);
    };
    lease = { ms, stamp: monotonicMs(), timer: setInterval(() => setImmediate(check), Math.max(50, Math.floor(ms / 4))) };
  }
  const settle = () => {
    if (lease) clearInterval(lease.timer);
    lease = undefined;
  };
  run(task).then(
    (result) => {
      settle();
      process.send!({ ok: true, result, work_ms: performance.now() - started } satisfies OffloadReply);
    },
    (e: Error) => {
      settle();
      process.send!({ ok: false, message: e.message, exitCode: e instanceof BsftError ? e.exitCode : 1, diskFull: e instanceof DiskFullError } satisfies OffloadReply);
    },
  );
});
