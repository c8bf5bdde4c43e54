import { closeSync, mkdirSync, openSync, readdirSync, readFileSync, rmSync, statSync, writeSync } from 'node:fs';
import { hostname } from 'node:os';
import path from 'node:path';
import { diskFullError, isDiskFull } from './disk-full.js';

/**
 * An exclusive lock on a path, held by a lock file created with O_EXCL beside it (`<path>.lock`): two processes of
 * any kind (a worker's build child, `bsft run`) never write one dataset folder at once; the second waits, then finds
 * the first one's result. A lock left by a process of this machine that is gone (killed) is taken over; one held
 * from another machine (a shared file system) is waited for, and the wait says whose it is.
 */
export interface LockHolder {
  pid: number;
  host: string;
  /** The holder's start time in clock ticks since boot (/proc/<pid>/stat), so that a reused pid is not taken for it. */
  start?: string;
  since: string;
}

function startTime(pid: number): string | undefined {
  try {
    // Field 22 of /proc/<pid>/stat; the command name (field 2) may hold spaces, so count from its closing parenthesis.
    const stat = readFileSync(`/proc/${pid}/stat`, 'utf8');
    return stat.slice(stat.lastIndexOf(')') + 2).split(' ')[19];
  } catch {
    return undefined;
  }
}

function alive(holder: LockHolder): boolean {
  try {
    process.kill(holder.pid, 0);
  } catch (e) {
    if ((e as NodeJS.ErrnoException).code === 'ESRCH') return false;
  }
  const start = startTime(holder.pid);
  return holder.start === undefined || start === undefined || start === holder.start;
}

function readHolder(lockFile: string): LockHolder | undefined {
  try {
    return JSON.parse(readFileSync(lockFile, 'utf8')) as LockHolder;
  } catch {
    return undefined; // gone, or being written: look again
  }
}

export interface LockOptions {
  /** Called once when the lock is held by someone else, with the holder. */
  onWait?: (holder: LockHolder, lockFile: string) => void;
  /** Called when a lock left by a process that is gone is taken over (holder undefined: an empty lock file). */
  onTakeOver?: (holder: LockHolder | undefined, lockFile: string) => void;
  pollMs?: number;
}

/** A lock file that stays empty or unreadable this long was left by a process killed while writing it. */
const UNREADABLE_STALE_MS = 10_000;

function ageMs(file: string): number | undefined {
  try {
    return Date.now() - statSync(file).mtimeMs;
  } catch {
    return undefined;
  }
}

/** Runs `fn` while holding the lock of `target` (`<target>.lock`); the lock file is removed afterwards. */
export async function withLock<T>(target: string, fn: () => Promise<T>, opts: LockOptions = {}): Promise<T> {
  const lockFile = `${target}.lock`;
  const me: LockHolder = { pid: process.pid, host: hostname(), since: new Date().toISOString(), ...(startTime(process.pid) ? { start: startTime(process.pid)! } : {}) };
  let told = false;
  // A folder made only for the lock goes with it when nothing else was written there (a failed build leaves nothing).
  const made = mkdirSync(path.dirname(lockFile), { recursive: true });
  for (;;) {
    try {
      const fd = openSync(lockFile, 'wx');
      try {
        writeSync(fd, JSON.stringify(me));
      } catch (e) {
        rmSync(lockFile, { force: true });
        throw e;
      } finally {
        closeSync(fd);
      }
      break;
    } catch (e) {
      if ((e as NodeJS.ErrnoException).code !== 'EEXIST') throw isDiskFull(e) ? diskFullError(target, `taking the lock ${lockFile}`) : e;
    }
    const holder = readHolder(lockFile);
    if (holder && holder.host === me.host && !alive(holder)) {
      // Left by a process of this machine that is gone: take it over, unless it changed hands since we read it.
      const again = readHolder(lockFile);
      if (again && again.pid === holder.pid && again.since === holder.since) {
        rmSync(lockFile, { force: true });
        opts.onTakeOver?.(holder, lockFile);
      }
      continue;
    }
    const age = holder ? undefined : ageMs(lockFile);
    if (!holder && age !== undefined && age > UNREADABLE_STALE_MS) {
      // Created and never written: its process was killed between the two (a writer fills it at once).
      rmSync(lockFile, { force: true });
      opts.onTakeOver?.(undefined, lockFile);
      continue;
    }
    if (holder && !told) {
      told = true;
      opts.onWait?.(holder, lockFile);
    }
    await new Promise((r) => setTimeout(r, opts.pollMs ?? 200));
  }
  try {
    return await fn();
  } finally {
    const holder = readHolder(lockFile);
    if (holder?.pid === me.pid && holder.since === me.since) rmSync(lockFile, { force: true });
    if (made !== undefined && onlyFolders(made)) rmSync(made, { recursive: true, force: true });
  }
}

/** Whether `dir` holds no file (folders only, or nothing). */
function onlyFolders(dir: string): boolean {
  try {
    return readdirSync(dir, { withFileTypes: true }).every((e) => e.isDirectory() && onlyFolders(path.join(dir, e.name)));
  } catch {
    return false;
  }
}
