import { readFileSync, statSync } from 'node:fs';
import path from 'node:path';
import { isMap, isPair, isScalar, isSeq, LineCounter, parse as parseYaml, parseDocument, type Node } from 'yaml';
import { describe, formatIssues } from './format-issues.js';
import { findSecretValues } from './secrets.js';
import { RecipeError, type Problem } from './recipe-error.js';
import { recipeSchema, type Recipe } from './schema.js';
import { checkPath, rebasePaths, type PathPolicy } from './path-policy.js';

/** A recipe larger than this is refused before it is parsed. */
export const MAX_RECIPE_BYTES = 1024 * 1024;
const MAX_ALIASES = 100;
const MAX_EXTENDS_DEPTH = 16;

type Plain = Record<string, unknown>;

/** One YAML file of an `extends` chain, or the `--set` overrides: its data and where each path was written. */
interface Layer {
  file: string;
  data: Plain;
  lines: Map<string, number>;
}

export interface LoadOptions {
  /** `--set path=value` overrides, applied after the whole extends chain. */
  set?: string[];
  policy: PathPolicy;
}

export interface LoadedRecipe {
  /** Absolute path of the recipe file. */
  file: string;
  recipe: Recipe;
  /** Finds the file and line a recipe path came from (for errors found after validation). */
  locate(recipePath: (string | number)[]): Pick<Problem, 'file' | 'line'>;
  /** Files of the extends chain, base first, the recipe itself last. */
  chain: string[];
}

const display = (file: string): string => path.relative(process.cwd(), file) || file;

function isPlainObject(v: unknown): v is Plain {
  return typeof v === 'object' && v !== null && !Array.isArray(v);
}

function keyOf(p: readonly (string | number)[]): string {
  return p.join('.');
}

/** Records the line of every key and sequence item of a YAML document. */
function collectLines(node: unknown, at: (string | number)[], lc: LineCounter, out: Map<string, number>): void {
  if (isMap(node)) {
    for (const pair of node.items) {
      if (!isPair(pair) || !isScalar(pair.key)) continue;
      const here = [...at, String(pair.key.value)];
      const range = (pair.key as Node).range;
      if (range) out.set(keyOf(here), lc.linePos(range[0]).line);
      collectLines(pair.value, here, lc, out);
    }
  } else if (isSeq(node)) {
    node.items.forEach((item, i) => {
      const here = [...at, i];
      const range = (item as Node | null)?.range;
      if (range) out.set(keyOf(here), lc.linePos(range[0]).line);
      collectLines(item, here, lc, out);
    });
  }
}

function readLayer(file: string, problems: Problem[]): Layer | undefined {
  const shown = display(file);
  let size: number;
  try {
    const st = statSync(file);
    if (!st.isFile()) {
      problems.push({ file: shown, path: '', message: 'not a file' });
      return undefined;
    }
    size = st.size;
  } catch {
    problems.push({ file: shown, path: '', message: 'file not found' });
    return undefined;
  }
  if (size > MAX_RECIPE_BYTES) {
    problems.push({
      file: shown,
      path: '',
      message: `recipe is ${(size / 1024 / 1024).toFixed(1)} MiB; recipes are limited to ${MAX_RECIPE_BYTES / 1024 / 1024} MiB`,
    });
    return undefined;
  }
  const text = readFileSync(file, 'utf8');
  const lc = new LineCounter();
  const doc = parseDocument(text, { lineCounter: lc, prettyErrors: false, uniqueKeys: true });
  if (doc.errors.length > 0) {
    for (const e of doc.errors) {
      const line = e.linePos?.[0]?.line ?? lc.linePos(e.pos[0]).line;
      problems.push({ file: shown, line, path: '', message: `YAML syntax: ${e.message.split('\n')[0]}` });
    }
    return undefined;
  }
  let data: unknown;
  try {
    data = doc.toJS({ maxAliasCount: MAX_ALIASES });
  } catch (e) {
    const msg = (e as Error).message;
    problems.push({
      file: shown,
      path: '',
      message: /alias/i.test(msg) ? `YAML aliases expand too far (limit ${MAX_ALIASES}): ${msg}` : `YAML: ${msg}`,
    });
    return undefined;
  }
  if (data === null || data === undefined) {
    problems.push({ file: shown, path: '', message: 'recipe is empty' });
    return undefined;
  }
  if (!isPlainObject(data)) {
    problems.push({ file: shown, line: 1, path: '', message: `expected a mapping of sections, got ${describe(data)}` });
    return undefined;
  }
  const lines = new Map<string, number>();
  collectLines(doc.contents, [], lc, lines);
  return { file, data, lines };
}

/**
 * Deep merge: mappings merge key by key, everything else (lists included) is replaced by the child, and a child's
 * `null` removes the inherited value (`--set train.epochs=null` to switch to max_steps).
 */
export function deepMerge(base: Plain, child: Plain): Plain {
  const out: Plain = { ...base };
  for (const [k, v] of Object.entries(child)) {
    const prev = out[k];
    if (v === null) delete out[k];
    else out[k] = isPlainObject(prev) && isPlainObject(v) ? deepMerge(prev, v) : v;
  }
  return out;
}

