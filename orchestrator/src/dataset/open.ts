import { DatasetNotFoundError } from '../errors.js';
import path from 'node:path';
import { readRunRecipe } from '../run/run-dir.js';
import { readManifest, type Manifest } from './manifest.js';

export interface OpenedDataset {
  dir: string;
  manifest: Manifest;
  /** The run's resolved recipe (runs/<id>/recipe.json), when the dataset belongs to a run. */
  recipe?: { tokenizer: string };
}

/**
 * Finds a built dataset from what a user typed: a dataset folder, a run folder (runs/<id>), or a run id under
 * ./runs.
 */
export function openDataset(arg: string, runsDir = path.resolve('runs')): OpenedDataset {
  const candidates = [arg, path.join(arg, 'dataset'), path.join(runsDir, arg, 'dataset')];
  for (const c of candidates) {
    const manifest = readManifest(c);
    if (!manifest) continue;
    const recipe = readRunRecipe(path.dirname(path.resolve(c)));
    return { dir: path.resolve(c), manifest, recipe };
  }
  throw new DatasetNotFoundError(`no dataset at ${arg} (looked for manifest.json in ${candidates.join(', ')}); build one with \`bsft dataset build <recipe>\``);
}
