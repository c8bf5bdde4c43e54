import { createInterface } from 'node:readline';
import { execa } from 'execa';
import { pythonEnv, trainerPython } from '../run/python-env.js';
import { TRAINER_LAPSE_GRACE_MS, watchLease, type Lease } from './lease.js';
import { outcomeOf, parseEvent, type TrainerCommand, type TrainerEvent, type TrainerOutcome } from './trainer-events.js';

export interface TrainerOptions {
  command: TrainerCommand;
  /** Absolute path of train.json / predict.json. */
  config: string;
  /** The run directory (the trainer's cwd). */
  cwd: string;
  /** Extra CLI args (e.g. `--force proactive`). */
  args?: string[];
  /** Program and leading args that replace `python -m bsft_trainer` (fixture trainers in tests). */
  program?: string[];
  onEvent?: (e: TrainerEvent) => void;
  /** stderr lines and stdout lines that are not events. */
  onLog?: (line: string, stream: 'stdout' | 'stderr') => void;
  /** Aborting sends SIGTERM; after graceMs without exit, SIGKILL. */
  signal?: AbortSignal;
  graceMs?: number;
  /** Aborting sends SIGKILL at once. */
  kill?: AbortSignal;
  env?: Record<string, string>;
  /** The trainer runs only while heartbeats come (lease.py); without a lease it is started without one. */
  lease?: Lease;
  /** This attempt's fencing epoch (fence.py); without it the trainer takes the next one itself. */
  epoch?: number;
}

/** Sends the lease's confirmations to the trainer's stdin as heartbeats; returns the function that stops them. */
function heartbeat(stdin: NodeJS.WritableStream, lease: Lease, onLapse: () => void): () => void {
  stdin.on('error', () => undefined); // the trainer exited: its stdin is closed
  const stop = watchLease(lease, (checkedAt) => stdin.write(`${checkedAt}\n`), onLapse, TRAINER_LAPSE_GRACE_MS);
  return () => {
    stop();
    stdin.end();
  };
}

/** SIGKILL to a process group (the trainer and whatever it started in it); nothing when it is gone. */
function killGroup(pid: number | undefined): void {
  if (pid === undefined) return;
  try {
    process.kill(-pid, 'SIGKILL');
  } catch {
    // already gone
  }
}

export interface TrainerResult {
  exitCode: number | undefined;
  signal: string | undefined;
  outcome: TrainerOutcome;
  lastEvent?: TrainerEvent;
  error?: Extract<TrainerEvent, { event: 'error' }>;
  finalPath?: string;
  /** Last lines of stderr, for failure messages. */
  stderrTail: string[];
}

/**
 * Spawns the trainer (Contract 4) and streams its events; resolves when it exits. The trainer leads its own process
 * group, is told this process's pid (`BSFT_PARENT_PID`: it dies with it, lifeline.py) and is killed with its whole
 * group when its lease lapses, on `kill`, and when it outlives `graceMs` after `signal`.
 */
export async function runTrainer(opts: TrainerOptions): Promise<TrainerResult> {
  const [program, ...lead] = opts.program ?? [trainerPython(), '-m', 'bsft_trainer'];
  const leaseArgs = [
    ...(opts.lease ? ['--lease-s', String(opts.lease.ms / 1000)] : []),
    ...(opts.epoch !== undefined ? ['--epoch', String(opts.epoch)] : []),
  ];
  const child = execa(program!, [...lead, opts.command, '--config', opts.config, ...leaseArgs, ...(opts.args ?? [])], {
    cwd: opts.cwd,
    reject: false,
    buffer: false,
    stdin: opts.lease ? 'pipe' : 'ignore',
    // Only what a trainer may see: no judge key, no Redis URL (pythonEnv).
    env: pythonEnv({ PYTHONUNBUFFERED: '1', BSFT_PARENT_PID: String(process.pid), ...opts.env }),
    extendEnv: false,
    forceKillAfterDelay: false,
    // Its own process group, so that a kill reaches everything it started; it dies with us by itself (lifeline.py).
    detached: true,
  });

  const result: TrainerResult = { exitCode: undefined, signal: undefined, outcome: 'failed', stderrTail: [] };
  const stdoutDone = new Promise<void>((resolve) => {
    createInterface({ input: child.stdout! }).on('line', (line) => {
      const event = parseEvent(line);
      if (!event) {
        if (line.trim()) opts.onLog?.(line, 'stdout');
        return;
      }
      result.lastEvent = event;
      if (event.event === 'error') result.error = event;
      if (event.event === 'done') result.finalPath = event.final_path;
      opts.onEvent?.(event);
    }).on('close', resolve);
  });
  const stderrDone = new Promise<void>((resolve) => {
    createInterface({ input: child.stderr! }).on('line', (line) => {
      result.stderrTail.push(line);
      if (result.stderrTail.length > 20) result.stderrTail.shift();
      opts.onLog?.(line, 'stderr');
    }).on('close', resolve);
  });

  const onKill = () => killGroup(child.pid);
  const stopBeats = opts.lease ? heartbeat(child.stdin!, opts.lease, onKill) : () => undefined;
  let killTimer: NodeJS.Timeout | undefined;
  const onAbort = () => {
    child.kill('SIGTERM');
    killTimer = setTimeout(onKill, opts.graceMs ?? 60_000);
  };
  if (opts.signal?.aborted) onAbort();
  else opts.signal?.addEventListener('abort', onAbort, { once: true });
  if (opts.kill?.aborted) onKill();
  else opts.kill?.addEventListener('abort', onKill, { once: true });

  const done = await child;
  stopBeats();
  await Promise.all([stdoutDone, stderrDone]);
  clearTimeout(killTimer);
  opts.signal?.removeEventListener('abort', onAbort);
  opts.kill?.removeEventListener('abort', onKill);
  result.exitCode = done.exitCode;
  result.signal = done.signal ?? undefined;
  result.outcome = outcomeOf(done.exitCode);
  return result;
}
