import { existsSync, readFileSync } from 'node:fs';
import path from 'node:path';
import { parse as parseYaml } from 'yaml';
import { z } from 'zod';
import { InputError } from '../errors.js';
import { didYouMean } from '../recipe/did-you-mean.js';
import { keysAt } from '../recipe/format-issues.js';
import type { OptionValues } from '../cli/command.js';
import type { SweepRange, SweepSpec } from './points.js';

/** A sweep that cannot be made: every problem, each with where it was written (`--grid`, a file's `sweep.grid.x`). */
export class SweepError extends InputError {
  constructor(readonly problems: string[]) {
    super(`invalid sweep:\n${problems.map((p) => `  ${p}`).join('\n')}`);
  }
}

/** What a sweep is made of before its points are resolved: the spec, the base recipe and its own name. */
export interface SweepRequest {
  spec: SweepSpec;
  /** The recipe every point starts from. */
  recipe: string;
  /** `--set` overrides of every point (before the point's own values). */
  set: string[];
  /** `--allow` folders (recipe paths outside the current directory). */
  allow: string[];
  name?: string;
  /** The sweep file it came from, if any. */
  file?: string;
}

export const SWEEP_OPTIONS = ['grid', 'random', 'range', 'log-range', 'seed'] as const;

/** Whether a command line asks for a sweep (bsft run) or names a sweep file. */
export function isSweep(file: string, values: OptionValues): boolean {
  return SWEEP_OPTIONS.some((o) => values[o] !== undefined) || isSweepFile(file);
}

export function isSweepFile(file: string): boolean {
  if (!/\.ya?ml$/.test(file) || !existsSync(file)) return false;
  try {
    const data = parseYaml(readFileSync(file, 'utf8'), { maxAliasCount: 0 }) as unknown;
    return typeof data === 'object' && data !== null && 'sweep' in data;
  } catch {
    return false; // the recipe loader reports it
  }
}

/** Splits `a,b,[c,d],"e,f"` at the commas outside brackets, braces and quotes. */
export function splitTopLevel(s: string): string[] {
  const parts: string[] = [];
  let depth = 0;
  let quote: string | null = null;
  let start = 0;
  for (let i = 0; i < s.length; i++) {
    const ch = s[i]!;
    if (quote) {
      if (ch === '\\' && quote === '"') i++;
      else if (ch === quote) quote = null;
    } else if (ch === '"' || ch === "'") quote = ch;
    else if (ch === '[' || ch === '{') depth++;
    else if (ch === ']' || ch === '}') depth--;
    else if (ch === ',' && depth === 0) {
      parts.push(s.slice(start, i));
      start = i + 1;
    }
  }
  parts.push(s.slice(start));
  return parts.map((p) => p.trim());
}

/** A recipe path that the recipe schema knows, else a problem naming the closest key. */
function keyProblem(key: string): string | undefined {
  if (!/^[\w-]+(\.[\w-]+)*$/.test(key)) return `"${key}" is not a recipe path (e.g. train.lr)`;
  const parts = key.split('.');
  for (let i = 0; i < parts.length; i++) {
    const allowed = keysAt(parts.slice(0, i));
    if (!allowed.length) return undefined; // below a record or a free-form value: the recipe's validation decides
    if (!allowed.includes(parts[i]!)) {
      const near = didYouMean(parts[i]!, allowed);
      return `unknown recipe key "${parts.slice(0, i + 1).join('.')}"${near ? ` (did you mean ${[...parts.slice(0, i), near].join('.')}?)` : ''}`;
    }
  }
  return undefined;
}

const INT = /^-?\d+$/;

function parseRange(written: string, log: boolean, at: string, problems: string[]): SweepRange | undefined {
  const m = /^\s*([^:]+):([^:]+)\s*$/.exec(written);
  const [lo, hi] = m ? [m[1]!.trim(), m[2]!.trim()] : [];
  const min = Number(lo);
  const max = Number(hi);
  if (!m || !Number.isFinite(min) || !Number.isFinite(max)) problems.push(`${at}: expected MIN:MAX (numbers), got "${written}"`);
  else if (!(min < max)) problems.push(`${at}: MIN must be below MAX, got ${lo}:${hi}`);
  else if (log && !(min > 0)) problems.push(`${at}: a log range needs MIN > 0, got ${lo}`);
  else return { min, max, log, int: INT.test(lo!) && INT.test(hi!) };
  return undefined;
}

function checkSpec(spec: SweepSpec, problems: string[], where: (key: string) => string): void {
  const seen = new Set<string>();
  for (const [k] of [...spec.grid, ...spec.ranges]) {
    const p = keyProblem(k);
    if (p) problems.push(`${where(k)}: ${p}`);
    if (seen.has(k)) problems.push(`${where(k)}: ${k} is swept twice`);
    seen.add(k);
  }
  if (spec.ranges.length && !spec.random) problems.push(`ranges need a random search: add --random N (sweep.random.n in a file)`);
  if (!spec.grid.length && !spec.ranges.length) problems.push('nothing to sweep: give --grid key=a,b (or --random N with --range key=min:max), or a sweep file');
  if (spec.random && !(spec.random.n >= 1)) problems.push('--random: at least 1 point');
}

