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

/** A message if `abs` (written as `written` in the recipe) leaves the policy's roots, else undefined. */
export function checkPath(abs: string, written: string, policy: PathPolicy): string | undefined {
  const real = realish(abs);
  const allowed = policy.allow.map(realish);
  if (allowed.some((root) => inside(real, root))) return undefined;
  if (path.isAbsolute(written)) {
    return `absolute path "${written}" is outside the allow-list; start bsft with --allow <dir> to permit it`;
  }
  if (inside(real, realish(policy.workspace))) return undefined;
  const how = real !== path.resolve(abs) ? ` (a symlink to ${real})` : '';
  return `path "${written}"${how} leaves the workspace ${policy.workspace}; start bsft with --allow <dir> to permit it`;
}
