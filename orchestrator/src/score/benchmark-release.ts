import { sha256 } from '../util/sha256.js';
import { existsSync, readFileSync } from 'node:fs';
import path from 'node:path';
import { PACKAGE_ROOT } from '../run/python-env.js';
import type { RunMeta } from './run-meta.js';

/**
 * Whether a run's scores can stand beside the paper's published row: only when its dataset was built from the full
 * BehaviorBench release, recognised by the task files' fingerprint and task count recorded in the dataset manifest.
 */
export interface Release {
  name: string;
  /** Tasks in the release (all splits of the dataset built from it). */
  tasks: number;
  /** sha256 of the sorted sha256s of the task files, one per line (`fingerprint` below). */
  fingerprint: string;
}

/**
 * Full BehaviorBench releases bsft recognises. None is registered yet: the public task files have not been checked
 * against the paper's counts here, so no run is called comparable. A maintainer who has verified a copy adds its
 * name, task count and fingerprint (each report prints the fingerprint of the data it scored).
 */
export const FULL_RELEASES: Release[] = [];

/** The bundled 630-task sample (recipes/data): a BehaviorBench-style sample, not the benchmark. */
export const SAMPLE_FILE = path.join(PACKAGE_ROOT, 'recipes', 'data', 'behaviorbench-sample.jsonl');

export function fingerprint(inputs: { sha256: string }[]): string {
  return sha256(inputs.map((i) => i.sha256).sort().join('\n'));
}

function sampleSha256(): string | undefined {
  return existsSync(SAMPLE_FILE) ? sha256(readFileSync(SAMPLE_FILE)) : undefined;
}

/**
 * Why the paper row is not comparable with these runs, or undefined when every run's dataset is a registered full
 * release. Runs without metadata (loose prediction files) are never comparable.
 */
export function notComparable(metas: (RunMeta | null)[], releases: Release[] = FULL_RELEASES): string | undefined {
  const sample = sampleSha256();
  for (const m of metas) {
    if (!m || m.tasks === null) return 'a scored file has no dataset manifest, so its task set is unknown: the paper row is not comparable';
    if (m.inputs.some((i) => i.sha256 === sample)) {
      return `run ${m.run_id} used the bundled ${m.tasks}-task sample, not BehaviorBench: the paper row is not comparable`;
    }
    const fp = fingerprint(m.inputs);
    if (!releases.some((r) => r.fingerprint === fp && r.tasks === m.tasks)) {
      return `run ${m.run_id}'s dataset (${m.tasks} tasks, task files fingerprint ${fp.slice(0, 12)}) is not a registered full BehaviorBench release: the paper row is not comparable`;
    }
  }
  return undefined;
}
