import { closeSync, existsSync, fsyncSync, openSync, readdirSync, readFileSync, renameSync, statSync, writeFileSync } from 'node:fs';
import path from 'node:path';
import { sha256File } from '../util/sha256.js';

/**
 * The COMPLETE file of Contract 4 (also used for dataset and final folders in a store): JSON with the sha256 of
 * every other file of the folder, written last. A folder without a valid COMPLETE does not exist.
 */
export const COMPLETE = 'COMPLETE';

export interface CompleteFile {
  files: Record<string, string>;
  [extra: string]: unknown;
}

export { sha256File };

/** Relative paths of every file under `dir` (sorted) that a COMPLETE lists: all but COMPLETE files and `*.tmp`. */
export function listFiles(dir: string): string[] {
  const out: string[] = [];
  const walk = (rel: string) => {
    for (const name of readdirSync(path.join(dir, rel)).sort()) {
      const r = rel ? `${rel}/${name}` : name;
      if (statSync(path.join(dir, r)).isDirectory()) walk(r);
      else if (name !== COMPLETE && !name.endsWith('.tmp')) out.push(r);
    }
  };
  walk('');
  return out;
}

export function readComplete(dir: string): CompleteFile | undefined {
  try {
    const c = JSON.parse(readFileSync(path.join(dir, COMPLETE), 'utf8')) as CompleteFile;
    return c && typeof c.files === 'object' ? c : undefined;
  } catch {
    return undefined;
  }
}

/** Folders whose COMPLETE the trainer writes (Contract 4): a store checks them, never rewrites them. */
export function trainerOwned(rel: string): boolean {
  return rel.startsWith('checkpoints/') || rel === 'final';
}

/**
 * The COMPLETE of a folder about to be pushed. A trainer-owned folder must already have one that verifies; for the
 * folders bsft writes itself (dataset, predictions, score) it is (re)written from what is there now.
 */
export async function completeForPush(dir: string, rel: string): Promise<CompleteFile> {
  if (trainerOwned(rel)) {
    const problem = await verifyFolder(dir);
    if (problem) throw new Error(`${dir}: ${problem}; not pushing an incomplete folder`);
    return readComplete(dir)!;
  }
  const existing = readComplete(dir);
  const current = listFiles(dir);
  if (existing && current.length === Object.keys(existing.files).length && !(await verifyFolder(dir))) return existing;
  return writeComplete(dir);
}

/** Writes COMPLETE: the hashes of every file there now. */
export async function writeComplete(dir: string, extra: Record<string, unknown> = {}): Promise<CompleteFile> {
  const files: Record<string, string> = {};
  for (const f of listFiles(dir)) files[f] = await sha256File(path.join(dir, f));
  const complete = { files, ...extra };
  replaceComplete(dir, complete);
  return complete;
}

/** COMPLETE is replaced atomically, as the trainer does it: written beside, fsynced, renamed, folder fsynced. */
function replaceComplete(dir: string, complete: CompleteFile): void {
  const tmp = path.join(dir, `${COMPLETE}.tmp`);
  writeFileSync(tmp, JSON.stringify(complete, null, 1));
  fsyncPath(tmp);
  renameSync(tmp, path.join(dir, COMPLETE));
  fsyncPath(dir);
}

function fsyncPath(p: string): void {
  const fd = openSync(p, 'r');
  try {
    fsyncSync(fd);
  } finally {
    closeSync(fd);
  }
}

/**
 * undefined when COMPLETE lists every file of the folder (`*.tmp` aside) and each is present with its sha256, else
 * what is wrong. An unlisted file is an error: a folder must be exactly what its writer completed.
 */
export async function verifyFolder(dir: string): Promise<string | undefined> {
  const c = readComplete(dir);
  if (!c) return existsSync(path.join(dir, COMPLETE)) ? 'unreadable COMPLETE' : 'no COMPLETE';
  for (const [name, digest] of Object.entries(c.files)) {
    const p = path.join(dir, name);
    if (!existsSync(p)) return `${name} is missing`;
    if ((await sha256File(p)) !== digest) return `${name} does not match its sha256`;
  }
  const unlisted = listFiles(dir).find((f) => !(f in c.files));
  if (unlisted) return `${unlisted} is not listed in COMPLETE`;
  return undefined;
}

/**
 * Records a file that bsft generated inside a complete folder (the model card in `final/`): its sha256 goes into
 * the folder's COMPLETE, which is replaced atomically (written beside, fsynced, renamed). No-op without a COMPLETE.
 */
export async function recordInComplete(dir: string, name: string): Promise<void> {
  const complete = readComplete(dir);
  if (!complete) return;
  complete.files[name] = await sha256File(path.join(dir, name));
  replaceComplete(dir, complete);
}
