import { existsSync, readdirSync, readFileSync, writeFileSync } from 'node:fs';
import path from 'node:path';
import { canonicalJson } from '../util/canonical-json.js';
import { sha256File } from '../util/sha256.js';

/**
 * A step's output records the per-run settings it was made with (`settings.json` beside it), so that the step
 * runs again when they change although the run id, which covers only what trains the weights, does not.
 */
export function stampMatches(file: string, settings: unknown): boolean {
  if (!existsSync(file)) return false;
  try {
    return canonicalJson(JSON.parse(readFileSync(file, 'utf8'))) === canonicalJson(settings);
  } catch {
    return false;
  }
}

export function writeStamp(file: string, settings: unknown): void {
  writeFileSync(file, `${canonicalJson(settings, 2)}\n`);
}

/** The sha256 of every `.jsonl` file of a folder (none when it is missing), by name: the inputs a stamp records. */
export async function jsonlHashes(dir: string, skip: string[] = []): Promise<Record<string, string>> {
  const out: Record<string, string> = {};
  const files = existsSync(dir) ? readdirSync(dir).filter((f) => f.endsWith('.jsonl') && !skip.includes(f)).sort() : [];
  for (const f of files) out[f] = await sha256File(path.join(dir, f));
  return out;
}
