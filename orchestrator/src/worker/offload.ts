import { existsSync } from 'node:fs';
import { fork } from 'node:child_process';
import { DiskFullError, OffloadError } from '../errors.js';
import type { ResolvedRecipe } from '../recipe/resolve.js';
import type { BuildSummary, ScoreSummary } from '../run/stage-summary.js';

/**
 * CPU-heavy stage work (a dataset build, scoring) runs in a child process, never on the worker's event loop: that
 * loop renews the locks of every job the worker holds (a train job's included), and a build that blocked it for
 * seconds lost those locks, so the same job ran twice. The child gets one task over IPC, answers once, and exits.
 *
 * Its lifetime is the job's: `signal` (the job's lock lost, `bsft cancel`, the worker shutting down) kills it at once
 * (SIGKILL: a build writes beside its folder and renames, so nothing half-written stays); and it dies with the
 * worker, by the kernel (`setpriv --pdeathsig`, util-linux) where that is installed, else when it sees its IPC
 * channel close.
 */
export type OffloadTask =
  | { kind: 'build'; recipe: ResolvedRecipe; outDir: string; cacheDir: string }
  | { kind: 'score'; runDir: string; splits: string[] };

export type OffloadReply = { ok: true; result: unknown } | { ok: false; message: string; exitCode: number; diskFull?: boolean };

/** The offload child was stopped by `signal` (its reason is the signal's). */
export class OffloadStopped extends Error {}

const SETPRIV = ['/usr/bin/setpriv', '/bin/setpriv'].find((p) => existsSync(p));

export function offload(task: Extract<OffloadTask, { kind: 'build' }>, signal?: AbortSignal): Promise<BuildSummary>;
export function offload(task: Extract<OffloadTask, { kind: 'score' }>, signal?: AbortSignal): Promise<ScoreSummary>;
export function offload(task: OffloadTask, signal?: AbortSignal): Promise<unknown> {
  return new Promise((resolve, reject) => {
    // setpriv sets the parent-death signal, then execs Node with the child's arguments (the IPC channel's fd and
    // NODE_CHANNEL_FD pass through the exec).
    const dieWithUs = SETPRIV ? { execPath: SETPRIV, execArgv: ['--pdeathsig', 'KILL', '--', process.execPath, ...process.execArgv] } : {};
    const child = fork(new URL('./offload-child.js', import.meta.url), [], { stdio: ['ignore', 'inherit', 'inherit', 'ipc'], serialization: 'advanced', ...dieWithUs });
    let reply: OffloadReply | undefined;
    const stop = () => child.kill('SIGKILL');
    if (signal?.aborted) stop();
    else signal?.addEventListener('abort', stop, { once: true });
    child.on('message', (m: OffloadReply) => {
      reply = m;
    });
    child.on('error', reject);
    child.on('exit', (code, exitSignal) => {
      signal?.removeEventListener('abort', stop);
      if (reply?.ok) resolve(reply.result);
      else if (reply) reject(reply.diskFull ? new DiskFullError(reply.message) : new OffloadError(reply.message, reply.exitCode));
      else if (signal?.aborted) reject(new OffloadStopped(`the ${task.kind} process was stopped`));
      else reject(new OffloadError(`the ${task.kind} process ended (${exitSignal ?? `exit ${code}`}) without a result`));
    });
    child.send(task);
  });
}
