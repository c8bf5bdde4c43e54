import { mkdirSync, renameSync, writeFileSync } from 'node:fs';
import path from 'node:path';
import { BsftError, InputError } from '../errors.js';
import { est, pct, signedEst } from '../score/format.js';
import { sameTasks } from '../score/report.js';
import { pairedDelta, type Estimate } from '../score/metrics.js';
import { scoreRun, type Scored } from '../score/run-scores.js';
import { pullForScoring } from '../store/meta.js';
import { canonicalJson } from '../util/canonical-json.js';
import { table } from '../util/table.js';
import { pointText, yamlValue } from './points.js';
import { pointCommand, type SweepRecord } from './resolve-sweep.js';
import { sweepHtml } from './sweep-html.js';

/** One split's figures of a point. */
export interface SplitFigures {
  n_tasks: number;
  macro_f1: Estimate;
  accuracy: Estimate;
  per_class_f1: Record<string, Estimate>;
}

export interface RankedPoint {
  index: number;
  values: Record<string, unknown>;
  run_id: string;
  /** 1 = best validation macro-F1; null when the point has no validation score. */
  rank: number | null;
  val: SplitFigures | null;
  /** This point minus the best one on the same validation tasks (paired case bootstrap); null for the best itself. */
  delta_vs_best: Estimate | null;
  /** Why it has no validation score (still training, failed, no predictions). */
  reason?: string;
}

export interface ValueEffect {
  value: unknown;
  text: string;
  /** Scored points with this value. */
  points: number;
  mean_macro_f1: number | null;
  best_macro_f1: number | null;
  best_point: number | null;
}

export interface SweepReport {
  format: 'bsft-sweep-report-v1';
  sweep: string;
  recipe_file: string;
  keys: string[];
  method: 'grid' | 'random';
  /** The split the points are ranked on: validation, never test. */
  rank_split: 'val';
  behaviors: string[];
  bootstrap: { resamples: number; seed: number };
  /**
   * Whether every scored point was scored on the same validation tasks. Not so when the sweep changes the data
   * (data.seed, data.splits, the task files): each point's figure stands, but no difference is paired.
   */
  same_tasks: boolean;
  /** Ranked (best first), then the points without a validation score in their order. */
  points: RankedPoint[];
  /** Each swept key: the validation macro-F1 of the points with each of its values. */
  effects: { key: string; values: ValueEffect[] }[];
  best: {
    index: number;
    values: Record<string, unknown>;
    run_id: string;
    /** The command that trains it again (bsft run) and the one that queues it (bsft submit). */
    command: string;
    submit_command: string;
    /** The test split of the chosen point only. */
    test: SplitFigures | null;
    test_reason?: string;
  } | null;
  created_at: string;
}

const figures = (s: Scored): SplitFigures => ({
  n_tasks: s.report.n_tasks,
  macro_f1: s.report.overall.macro_f1,
  accuracy: s.report.overall.accuracy,
  per_class_f1: Object.fromEntries(Object.entries(s.report.overall.per_class).map(([b, c]) => [b, c.f1])),
});

const firstLine = (e: unknown) => (e as Error).message.split('\n')[0]!;

/** Orders a key's values: numbers ascending, anything else as first met. */
function orderedValues(values: unknown[]): unknown[] {
  const seen = new Map<string, unknown>();
  for (const v of values) seen.set(canonicalJson(v), v);
  const all = [...seen.values()];
  return all.every((v) => typeof v === 'number') ? (all as number[]).sort((a, b) => a - b) : all;
}

/**
 * Scores every point of a sweep on the validation split (never test), ranks them by macro-F1 (ties: the earlier
 * point), measures each against the best by paired case bootstrap, shows each swept value's effect, and scores the
 * test split of the best point only. A point without validation predictions is listed with the reason.
 */
export async function sweepReport(record: SweepRecord, opts: { resamples?: number; seed?: number }): Promise<SweepReport> {
  const scored = new Map<number, Scored>();
  const reasons = new Map<number, string>();
  for (const p of record.points) {
    const dir = path.join(record.runs_dir, p.run_id);
    try {
      await pullForScoring(record, p.run_id, dir);
      scored.set(p.index, await scoreRun(dir, 'val', opts));
    } catch (e) {
      if (!(e instanceof BsftError)) throw e;
      reasons.set(p.index, e instanceof InputError && /no predictions|not a run folder|no dataset split/.test(e.message) ? notYet(e) : firstLine(e));
    }
  }
  const byIndex = new Map(record.points.map((p) => [p.index, p]));
  const ranked = [...scored.entries()].sort((a, b) => b[1].report.overall.macro_f1.value - a[1].report.overall.macro_f1.value || a[0] - b[0]);
  const first = ranked[0]?.[1];
  const resamples = opts.resamples ?? first?.report.bootstrap.resamples ?? 1000;
  const seed = opts.seed ?? first?.report.bootstrap.seed ?? 42;
  const points: RankedPoint[] = [
    ...ranked.map(([index, s], i): RankedPoint => ({
      index,
      values: byIndex.get(index)!.values,
      run_id: byIndex.get(index)!.run_id,
      rank: i + 1,
      val: figures(s),
      delta_vs_best: i > 0 && sameTasks(s, first!) ? pairedDelta(s.encoded, first!.encoded, resamples, seed).macro_f1 : null,
    })),
    ...record.points.filter((p) => !scored.has(p.index)).map((p): RankedPoint => ({ index: p.index, values: p.values, run_id: p.run_id, rank: null, val: null, delta_vs_best: null, reason: reasons.get(p.index)! })),
  ];
  const effects = record.keys.map((key) => ({
    key,
    values: orderedValues(record.points.map((p) => p.values[key])).map((value): ValueEffect => {
      const withIt = points.filter((p) => p.val && canonicalJson(p.values[key]) === canonicalJson(value));
      const best = withIt[0];
      return {
        value,
        text: yamlValue(value),
        points: withIt.length,
        mean_macro_f1: withIt.length ? withIt.reduce((s, p) => s + p.val!.macro_f1.value, 0) / withIt.length : null,
        best_macro_f1: best ? best.val!.macro_f1.value : null,
        best_point: best ? best.index : null,
      };
    }),
  }));
  let best: SweepReport['best'] = null;
  if (ranked.length) {
    const p = byIndex.get(ranked[0]![0])!;
    let test: SplitFigures | null = null;
    let testReason: string | undefined;
    try {
      test = figures(await scoreRun(path.join(record.runs_dir, p.run_id), 'test', opts));
    } catch (e) {
      if (!(e instanceof BsftError)) throw e;
      testReason = firstLine(e);
    }
    best = { index: p.index, values: p.values, run_id: p.run_id, command: pointCommand(record, p.index, 'run'), submit_command: pointCommand(record, p.index, 'submit'), test, ...(testReason ? { test_reason: testReason } : {}) };
  }
  return {
    format: 'bsft-sweep-report-v1',
    sweep: record.name,
    recipe_file: record.recipe_file,
    keys: record.keys,
    method: record.spec.random ? 'random' : 'grid',
    rank_split: 'val',
    behaviors: first ? first.report.behaviors : [],
    bootstrap: { resamples, seed },
    same_tasks: ranked.every(([, s]) => sameTasks(s, first!)),
    points,
    effects,
    best,
    created_at: new Date().toISOString(),
  };
}

