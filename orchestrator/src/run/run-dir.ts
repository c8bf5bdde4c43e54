import { RunNotFoundError } from '../errors.js';
import { existsSync, readFileSync, statSync } from 'node:fs';
import path from 'node:path';
import type { ResolvedRecipe } from '../recipe/resolve.js';

/** A run folder from what a user typed: a folder holding recipe.json, or a run id under ./runs. */
export function findRunDir(arg: string, runsDir = path.resolve('runs')): string {
  for (const c of [path.resolve(arg), path.join(runsDir, arg)]) {
    if (existsSync(path.join(c, 'recipe.json')) && statSync(c).isDirectory()) return c;
  }
  throw new RunNotFoundError(`no run "${arg}" (looked for recipe.json in ${arg} and ${path.join(runsDir, arg)})`);
}

/** The resolved recipe a run folder keeps (`recipe.json`, written by `writeRunRecipe`), or undefined without one. */
export function readRunRecipe(runDir: string): ResolvedRecipe | undefined {
  const file = path.join(runDir, 'recipe.json');
  return existsSync(file) ? (JSON.parse(readFileSync(file, 'utf8')) as ResolvedRecipe) : undefined;
}
