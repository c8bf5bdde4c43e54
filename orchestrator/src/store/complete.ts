import { createHash } from 'node:crypto';
import { createReadStream, existsSync, readdirSync, readFileSync, statSync, writeFileSync } from 'node:fs';
import path from 'node:path';

/**
 * The COMPLETE file of Contract 4 (also used for dataset and final folders in a store): JSON with the sha256 of
 * every other file of the folder, written last. A folder without a valid COMPLETE does not exist.
 */
export const COMPLETE = 'COMPLETE';

export interface CompleteFile {
  files: Record<string, string>;
  [extra: string]: unknown;
}

export async function sha256File(file: string): Promise<string> {
  const hash = createHash('sha256');
  for await (const chunk of createReadStream(file)) hash.update(chunk as Buffer);
  return hash.digest('hex');
}

/** Relative paths of every file under `dir` (sorted), COMPLETE excluded. */
export function listFiles(dir: string): string[] {
  const out: string[] = [];
  const walk = (rel: string) => {
    for (const name of readdirSync(path.join(dir, rel)).sort()) {
      const r = rel ? `${rel}/${name}` : name;
      if (statSync(path.join(dir, r)).isDirectory()) walk(r);
      else if (r !== COMPLETE && !r.endsWith('.tmp')) out.push(r);
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

/** Writes COMPLETE for a folder that has none (dataset, final): the hashes of what is there now. */
export async function ensureComplete(dir: string, extra: Record<string, unknown> = {}): Promise<CompleteFile> {
  const existing = readComplete(dir);
  if (existing) return existing;
  const files: Record<string, string> = {};
  for (const f of listFiles(dir)) files[f] = await sha256File(path.join(dir, f));
  const complete = { files, ...extra };
  writeFileSync(path.join(dir, COMPLETE), JSON.stringify(complete, null, 1));
  return complete;
}

/** undefined when every file listed in COMPLETE is present with its sha256, else what is wrong. */
export async function verifyFolder(dir: string): Promise<string | undefined> {
  const c = readComplete(dir);
  if (!c) return existsSync(path.join(dir, COMPLETE)) ? 'unreadable COMPLETE' : 'no COMPLETE';
  for (const [name, digest] of Object.entries(c.files)) {
    const p = path.join(dir, name);
    if (!existsSync(p)) return `${name} is missing`;
    if ((await sha256File(p)) !== digest) return `${name} does not match its sha256`;
  }
  return undefined;
}