/** Loads a layer and its extends chain, base layers first. */
function loadChain(file: string, stack: string[], policy: PathPolicy, problems: Problem[]): Layer[] {
  const layer = readLayer(file, problems);
  if (!layer) return [];
  const ext = layer.data.extends;
  delete layer.data.extends;
  if (ext === undefined) return [layer];
  const parents = typeof ext === 'string' ? [ext] : Array.isArray(ext) ? ext : undefined;
  if (!parents || parents.some((p) => typeof p !== 'string')) {
    problems.push({ file: display(file), line: layer.lines.get('extends'), path: 'extends', message: 'expected a file path or a list of file paths' });
    return [layer];
  }
  const layers: Layer[] = [];
  parents.forEach((parent, i) => {
    const at = typeof ext === 'string' ? 'extends' : `extends.${i}`;
    const where = { file: display(file), line: layer.lines.get(at) ?? layer.lines.get('extends'), path: at };
    const target = path.resolve(path.dirname(file), parent as string);
    const escape = checkPath(target, parent as string, policy);
    if (escape) {
      problems.push({ ...where, message: escape });
      return;
    }
    if (stack.includes(target)) {
      const cycle = [...stack.slice(stack.indexOf(target)), target].map(display).join(' -> ');
      problems.push({ ...where, message: `extends cycle: ${cycle}` });
      return;
    }
    if (stack.length >= MAX_EXTENDS_DEPTH) {
      problems.push({ ...where, message: `extends chain deeper than ${MAX_EXTENDS_DEPTH}` });
      return;
    }
    const before = problems.length;
    const chain = loadChain(target, [...stack, target], policy, problems);
    if (problems.length > before && chain.length === 0 && problems[before]?.message === 'file not found') {
      problems.splice(before, 1, { ...where, message: `extends "${parent}": file not found (${display(target)})` });
    }
    layers.push(...chain);
  });
  layers.push(layer);
  return layers;
}

/** Applies `--set a.b.c=value` (value parsed as YAML) to a plain object. */
function setLayer(sets: string[], problems: Problem[]): Layer {
  const data: Plain = {};
  const lines = new Map<string, number>();
  for (const s of sets) {
    const eq = s.indexOf('=');
    const key = eq > 0 ? s.slice(0, eq).trim() : '';
    if (!key || !/^[\w-]+(\.[\w-]+)*$/.test(key)) {
      problems.push({ file: '--set', path: '', message: `expected path=value, got ${JSON.stringify(s)}` });
      continue;
    }
    let value: unknown;
    try {
      value = parseYaml(s.slice(eq + 1), { maxAliasCount: 0 });
    } catch (e) {
      problems.push({ file: '--set', path: key, message: `value is not valid YAML: ${(e as Error).message}` });
      continue;
    }
    const parts = key.split('.');
    let cur = data;
    for (const part of parts.slice(0, -1)) {
      if (!isPlainObject(cur[part])) cur[part] = {};
      cur = cur[part] as Plain;
    }
    cur[parts.at(-1)!] = value ?? null;
  }
  return { file: '--set', data, lines };
}

/**
 * Reads a recipe file with its extends chain and `--set` overrides and validates it. Throws RecipeError
 * listing every problem, each with its dotted path and the file and line it came from.
 */
export function loadRecipe(file: string, options: LoadOptions): LoadedRecipe {
  const abs = path.resolve(file);
  const problems: Problem[] = [];
  const layers = loadChain(abs, [abs], options.policy, problems);
  for (const layer of layers) rebasePaths(layer.data, path.dirname(layer.file), path.dirname(abs));
  if (options.set?.length) layers.push(setLayer(options.set, problems));
  if (problems.length > 0 || layers.length === 0) throw new RecipeError(problems);

  const merged = layers.reduce<Plain>((acc, l) => deepMerge(acc, l.data), {});
  const locate = (p: (string | number)[]): Pick<Problem, 'file' | 'line'> => {
    for (let n = p.length; n >= 0; n--) {
      const key = keyOf(p.slice(0, n));
      for (let i = layers.length - 1; i >= 0; i--) {
        const layer = layers[i]!;
        const line = layer.lines.get(key);
        if (line !== undefined) return { file: display(layer.file), line };
        if (layer.file === '--set' && n > 0 && hasPath(layer.data, p.slice(0, n))) return { file: '--set' };
      }
    }
    return { file: display(abs) };
  };

  const secrets = findSecretValues(merged).map((s) => ({ ...locate(s.path), path: s.path.join('.'), message: s.message }));
  const parsed = recipeSchema.safeParse(merged);
  if (!parsed.success || secrets.length > 0) {
    throw new RecipeError([...secrets, ...(parsed.success ? [] : formatIssues(parsed.error.issues, merged, locate))]);
  }
  return { file: abs, recipe: parsed.data, locate, chain: layers.filter((l) => l.file !== '--set').map((l) => l.file) };
}

function hasPath(data: Plain, p: (string | number)[]): boolean {
  let cur: unknown = data;
  for (const part of p) {
    if (!isPlainObject(cur) || !(String(part) in cur)) return false;
    cur = cur[String(part)];
  }
  return true;
}
