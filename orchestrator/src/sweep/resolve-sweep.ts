import { createHash } from 'node:crypto';
import path from 'node:path';
import { InputError } from '../errors.js';
import { checkFits } from '../recipe/memory-plan.js';
import type { PathPolicy } from '../recipe/path-policy.js';
import { formatProblem, RecipeError } from '../recipe/recipe-error.js';
import { resolveRecipe, type ResolvedRecipe } from '../recipe/resolve.js';
import { shellQuote } from '../util/shell-quote.js';
import { expandPoints, pointText, sweptKeys, yamlValue, type SweepSpec } from './points.js';
import { SweepError, type SweepRequest } from './spec.js';

/** One point of a sweep: its values, the `--set` lines that make it, and the run it is. */
export interface SweepPoint {
  index: number;
  values: Record<string, unknown>;
  /** `key=value` lines after the sweep's own `set` (what `bsft run <recipe> --set ...` takes). */
  set: string[];
  run_id: string;
}

/**
 * A sweep as written to `<runs>/_sweeps/<name>.json` (and to Redis for a queued sweep): everything `bsft status`,
 * `bsft cancel` and `bsft report --sweep` need, without the recipes (each point's run folder holds its own).
 */
export interface SweepRecord {
  format: 'bsft-sweep-v1';
  name: string;
  /** The recipe every point starts from, absolute. */
  recipe_file: string;
  /** The sweep's `--set` lines, applied before each point's values. */
  set: string[];
  /** The sweep's `--allow` folders, absolute. */
  allow: string[];
  keys: string[];
  spec: SweepSpec;
  /** The split the points are compared on (never test). */
  rank_split: 'val';
  runs_dir: string;
  store: ResolvedRecipe['store'];
  /** The queue priority its points were submitted with (absent for a local sweep). */
  priority?: number;
  created_at: string;
  points: SweepPoint[];
}

/** The runs a sweep is made of, resolved and checked. */
export interface ResolvedSweep {
  record: SweepRecord;
  recipes: ResolvedRecipe[];
  /** Points a random search drew twice (kept once). */
  dropped: number;
}

export const SWEEP_NAME = /^[A-Za-z0-9][A-Za-z0-9._-]{0,63}$/;

/**
 * Resolves every point of a sweep as its own recipe (the base recipe, the sweep's --set, the point's values, and the
 * validation split added to eval.splits for the comparison) and checks them all before anything is written or
 * queued: a point whose recipe is invalid, does not fit its GPUs or is the same run as another point is named with
 * its values.
 */
export function resolveSweep(req: SweepRequest, policy: PathPolicy): ResolvedSweep {
  // The base recipe first: a problem of its own is reported once, not once per point.
  resolveRecipe(req.recipe, { set: req.set, policy });
  const { points, dropped } = expandPoints(req.spec);
  const problems: string[] = [];
  const recipes: ResolvedRecipe[] = [];
  const made: SweepPoint[] = [];
  const byRun = new Map<string, number>();
  for (const p of points) {
    const set = Object.entries(p.values).map(([k, v]) => `${k}=${yamlValue(v)}`);
    const label = `point ${p.index} (${pointText(p.values)})`;
    try {
      const base = resolveRecipe(req.recipe, { set: [...req.set, ...set], policy });
      if (base.data.splits.val <= 0) throw new InputError('a sweep compares its points on the validation split: data.splits.val must be above 0');
      // The comparison reads each point's validation predictions: eval.splits gains val (a per-run setting: the run id stays).
      const splits = base.eval.splits.includes('val') ? base.eval.splits : ['val' as const, ...base.eval.splits];
      const recipe = { ...base, eval: { ...base.eval, splits } };
      checkFits(recipe);
      const other = byRun.get(recipe.run_id);
      if (other !== undefined) {
        problems.push(`${label}: the same run as point ${other} (${recipe.run_id}): its values differ only in settings that do not change what is trained (eval, queue, store, resources, speed switches); sweep those on one run`);
        continue;
      }
      byRun.set(recipe.run_id, p.index);
      recipes.push(recipe);
      made.push({ index: p.index, values: p.values, set, run_id: recipe.run_id });
    } catch (e) {
      if (e instanceof RecipeError) problems.push(`${label}:\n${e.problems.map((x) => `    ${formatProblem(x)}`).join('\n')}`);
      else if (e instanceof InputError) problems.push(`${label}: ${e.message}`);
      else throw e;
    }
  }
  if (problems.length) throw new SweepError(problems);
  const first = recipes[0]!;
  const ids = made.map((p) => p.run_id);
  const name = req.name ?? `${first.name}-sweep-${createHash('sha256').update(ids.join('\n')).digest('hex').slice(0, 8)}`;
  if (!SWEEP_NAME.test(name)) throw new SweepError([`--name: "${name}" must be letters, digits, ".", "_" or "-" (at most 64, starting with a letter or digit)`]);
  return {
    record: {
      format: 'bsft-sweep-v1',
      name,
      recipe_file: path.resolve(req.recipe),
      set: req.set,
      allow: req.allow.map((a) => path.resolve(a)),
      keys: sweptKeys(req.spec),
      spec: req.spec,
      rank_split: 'val',
      runs_dir: first.runs_dir,
      store: first.store,
      created_at: new Date().toISOString(),
      points: made,
    },
    recipes,
    dropped,
  };
}

/** The command that runs one point on its own: the recipe with the sweep's and the point's --set lines. */
export function pointCommand(r: SweepRecord, index: number, verb: 'run' | 'submit' = 'run'): string {
  const p = r.points.find((x) => x.index === index)!;
  // Relative to here when inside the current directory, else absolute.
  const shown = (f: string) => { const rel = path.relative(process.cwd(), f); return rel === '' ? '.' : rel.startsWith('..') ? f : rel; };
  const allow = (r.allow ?? []).flatMap((a) => ['--allow', shown(a)]);
  const recipe = shown(r.recipe_file);
  return ['bsft', verb, recipe, ...allow, ...[...r.set, ...p.set].flatMap((s) => ['--set', s])].map(shellQuote).join(' ');
}