function notYet(e: unknown): string {
  const m = firstLine(e);
  if (/not a run folder/.test(m)) return 'not started here (no run folder)';
  if (/no predictions/.test(m)) return 'no validation predictions yet';
  return m;
}


/** The ranking as rows (first row: header), for the terminal, Markdown and HTML. */
export function rankRows(r: SweepReport): string[][] {
  const head = ['rank', '#', ...r.keys, 'val macro-F1 [95% CI]', 'vs best [95% CI]', 'accuracy', ...r.behaviors.map((b) => `${b} F1`), 'run'];
  return [head, ...r.points.map((p) => [
    p.rank === null ? '-' : String(p.rank), String(p.index), ...r.keys.map((k) => yamlValue(p.values[k])),
    p.val ? est(p.val.macro_f1) : (p.reason ?? '-'),
    p.delta_vs_best ? signedEst(p.delta_vs_best) : p.rank === 1 ? 'best' : '-',
    p.val ? pct(p.val.accuracy.value) : '-', ...r.behaviors.map((b) => (p.val ? pct(p.val.per_class_f1[b]?.value ?? NaN) : '-')), p.run_id,
  ])];
}

/** One swept key's values as rows (first row: header). */
export function effectRows(e: SweepReport['effects'][number]): string[][] {
  return [[e.key, 'points', 'mean val macro-F1', 'best (point)'], ...e.values.map((v) => [v.text, String(v.points), v.mean_macro_f1 === null ? '-' : pct(v.mean_macro_f1),
    v.best_macro_f1 === null ? '-' : `${pct(v.best_macro_f1)} (#${v.best_point})`])];
}

/** The terminal (and Markdown) tables of a sweep report. */
export function formatSweepReport(r: SweepReport): string[] {
  const out: string[] = [];
  const scoredN = r.points.filter((p) => p.val).length;
  out.push(`sweep ${r.sweep}: ${r.points.length} points (${r.method} over ${r.keys.join(', ')}), ${scoredN} scored; ranked on the validation split (never test),` +
    ` 95% case-bootstrap intervals (${r.bootstrap.resamples} resamples)`);
  out.push('');
  out.push(...table(rankRows(r), [...r.keys.map((_, i) => i + 2), rankRows(r)[0]!.length - 1]));
  if (!r.same_tasks) out.push('note: the points were scored on different validation tasks (the sweep changes the data): each figure stands, none is paired with the best\'s');
  for (const e of r.effects) {
    out.push('');
    out.push(`effect of ${e.key} (validation macro-F1 of the scored points with each value):`);
    out.push(...table(effectRows(e)).map((l) => `  ${l}`));
  }
  out.push('');
  if (!r.best) out.push('best point: none yet (no point has validation predictions)');
  else {
    const b = r.best;
    out.push(`best point: #${b.index} ${pointText(b.values)} (${b.run_id})`);
    out.push(`  train it again:  ${b.command}`);
    out.push(`  queue it:        ${b.submit_command}`);
    out.push(b.test ? `  test split (this point only): macro-F1 ${est(b.test.macro_f1)}   accuracy ${est(b.test.accuracy)}   ${b.test.n_tasks} tasks`
      : `  test split: not scored (${b.test_reason})`);
  }
  return out;
}

/** Writes report.json, report.md and report.html into `dir` (each whole: written beside, then renamed). */
export function writeSweepReport(dir: string, r: SweepReport): string[] {
  mkdirSync(dir, { recursive: true });
  const files: [string, string][] = [
    ['report.json', `${JSON.stringify(r, null, 2)}\n`],
    ['report.md', `# Sweep ${r.sweep}\n\n\`\`\`\n${formatSweepReport(r).join('\n')}\n\`\`\`\n`],
    ['report.html', sweepHtml(r)],
  ];
  for (const [name, text] of files) {
    writeFileSync(path.join(dir, `${name}.tmp`), text);
    renameSync(path.join(dir, `${name}.tmp`), path.join(dir, name));
  }
  return files.map(([name]) => path.join(dir, name));
}
