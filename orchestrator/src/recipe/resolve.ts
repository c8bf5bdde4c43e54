import { createHash } from 'node:crypto';
import { existsSync } from 'node:fs';
import path from 'node:path';
import { canonicalJson } from '../util/canonical-json.js';
import { globFiles, hasMagic } from './glob.js';
import { loadRecipe, type LoadOptions } from './load.js';
import { checkPath, isLocalPath, type PathPolicy } from './path-policy.js';

export { isLocalPath };
import { RecipeError, type Problem } from './recipe-error.js';
import type { Recipe } from './schema.js';

/**
 * A recipe ready to execute: validated, defaults filled in, every path absolute and checked against the path
 * policy, task globs expanded. This is what `bsft show` prints and what goes into `runs/<run-id>/recipe.json`.
 */
export interface ResolvedRecipe extends Recipe {
  run_id: string;
  recipe_file: string;
  /** Task files matched by data.tasks, absolute, sorted, without duplicates. */
  task_files: string[];
  /** Absolute tokenizer directory, or a Hub id. */
  tokenizer: string;
  /** Absolute directory of runs (the local store, and the work dir of `bsft run`). */
  runs_dir: string;
}

function expandHome(s: string): string {
  return s.startsWith('~/') ? path.join(process.env.HOME ?? '~', s.slice(2)) : s;
}

/**
 * What a run id covers: what changes the trained weights. `eval`, `queue`, `store`, `resources` and `description`
 * are per-run settings: changing them reuses the training (predict and score run again when theirs change).
 */
export const RUN_ID_COVERS = ['name', 'model', 'data', 'train'] as const;

/**
 * `train` switches that change speed and memory but not what is trained: a run resumed with another setting of
 * them is the same run.
 */
export const SPEED_SWITCHES = ['activation_checkpointing', 'compile', 'step_sync', 'cpu_offload'] as const;

/** Short, stable hash of the covered sections, paths relative to the workspace, so that a run id is portable. */
function runId(recipe: Recipe, portable: Pick<Recipe, (typeof RUN_ID_COVERS)[number]>): string {
  const train: Record<string, unknown> = { ...portable.train };
  for (const k of SPEED_SWITCHES) delete train[k];
  // Added after runs had ids: the default (fp32 masters, what those runs did) leaves their ids as they were.
  if (train.master_weights === 'fp32') delete train.master_weights;
  const covered = Object.fromEntries(RUN_ID_COVERS.map((k) => [k, k === 'train' ? train : portable[k]]));
  return `${recipe.name}-${createHash('sha256').update(canonicalJson(covered)).digest('hex').slice(0, 8)}`;
}

export interface ResolveOptions extends LoadOptions {
  /** Skip existence checks of inputs (for recipes resolved on a machine that will pull inputs from a store). */
  allowMissing?: boolean;
}

export function resolveRecipe(file: string, options: ResolveOptions): ResolvedRecipe {
  const { recipe, locate, file: abs } = loadRecipe(file, options);
  const policy: PathPolicy = options.policy;
  const base = path.dirname(abs);
  const problems: Problem[] = [];
  const problem = (at: (string | number)[], message: string) =>
    problems.push({ ...locate(at), path: at.join('.'), message });

  /** Resolves a path written in the recipe; reports escapes. */
  const local = (at: (string | number)[], written: string): string => {
    const p = path.resolve(base, expandHome(written));
    const escape = checkPath(p, written, policy);
    if (escape) problem(at, escape);
    return p;
  };

  /** A model or tokenizer folder written in the recipe: a local one resolved, with `needs` checked in it; a Hub id as it is. */
  const folder = (at: (string | number)[], written: string, needs: 'config.json' | 'tokenizer.json'): string => {
    if (!isLocalPath(written)) return written;
    const p = local(at, written);
    if (!options.allowMissing && !existsSync(path.join(p, needs))) problem(at, `no ${needs} in ${p}`);
    return p;
  };

  const model = { ...recipe.model };
  model.name_or_path = folder(['model', 'name_or_path'], model.name_or_path, 'config.json');
  if (model.tokenizer) model.tokenizer = folder(['model', 'tokenizer'], model.tokenizer, 'tokenizer.json');
  const tokenizer = model.tokenizer ?? model.name_or_path;
  // Without its own tokenizer, a local model's folder must hold one too.
  if (!model.tokenizer && path.isAbsolute(tokenizer) && !options.allowMissing && !existsSync(path.join(tokenizer, 'tokenizer.json'))) {
    problem(['model', 'name_or_path'], `no tokenizer.json in ${tokenizer}`);
  }

  // A local model as the judge: its folder (and its tokenizer's) relative to the recipe, as the model's are.
  const judge = recipe.judge?.kind === 'model'
    ? { ...recipe.judge, model: folder(['judge', 'model'], recipe.judge.model, 'config.json'), ...(recipe.judge.tokenizer ? { tokenizer: folder(['judge', 'tokenizer'], recipe.judge.tokenizer, 'tokenizer.json') } : {}) }
    : recipe.judge;

  const taskFiles = new Set<string>();
  recipe.data.tasks.forEach((pattern, i) => {
    const before = problems.length;
    const abs = local(['data', 'tasks', i], pattern);
    if (problems.length > before) return; // the pattern itself leaves the workspace: one problem, not one per file
    const matches = hasMagic(pattern) ? globFiles(abs) : existsSync(abs) ? [abs] : [];
    if (matches.length === 0 && !options.allowMissing) {
      problem(['data', 'tasks', i], hasMagic(pattern) ? `no file matches "${pattern}"` : `file not found: ${pattern}`);
    }
    for (const m of matches) {
      const escape = checkPath(m, pattern, policy);
      if (escape) problem(['data', 'tasks', i], `${m}: ${escape}`);
      else taskFiles.add(m);
    }
  });

  const store = { ...recipe.store };
  const runsDir = store.path ? local(['store', 'path'], store.path) : path.join(policy.workspace, 'runs');
  if (store.path) store.path = runsDir;

  if (problems.length > 0) throw new RecipeError(problems);

  const rel = (p: string) => (path.isAbsolute(p) ? path.relative(policy.workspace, p) : p);
  const portable = {
    ...recipe,
    model: { ...model, name_or_path: rel(model.name_or_path), tokenizer: rel(tokenizer) },
    data: { ...recipe.data, tasks: [...taskFiles].map(rel) },
  };
  return {
    ...recipe,
    model,
    ...(judge ? { judge } : {}),
    store,
    run_id: runId(recipe, portable),
    recipe_file: abs,
    task_files: [...taskFiles],
    tokenizer,
    runs_dir: runsDir,
  };
}
