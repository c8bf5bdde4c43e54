import { existsSync } from 'node:fs';
import { JUDGE_KEY_ENV, PREDICT_KEY_ENV } from '../recipe/secrets.js';
import { fork, type ChildProcess } from 'node:child_process';
import { DiskFullError, OffloadError } from '../errors.js';
import type { LogLevel } from '../log-levels.js';
import type { ResolvedRecipe } from '../recipe/resolve.js';
import type { BuildSummary, ScoreSummary } from '../run/stage-summary.js';

/**
 * CPU-heavy stage work (a dataset build, scoring) runs in a child process, never on the worker's event loop: that
 * loop renews the locks of every job the worker holds (a train job's included), and a build that blocked it for
 * seconds lost those locks, so the same job ran twice.
 *
 * Children are kept warm (OffloadPool): one runs one task at a time and then waits for the next, with its modules
 * and the tokenizers it loaded, so that a job does not pay a process start (about 2 s under load). Its lifetime is
 * still its task's: `signal` (the job's lock lost, `bsft cancel`, the worker shutting down) kills that child at
 * once (SIGKILL: a build writes beside its folder and renames, so nothing half-written stays), and every child dies
 * with the worker, by the kernel (`setpriv --pdeathsig`, util-linux) where that is installed, else when it sees its
 * IPC channel close.
 */
export type OffloadTask = (
  | { kind: 'build'; recipe: ResolvedRecipe; outDir: string; cacheDir: string }
  | { kind: 'score'; runDir: string; splits: string[] }
) & {
  /**
   * The job's lease (as a trainer's, lease.py): the child works only while heartbeats come, each stamped with the
   * monotonic time of the worker's check; none for `lease_ms` (+ a second) and it stops without publishing. A frozen
   * or partitioned worker cannot let its child build on while another worker retakes the job.
   */
  lease_ms?: number;
};

/** A heartbeat to a child: the monotonic time (ms, this machine's clock) at which the worker confirmed the job is its own. */
export interface OffloadHeartbeat {
  heartbeat: number;
}

/** How a task's caller sends the child heartbeats: `onBeat` hands it the function that sends one. */
export interface ChildLease {
  ms: number;
  onBeat(send: (checkedAt: number) => void): void;
}

/** What a child answers; `work_ms`: the task's own time in the child (for the queue benchmark's overhead figure). */
export type OffloadReply = { ok: true; result: unknown; work_ms: number } | { ok: false; message: string; exitCode: number; diskFull?: boolean };

export interface Offloaded<T> {
  value: T;
  /** The task's own time in the child (without the process and IPC around it). */
  workMs: number;
}

/** The offload child was stopped by `signal` (its reason is the signal's). */
export class OffloadStopped extends Error {}

const SETPRIV = ['/usr/bin/setpriv', '/bin/setpriv'].find((p) => existsSync(p));

/** Warm offload children of one worker: as many as its tasks run at once, at most `idle` of them waiting. */
export class OffloadPool {
  private readonly waiting: ChildProcess[] = [];

  /** `level`: the worker's log level, which the children log at (`bsft worker --log-level`, not only BSFT_LOG_LEVEL). */
  constructor(private readonly idle = 2, private readonly level?: LogLevel) {}

  /** Runs `task` in a warm child; resolves with its result and the time the work itself took in the child. */
  run(task: Extract<OffloadTask, { kind: 'build' }>, signal?: AbortSignal, lease?: ChildLease): Promise<Offloaded<BuildSummary>>;
  run(task: Extract<OffloadTask, { kind: 'score' }>, signal?: AbortSignal, lease?: ChildLease): Promise<Offloaded<ScoreSummary>>;
  run(task: OffloadTask, signal?: AbortSignal, lease?: ChildLease): Promise<Offloaded<unknown>> {
    let child = this.waiting.pop();
    while (child && !(child.connected && child.exitCode === null && child.signalCode === null)) child = this.waiting.pop();
    child ??= start(this.level);
    child.ref();
    child.channel?.ref();
    return new Promise((resolve, reject) => {
      const stop = () => child.kill('SIGKILL');
      let settled = false;
      const done = (settle: () => void, keep: boolean) => {
        settled = true;
        signal?.removeEventListener('abort', stop);
        child.off('message', onMessage);
        child.off('exit', onExit);
        if (keep && this.waiting.length < this.idle && child.connected) {
          this.waiting.push(child);
          child.unref(); // a waiting child does not keep the worker's process alive
          child.channel?.unref();
        } else if (keep) child.kill('SIGKILL');
        settle();
      };
      const onMessage = (reply: OffloadReply) => {
        if (reply.ok) done(() => resolve({ value: reply.result, workMs: reply.work_ms }), true);
        else done(() => reject(reply.diskFull ? new DiskFullError(reply.message) : new OffloadError(reply.message, reply.exitCode)), true);
      };
      const onExit = (code: number | null, exitSignal: NodeJS.Signals | null) => {
        done(() => reject(signal?.aborted
          ? new OffloadStopped(`the ${task.kind} process was stopped`)
          : new OffloadError(`the ${task.kind} process ended (${exitSignal ?? `exit ${code}`}) without a result`)), false);
      };
      child.on('message', onMessage);
      child.on('exit', onExit);
      if (signal?.aborted) stop();
      else signal?.addEventListener('abort', stop, { once: true });
      lease?.onBeat((checkedAt) => {
        if (!settled && child.connected) child.send({ heartbeat: checkedAt } satisfies OffloadHeartbeat);
      });
      child.send(lease ? { ...task, lease_ms: lease.ms } : task);
    });
  }

  /** Ends the waiting children (the worker is closing). */
  close(): void {
    for (const child of this.waiting.splice(0)) child.kill('SIGKILL');
  }
}

function start(level?: LogLevel): ChildProcess {
  // setpriv sets the parent-death signal, then execs Node with the child's arguments (the IPC channel's fd and
  // NODE_CHANNEL_FD pass through the exec).
  const dieWithUs = SETPRIV ? { execPath: SETPRIV, execArgv: ['--pdeathsig', 'KILL', '--', process.execPath, ...process.execArgv] } : {};
  // Builds and scorings ask no endpoint: the endpoint keys stay with the worker.
  const env: Record<string, string | undefined> = { ...process.env, ...(level ? { BSFT_LOG_LEVEL: level } : {}) };
  for (const name of [JUDGE_KEY_ENV, PREDICT_KEY_ENV]) delete env[name];
  const child = fork(new URL('./offload-child.js', import.meta.url), [], { stdio: ['ignore', 'inherit', 'inherit', 'ipc'], serialization: 'advanced', ...dieWithUs, env });
  child.on('error', () => undefined); // reported through `exit`
  return child;
}
