import { copyFileSync, existsSync, mkdirSync, writeFileSync } from 'node:fs';
import path from 'node:path';
import type { ResolvedRecipe } from '../recipe/resolve.js';
import { openStore, type Store } from './store.js';

/**
 * The `meta` folder of a run in a store: its resolved recipe, so that a machine with nothing of the run (bsft pull,
 * a model card, a report) knows what it was, and once trained its metrics history (metrics.jsonl). Secrets are never
 * in a recipe.
 */
export function writeMeta(runDir: string, recipe: ResolvedRecipe): string {
  const dir = path.join(runDir, 'meta');
  mkdirSync(dir, { recursive: true });
  writeFileSync(path.join(dir, 'recipe.json'), `${JSON.stringify(recipe, null, 2)}\n`);
  if (existsSync(path.join(runDir, METRICS_FILE))) copyFileSync(path.join(runDir, METRICS_FILE), path.join(dir, METRICS_FILE));
  return dir;
}

export const METRICS_FILE = 'metrics.jsonl';

/** Pulls `meta` and puts its recipe.json and metrics.jsonl where run folders keep them; false when the store has none. */
export async function pullMeta(store: Store, runId: string, runDir: string): Promise<boolean> {
  if (!(await store.has(runId, 'meta'))) return false;
  await store.pull(runId, 'meta', path.join(runDir, 'meta'));
  if (!existsSync(path.join(runDir, 'recipe.json'))) copyFileSync(path.join(runDir, 'meta', 'recipe.json'), path.join(runDir, 'recipe.json'));
  const history = path.join(runDir, 'meta', METRICS_FILE);
  if (existsSync(history) && !existsSync(path.join(runDir, METRICS_FILE))) copyFileSync(history, path.join(runDir, METRICS_FILE));
  return true;
}

/**
 * A run trained elsewhere and kept on the Hub: brings back what scoring it needs (meta, dataset, predictions; small
 * files, sha256-checked). A local store holds them where they are already. The parts the store does not hold yet (a
 * run still training) are left out: scoring then says what is missing.
 */
export async function pullForScoring(recipe: Pick<ResolvedRecipe, 'store' | 'runs_dir'>, runId: string, runDir: string): Promise<void> {
  const store = await openStore(recipe);
  if (store.kind !== 'hub') return;
  await pullMeta(store, runId, runDir);
  for (const rel of ['dataset', 'predictions']) if (await store.has(runId, rel)) await store.pull(runId, rel, path.join(runDir, rel));
}