/** A sweep from `--grid`, `--random`, `--range`, `--log-range` and `--seed` on a recipe. */
export function specFromOptions(recipe: string, values: OptionValues): SweepRequest {
  const problems: string[] = [];
  const grid: [string, unknown[]][] = [];
  for (const g of (values.grid as string[] | undefined) ?? []) {
    const eq = g.indexOf('=');
    if (eq <= 0) {
      problems.push(`--grid ${g}: expected key=value,value,...`);
      continue;
    }
    const key = g.slice(0, eq).trim();
    const written = splitTopLevel(g.slice(eq + 1));
    const parsed: unknown[] = [];
    for (const w of written) {
      if (w === '') problems.push(`--grid ${key}: an empty value in "${g.slice(eq + 1)}"`);
      else {
        try {
          parsed.push(parseYaml(w, { maxAliasCount: 0 }));
        } catch (e) {
          problems.push(`--grid ${key}: "${w}" is not a valid YAML value (${(e as Error).message.split('\n')[0]})`);
        }
      }
    }
    grid.push([key, parsed]);
  }
  const ranges: [string, SweepRange][] = [];
  for (const [option, log] of [['range', false], ['log-range', true]] as const) {
    for (const r of (values[option] as string[] | undefined) ?? []) {
      const eq = r.indexOf('=');
      if (eq <= 0) {
        problems.push(`--${option} ${r}: expected key=MIN:MAX`);
        continue;
      }
      const key = r.slice(0, eq).trim();
      const range = parseRange(r.slice(eq + 1), log, `--${option} ${key}`, problems);
      if (range) ranges.push([key, range]);
    }
  }
  const count = (name: string, v: unknown, min: number) => {
    const n = Number(v);
    if (!Number.isInteger(n) || n < min) problems.push(`--${name} must be an integer ≥ ${min}, got "${String(v)}"`);
    return n;
  };
  if (values.seed !== undefined && values.random === undefined) problems.push('--seed is for a random search (--random N)');
  const random = values.random !== undefined ? { n: count('random', values.random, 1), seed: values.seed !== undefined ? count('seed', values.seed, 0) : 0 } : undefined;
  const spec: SweepSpec = { grid, ranges, ...(random ? { random } : {}) };
  checkSpec(spec, problems, (k) => (ranges.some(([r]) => r === k) ? `--range ${k}` : `--grid ${k}`));
  if (problems.length) throw new SweepError(problems);
  return { spec, recipe, set: (values.set as string[] | undefined) ?? [], allow: (values.allow as string[] | undefined) ?? [], ...(values.name ? { name: values.name as string } : {}) };
}

const value = z.union([z.string(), z.number(), z.boolean(), z.null(), z.array(z.unknown()), z.record(z.string(), z.unknown())]);
const fileSchema = z.strictObject({
  sweep: z.strictObject({
    recipe: z.string().min(1),
    name: z.string().optional(),
    set: z.record(z.string(), value).optional(),
    grid: z.record(z.string(), z.array(value).min(1, 'list at least one value')).optional(),
    random: z.strictObject({ n: z.number().int().min(1), seed: z.number().int().min(0).default(0) }).optional(),
    ranges: z.record(z.string(), z.strictObject({ min: z.number(), max: z.number(), log: z.boolean().default(false), int: z.boolean().optional() })).optional(),
  }),
});

/**
 * A sweep file: a YAML file next to the recipe with one `sweep:` section (recipe relative to the file; `set`, `grid`,
 * `random`, `ranges`):
 *
 *   sweep:
 *     recipe: smoke.yaml
 *     grid: { train.lr: [1.0e-5, 2.0e-5], train.lora.r: [8, 16] }
 */
export function specFromFile(file: string): SweepRequest {
  const abs = path.resolve(file);
  let data: unknown;
  try {
    data = parseYaml(readFileSync(abs, 'utf8'), { maxAliasCount: 0 });
  } catch (e) {
    throw new SweepError([`${file}: ${(e as Error).message.split('\n')[0]}`]);
  }
  const parsed = fileSchema.safeParse(data);
  if (!parsed.success) throw new SweepError(parsed.error.issues.map((i) => `${file} ${i.path.join('.')}: ${i.message}`));
  const s = parsed.data.sweep;
  const problems: string[] = [];
  const ranges: [string, SweepRange][] = [];
  for (const [k, r] of Object.entries(s.ranges ?? {})) {
    if (!(r.min < r.max)) problems.push(`${file} sweep.ranges.${k}: min must be below max`);
    else if (r.log && !(r.min > 0)) problems.push(`${file} sweep.ranges.${k}: a log range needs min > 0`);
    else ranges.push([k, { min: r.min, max: r.max, log: r.log, int: r.int ?? (Number.isInteger(r.min) && Number.isInteger(r.max)) }]);
  }
  const spec: SweepSpec = { grid: Object.entries(s.grid ?? {}), ranges, ...(s.random ? { random: s.random } : {}) };
  checkSpec(spec, problems, (k) => `${file} sweep.${spec.grid.some(([g]) => g === k) ? 'grid' : 'ranges'}.${k}`);
  if (problems.length) throw new SweepError(problems);
  const recipe = path.resolve(path.dirname(abs), s.recipe);
  if (!existsSync(recipe)) throw new SweepError([`${file} sweep.recipe: file not found: ${recipe}`]);
  const set = Object.entries(s.set ?? {}).map(([k, v]) => `${k}=${JSON.stringify(v)}`);
  return { spec, recipe, set, allow: [], ...(s.name ? { name: s.name } : {}), file: abs };
}

/** The sweep a command line names: a sweep file (with --set and --name added), or a recipe with sweep options. */
export function sweepRequest(file: string, values: OptionValues): SweepRequest {
  if (!isSweepFile(file)) return specFromOptions(file, values);
  const given = SWEEP_OPTIONS.filter((o) => values[o] !== undefined);
  if (given.length) throw new SweepError([`${file} is a sweep file: its points come from the file, not from --${given.join(', --')}`]);
  const req = specFromFile(file);
  return { ...req, set: [...req.set, ...((values.set as string[] | undefined) ?? [])], allow: (values.allow as string[] | undefined) ?? [], ...(values.name ? { name: values.name as string } : {}) };
}
