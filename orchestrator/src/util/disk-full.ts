import { existsSync, statfsSync } from 'node:fs';
import path from 'node:path';
import { DiskFullError } from '../errors.js';

/** Whether an error is a full disk (or a full quota). */
export function isDiskFull(e: unknown): boolean {
  const code = (e as NodeJS.ErrnoException | undefined)?.code;
  return code === 'ENOSPC' || code === 'EDQUOT';
}

/** Free bytes on the file system of `target` (its nearest existing folder). */
export function freeBytes(target: string): number {
  let dir = path.resolve(target);
  while (!existsSync(dir) && path.dirname(dir) !== dir) dir = path.dirname(dir);
  const s = statfsSync(dir);
  return s.bavail * s.bsize;
}

/** The DiskFullError of writing under `target` while doing `what`, naming the free space there. */
export function diskFullError(target: string, what: string): DiskFullError {
  const mib = (freeBytes(target) / 2 ** 20).toFixed(1);
  return new DiskFullError(`no space left on the disk of ${target} while ${what} (${mib} MiB free there): free disk space on this machine`);
}

/** Runs `fn`; a full disk becomes diskFullError(target, what). */
export async function onDiskFull<T>(target: string, what: string, fn: () => Promise<T> | T): Promise<T> {
  try {
    return await fn();
  } catch (e) {
    if (isDiskFull(e)) throw diskFullError(target, what);
    throw e;
  }
}
