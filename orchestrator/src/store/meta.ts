import { copyFileSync, existsSync, mkdirSync, writeFileSync } from 'node:fs';
import path from 'node:path';
import type { ResolvedRecipe } from '../recipe/resolve.js';
import type { Store } from './store.js';

/**
 * The `meta` folder of a run in a store: its resolved recipe, so that a machine with nothing of the run (bsft pull,
 * a model card) knows what it was. Secrets are never in a recipe.
 */
export function writeMeta(runDir: string, recipe: ResolvedRecipe): string {
  const dir = path.join(runDir, 'meta');
  mkdirSync(dir, { recursive: true });
  writeFileSync(path.join(dir, 'recipe.json'), `${JSON.stringify(recipe, null, 2)}\n`);
  return dir;
}

/** Pulls `meta` and puts its recipe.json where run folders keep it; false when the store has none. */
export async function pullMeta(store: Store, runId: string, runDir: string): Promise<boolean> {
  if (!(await store.has(runId, 'meta'))) return false;
  await store.pull(runId, 'meta', path.join(runDir, 'meta'));
  if (!existsSync(path.join(runDir, 'recipe.json'))) copyFileSync(path.join(runDir, 'meta', 'recipe.json'), path.join(runDir, 'recipe.json'));
  return true;
}
