import { OffloadError } from '../errors.js';
import { fork } from 'node:child_process';
import type { ResolvedRecipe } from '../recipe/resolve.js';
import type { BuildSummary, ScoreSummary } from '../run/stage-summary.js';

/**
 * CPU-heavy stage work (a dataset build, scoring) runs in a child process, never on the worker's event loop: that
 * loop renews the locks of every job the worker holds (a train job's included), and a build that blocked it for
 * seconds lost those locks, so the same job ran twice. The child gets one task over IPC, answers once, and exits;
 * it also exits when the worker goes away.
 */
export type OffloadTask =
  | { kind: 'build'; recipe: ResolvedRecipe; outDir: string; cacheDir: string }
  | { kind: 'score'; runDir: string; splits: string[] };

export type OffloadReply = { ok: true; result: unknown } | { ok: false; message: string; exitCode: number };

export function offload(task: Extract<OffloadTask, { kind: 'build' }>): Promise<BuildSummary>;
export function offload(task: Extract<OffloadTask, { kind: 'score' }>): Promise<ScoreSummary>;
export function offload(task: OffloadTask): Promise<unknown> {
  return new Promise((resolve, reject) => {
    const child = fork(new URL('./offload-child.js', import.meta.url), [], { stdio: ['ignore', 'inherit', 'inherit', 'ipc'], serialization: 'advanced' });
    let reply: OffloadReply | undefined;
    child.on('message', (m: OffloadReply) => {
      reply = m;
    });
    child.on('error', reject);
    child.on('exit', (code, signal) => {
      if (reply?.ok) resolve(reply.result);
      else if (reply) reject(new OffloadError(reply.message, reply.exitCode));
      else reject(new OffloadError(`the ${task.kind} process ended (${signal ?? `exit ${code}`}) without a result`));
    });
    child.send(task);
  });
}
