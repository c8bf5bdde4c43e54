import { existsSync, mkdirSync, readdirSync, readFileSync, renameSync, writeFileSync } from 'node:fs';
import path from 'node:path';
import { InputError } from '../errors.js';
import type { Scored } from './run-scores.js';

/**
 * A Hard subset derived as the paper describes it: the tasks of a split that most of a chosen set of strong models
 * get wrong (at most K of N runs choose the gold behavior). Written as a task-id list with its provenance, and used
 * by `bsft score` and `bsft report` as a filter (`--hard-subset`) beside the tasks' own `hard` flag.
 */
export interface HardSubset {
  format: 'bsft-hard-subset-v1';
  name: string;
  split: string;
  /** A task is in the subset when at most `max_correct` of the runs chose its gold behavior. */
  rule: { max_correct: number; of: number; max_share?: number };
  runs: { run_id: string; label: string; dir: string; macro_f1: number }[];
  created_at: string;
  /** Tasks of the split (every run scored on the same ones). */
  tasks: number;
  /** histogram[k]: tasks exactly k runs got right. */
  correct_histogram: number[];
  per_category: Record<string, { tasks: number; hard: number }>;
  /** The subset, in the split's order. */
  ids: string[];
}

export const HARD_NAME = /^[A-Za-z0-9][A-Za-z0-9._-]{0,63}$/;

/** K from --max-correct, or from --max-share (floor of share × runs). */
export function maxCorrect(runs: number, rule: { maxCorrect?: number; maxShare?: number }): number {
  if (rule.maxCorrect !== undefined) {
    if (rule.maxCorrect >= runs) throw new InputError(`--max-correct ${rule.maxCorrect} keeps every task: it must be below the number of runs (${runs})`);
    return rule.maxCorrect;
  }
  const share = rule.maxShare ?? 0.5;
  if (!(share >= 0 && share < 1)) throw new InputError(`--max-share must be at least 0 and below 1, got ${share}`);
  return Math.floor(share * runs + 1e-9);
}

/**
 * Derives the subset from runs scored on one split. A task a run has no prediction for, or no behavior for, counts as
 * wrong for that run (the scoring convention). The runs must have been scored on the same tasks.
 */
export function deriveHardSubset(name: string, split: string, scored: Scored[], rule: { maxCorrect?: number; maxShare?: number }): HardSubset {
  if (!HARD_NAME.test(name)) throw new InputError(`subset name "${name}": letters, digits, ".", "_" or "-" (at most 64)`);
  if (scored.length < 2) throw new InputError('a Hard subset needs at least two runs (--runs A B C)');
  const first = scored[0]!;
  for (const s of scored.slice(1)) {
    const same = s.gold.length === first.gold.length && s.gold.every((t, i) => t.id === first.gold[i]!.id);
    if (!same) throw new InputError(`${s.label} was not scored on the same ${split} tasks as ${first.label} (${s.gold.length} and ${first.gold.length} tasks): derive a subset from runs of one dataset split`);
  }
  const k = maxCorrect(scored.length, rule);
  const histogram = new Array<number>(scored.length + 1).fill(0);
  const perCategory: HardSubset['per_category'] = {};
  const ids: string[] = [];
  first.gold.forEach((t, i) => {
    const right = scored.reduce((n, s) => n + (s.encoded.pred[i] === s.encoded.gold[i] ? 1 : 0), 0);
    histogram[right]!++;
    const c = (perCategory[t.category] ??= { tasks: 0, hard: 0 });
    c.tasks++;
    if (right <= k) {
      c.hard++;
      ids.push(t.id);
    }
  });
  return {
    format: 'bsft-hard-subset-v1',
    name,
    split,
    rule: { max_correct: k, of: scored.length, ...(rule.maxCorrect === undefined ? { max_share: rule.maxShare ?? 0.5 } : {}) },
    runs: scored.map((s) => ({ run_id: s.dir ? path.basename(s.dir) : s.label, label: s.label, dir: s.dir ?? '', macro_f1: s.report.overall.macro_f1.value })),
    created_at: new Date().toISOString(),
    tasks: first.gold.length,
    correct_histogram: histogram,
    per_category: Object.fromEntries(Object.entries(perCategory).sort(([a], [b]) => a.localeCompare(b))),
    ids,
  };
}

export const hardSubsetFile = (dir: string, name: string) => path.join(dir, `${name}.json`);

export function writeHardSubset(dir: string, subset: HardSubset): string {
  const file = hardSubsetFile(dir, subset.name);
  if (existsSync(file)) throw new InputError(`a Hard subset ${subset.name} exists already (${file}): choose another name, or remove it first`);
  mkdirSync(dir, { recursive: true });
  writeFileSync(`${file}.tmp`, `${JSON.stringify(subset, null, 2)}\n`);
  renameSync(`${file}.tmp`, file);
  return file;
}

/** A subset by file, or by name under `dir`. */
export function readHardSubset(nameOrFile: string, dir: string): HardSubset {
  const file = nameOrFile.endsWith('.json') && existsSync(nameOrFile) ? nameOrFile : hardSubsetFile(dir, nameOrFile);
  if (!existsSync(file)) {
    const known = existsSync(dir) ? readdirSync(dir).filter((f) => f.endsWith('.json')).map((f) => f.slice(0, -5)) : [];
    throw new InputError(`no Hard subset ${nameOrFile} in ${dir}${known.length ? ` (there: ${known.join(', ')})` : ''}; make one with bsft hard-subset`);
  }
  const s = JSON.parse(readFileSync(file, 'utf8')) as HardSubset;
  if (s.format !== 'bsft-hard-subset-v1') throw new InputError(`${file} is not a Hard subset (format ${String(s.format)})`);
  return s;
}
