import { existsSync, readFileSync, writeFileSync } from 'node:fs';
import { canonicalJson } from '../util/canonical-json.js';

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
