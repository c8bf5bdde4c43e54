import { realpathSync } from 'node:fs';
import path from 'node:path';

/**
 * Where a recipe may read and write: inside the workspace, or inside a directory of the explicit allow-list.
 * Symlinks are followed, so a link that points outside is an escape too.
 */
export interface PathPolicy {
  workspace: string;
  allow: string[];
}

export function defaultPolicy(allow: string[] = []): PathPolicy {
  const env = (process.env.BSFT_ALLOW_PATHS ?? '').split(path.delimiter).filter(Boolean);
  return { workspace: process.cwd(), allow: [...allow, ...env].map((p) => path.resolve(p)) };
}

/** realpath of the longest existing prefix, with the rest appended (paths that do not exist yet). */
function realish(p: string): string {
  const rest: string[] = [];
  let cur = p;
  for (;;) {
    try {
      return path.join(realpathSync(cur), ...rest.reverse());
    } catch {
      const parent = path.dirname(cur);
      if (parent === cur) return p;
      rest.push(path.basename(cur));
      cur = parent;
    }
  }
}

function inside(child: string, root: string): boolean {
  const rel = path.relative(root, child);
  return rel === '' || (!rel.startsWith('..') && !path.isAbsolute(rel));
}

/** Whether an absolute path lies inside the policy's workspace or one of its allowed roots (symlinks followed). */
export function withinPolicy(abs: string, policy: PathPolicy): boolean {
  const real = realish(abs);
  return [policy.workspace, ...policy.allow].some((root) => inside(real, realish(root)));
}

/** A message if `abs` (written as `written` in the recipe) leaves the policy's roots, else undefined. */
export function checkPath(abs: string, written: string, policy: PathPolicy): string | undefined {
  const real = realish(abs);
  const allowed = policy.allow.map(realish);
  if (allowed.some((root) => inside(real, root)) || inside(real, realish(policy.workspace))) return undefined;
  const how = real !== path.resolve(abs) ? ` (a symlink to ${real})` : '';
  const what = path.isAbsolute(written) ? 'absolute path' : 'path';
  const list = policy.allow.length ? ` and the allowed folders (${policy.allow.join(', ')})` : '';
  return `${what} "${written}"${how} leaves the workspace ${policy.workspace}${list}; start bsft with --allow <dir> to permit it`;
}

/** Local paths start with ./, ../, / or ~/; anything else in model fields is a Hugging Face Hub id. */
export function isLocalPath(s: string): boolean {
  return s === '.' || s === '..' || /^(\.{1,2}[\\/]|[\\/]|~[\\/])/.test(s);
}

/** The recipe fields that hold paths; each is resolved relative to the file that wrote it. */
export const PATH_FIELDS: { path: string[]; list?: boolean; localOnly?: boolean }[] = [
  { path: ['model', 'name_or_path'], localOnly: true },
  { path: ['model', 'tokenizer'], localOnly: true },
  { path: ['data', 'tasks'], list: true },
  { path: ['store', 'path'] },
];

/**
 * Rewrites the relative paths of a recipe layer written in `fromDir` so that they mean the same when read
 * relative to `toDir` (the top recipe's folder): a path in an extended recipe is relative to that recipe.
 */
export function rebasePaths(data: Record<string, unknown>, fromDir: string, toDir: string): void {
  if (fromDir === toDir) return;
  const rebase = (p: unknown, localOnly?: boolean): unknown => {
    if (typeof p !== 'string' || path.isAbsolute(p) || p.startsWith('~') || (localOnly && !isLocalPath(p))) return p;
    const rel = path.relative(toDir, path.resolve(fromDir, p));
    return rel.startsWith('..') ? rel : `./${rel}`;
  };
  for (const field of PATH_FIELDS) {
    const parent = field.path.slice(0, -1).reduce<any>((o, k) => (o && typeof o === 'object' ? o[k] : undefined), data);
    const key = field.path.at(-1)!;
    if (!parent || typeof parent !== 'object' || !(key in parent)) continue;
    const v = parent[key];
    parent[key] = field.list && Array.isArray(v) ? v.map((x) => rebase(x)) : rebase(v, field.localOnly);
  }
}
