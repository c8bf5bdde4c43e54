import type { z } from 'zod';
import { didYouMean } from './did-you-mean.js';
import type { Problem } from './recipe-error.js';
import { recipeSchema } from './schema.js';
import { otherToolKey } from './other-tools.js';
import { secretKeyMessage } from './secrets.js';

type Locate = (p: (string | number)[]) => Pick<Problem, 'file' | 'line'>;

/**
 * Keys allowed at a path of the recipe schema, for did-you-mean suggestions. A discriminated union (the judge's
 * `kind`) gives the keys of the option the recipe's data names, or of every option when it names none.
 */
export function keysAt(p: readonly PropertyKey[], data?: unknown): string[] {
  // zod 4 keeps the definition of each schema on `.def`; unwrap optional/default/pipe/record layers as we walk.
  let node: any = recipeSchema;
  const unwrap = (value: unknown) => {
    for (;;) {
      const t = node?.def?.type;
      if (t === 'optional' || t === 'default' || t === 'nullable' || t === 'prefault') node = node.def.innerType;
      else if (t === 'pipe') node = node.def.in;
      else if (t === 'union') {
        const options: any[] = node.def.options;
        const disc: string | undefined = node.def.discriminator;
        const named = disc && value && typeof value === 'object' ? (value as Record<string, unknown>)[disc] : undefined;
        const hit = options.find((o) => o?.def?.shape?.[disc ?? '']?.def?.values?.includes(named));
        node = hit ?? { def: { type: 'object', shape: Object.assign({}, ...options.map((o) => o?.def?.shape ?? {})) } };
      } else return;
    }
  };
  unwrap(data);
  for (const [i, part] of p.entries()) {
    if (node?.def?.type === 'object') node = node.def.shape[part as string];
    else if (node?.def?.type === 'record') node = node.def.valueType;
    else return [];
    unwrap(valueAt(data, p.slice(0, i + 1)));
  }
  return node?.def?.type === 'object' ? Object.keys(node.def.shape) : [];
}

export function describe(v: unknown): string {
  if (v === null) return 'null';
  if (Array.isArray(v)) return 'a list';
  if (typeof v === 'object') return 'a mapping';
  if (typeof v === 'string') return JSON.stringify(v.length > 40 ? `${v.slice(0, 40)}…` : v);
  return `${typeof v} ${String(v)}`;
}

function valueAt(data: unknown, p: readonly PropertyKey[]): unknown {
  let cur: any = data;
  for (const part of p) cur = cur?.[part as any];
  return cur;
}

const ARTICLE: Record<string, string> = {
  number: 'a number',
  string: 'a string',
  boolean: 'true or false',
  object: 'a mapping',
  array: 'a list',
  int: 'an integer',
};

function message(issue: z.core.$ZodIssue, data: unknown): string {
  const got = valueAt(data, issue.path);
  switch (issue.code) {
    case 'invalid_type':
      if (got === undefined) return 'required';
      return `expected ${ARTICLE[issue.expected] ?? issue.expected}, got ${describe(got)}`;
    case 'invalid_value':
      return `expected one of ${issue.values.map((v) => JSON.stringify(v)).join(', ')}, got ${describe(got)}`;
    case 'invalid_union':
      return `not a valid value: ${describe(got)}`;
    case 'too_small':
      if (issue.origin === 'array') return `expected at least ${issue.minimum} item(s)`;
      if (issue.origin === 'string') return 'must not be empty';
      return `expected ${issue.inclusive ? '>=' : '>'} ${issue.minimum}, got ${describe(got)}`;
    case 'too_big':
      return `expected ${issue.inclusive ? '<=' : '<'} ${issue.maximum}, got ${describe(got)}`;
    case 'invalid_format':
      return `${issue.message}, got ${describe(got)}`;
    default:
      return issue.message;
  }
}

/** Turns zod issues into problems with dotted paths, places, and did-you-mean suggestions for unknown keys. */
export function formatIssues(issues: z.core.$ZodIssue[], data: unknown, locate: Locate): Problem[] {
  const problems: Problem[] = [];
  for (const issue of issues) {
    const at = issue.path.map((p) => (typeof p === 'symbol' ? String(p) : p));
    if (issue.code === 'unrecognized_keys') {
      const allowed = keysAt(issue.path, data);
      for (const key of issue.keys) {
        const full = [...at, key];
        const secret = secretKeyMessage(key);
        // Another tool's name for one of our settings first (however far its spelling), then a near spelling here.
        const other = otherToolKey(at, key);
        const guess = other ? other.path : didYouMean(key, allowed);
        const note = other?.note ? `; ${other.note}` : '';
        const msg = secret ?? `unknown key${guess ? ` (did you mean "${guess}"?${note})` : ''}; allowed: ${allowed.join(', ')}`;
        problems.push({ ...locate(full), path: full.join('.'), message: msg });
      }
      continue;
    }
    problems.push({ ...locate(at), path: at.join('.'), message: message(issue, data) });
  }
  return problems;
}
