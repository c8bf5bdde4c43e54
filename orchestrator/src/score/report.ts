import { mkdirSync, renameSync, writeFileSync } from 'node:fs';
import path from 'node:path';
import { table } from '../util/table.js';
import { notComparable } from './benchmark-release.js';
import { offsetsText, readOperatingPoint, type BalanceResult } from './balance.js';
import { est, kappa, pct, signedEst } from './format.js';
import { pairedDelta, type Estimate, type ScoreReport } from './metrics.js';
import { html } from './report-html.js';
import { readMetrics, runCurve, runMeta, type Curve, type RunMeta } from './run-meta.js';
import type { Scored } from './run-scores.js';
import type { StudyResult } from '../study/stats.js';
import { studySection } from '../study/report-section.js';

/** The paper's published figures for Qwen2.5-7B-Instruct (arXiv 2505.21757), shown as a reference row. */
export const PAPER_REFERENCE = {
  label: 'paper: BehaviorSFT, Qwen2.5-7B-Instruct (published)',
  macro_f1: 0.973,
  proactive_f1: { standard_sft: 0.95, behaviorsft: 0.965 },
};

export interface ComparedRun {
  label: string;
  /** Where the scores come from (null for a loose predictions file). */
  meta: RunMeta | null;
  /** Loss and learning rate per step, val loss per eval, from metrics.jsonl (null without one). */
  curve: Curve | null;
  macro_f1: Estimate;
  accuracy: Estimate;
  per_class_f1: Record<string, Estimate>;
  per_category: Record<string, Estimate>;
  hard_macro_f1: Estimate | null;
  /** A derived Hard subset's macro-F1 (--hard-subset), or null. */
  hard_subset: { name: string; n: number; macro_f1: Estimate } | null;
  answer_accuracy: Estimate | null;
  confusion: number[][];
  /** Forced-token predictions: forced behavior -> how often the reply's behavior matched it. */
  steering: Record<string, { n: number; judged: number; accuracy: number | null }>;
  /** Where the labels come from (first token or judge), and the judge's validity when one gave labels. */
  label_source: ScoreReport['label_source'] | null;
  judge: ScoreReport['judge'] | null;
  /** Its operating point (bsft balance: balance.json), or null. */
  balance: BalanceResult | null;
}

export interface Comparison {
  format: 'bsft-report-v2';
  runs: ComparedRun[];
  /** Each run minus the first, by paired case bootstrap (only for runs scored on the same tasks). */
  deltas: { label: string; versus: string; macro_f1: Estimate; accuracy: Estimate; per_class_f1: Record<string, Estimate> }[];
  reference: typeof PAPER_REFERENCE;
  /** The first run's split answered with its most common gold behavior throughout. */
  majority: ScoreReport['majority'];
  /** Why the paper's row cannot be compared with these runs (e.g. they used the bundled sample), or null. */
  reference_not_comparable: string | null;
  behaviors: string[];
  categories: string[];
  /** category -> the behavior its tasks call for (its group). */
  category_groups: Record<string, string>;
  conventions: string[];
  /** A blind pairwise study of these runs' replies (bsft report --study), or null. */
  study: StudyResult | null;
}

/** Whether two scored runs answer the same tasks in the same order (their cases can be resampled together). */
export function sameTasks(a: Scored, b: Scored): boolean {
  return a.gold.length === b.gold.length && a.gold.every((t, i) => t.id === b.gold[i]!.id);
}

/** Compares scored runs: the first is the baseline of the paired deltas. Run folders add metadata and curves. */
export function compare(runs: Scored[], resamples: number, seed: number, study: StudyResult | null = null): Comparison {
  const first = runs[0]!;
  const behaviors = first.report.behaviors;
  const groups: Record<string, string> = {};
  for (const r of runs) for (const [c, s] of Object.entries(r.report.per_category)) groups[c] ??= s.group;
  // Grouped under their behavior (in the recipe's behavior order), then by name.
  const rank = (c: string) => { const i = behaviors.indexOf(groups[c]!); return i < 0 ? behaviors.length : i; };
  const categories = Object.keys(groups).sort((a, b) => rank(a) - rank(b) || a.localeCompare(b));
  const compared = runs.map((r): ComparedRun => {
    const metrics = r.dir ? readMetrics(r.dir) : [];
    return {
      label: r.label,
      meta: r.dir ? runMeta(r.dir, metrics) : null,
      curve: runCurve(metrics),
      macro_f1: r.report.overall.macro_f1,
      accuracy: r.report.overall.accuracy,
      per_class_f1: Object.fromEntries(Object.entries(r.report.overall.per_class).map(([b, c]) => [b, c.f1])),
      per_category: Object.fromEntries(Object.entries(r.report.per_category).map(([c, s]) => [c, s.accuracy])),
      hard_macro_f1: r.report.hard?.macro_f1 ?? null,
      hard_subset: r.report.hard_subset ? { name: r.report.hard_subset.name, n: r.report.hard_subset.n, macro_f1: r.report.hard_subset.macro_f1 } : null,
      answer_accuracy: r.report.answers?.accuracy ?? null,
      confusion: r.report.overall.confusion,
      steering: Object.fromEntries(Object.entries(r.report.forced).map(([b, f]) => [b, { n: f.n, judged: f.judged, accuracy: f.steering_accuracy }])),
      label_source: r.report.label_source ?? null,
      judge: r.report.judge ?? null,
      balance: r.dir ? readOperatingPoint(r.dir) ?? null : null,
    };
  });
  return {
    format: 'bsft-report-v2',
    runs: compared,
    deltas: runs.slice(1).filter((r) => sameTasks(first, r)).map((r) => ({
      label: r.label,
      versus: first.label,
      ...pairedDelta(r.encoded, first.encoded, resamples, seed),
    })),
    reference: PAPER_REFERENCE,
    majority: first.report.majority,
    reference_not_comparable: notComparable(compared.map((r) => r.meta)) ?? null,
    behaviors,
    categories,
    category_groups: groups,
    conventions: first.report.conventions,
    study,
  };
}

/** Writes report.json, report.md and report.html into `dir` (each whole: written beside, then renamed). */
export function writeReport(dir: string, c: Comparison): string[] {
  mkdirSync(dir, { recursive: true });
  const files: [string, string][] = [['report.json', `${JSON.stringify(c, null, 2)}\n`], ['report.md', markdown(c)], ['report.html', html(c)]];
  for (const [name, text] of files) {
    writeFileSync(path.join(dir, `${name}.tmp`), text);
    renameSync(path.join(dir, `${name}.tmp`), path.join(dir, name));
  }
  return files.map(([name]) => path.join(dir, name));
}


/** The tables of a report, shared by its terminal, Markdown and HTML forms (first row: header). */
export function scoreRows(c: Comparison): string[][] {
  const subset = c.runs.find((r) => r.hard_subset)?.hard_subset;
  return [
    ['run', 'macro-F1 [95% CI]', 'accuracy', ...c.behaviors.map((b) => `${b} F1`), 'hard macro-F1', ...(subset ? [`Hard subset ${subset.name} (${subset.n}) macro-F1 [95% CI]`] : [])],
    ...c.runs.map((r) => [r.label, est(r.macro_f1), est(r.accuracy), ...c.behaviors.map((b) => pct(r.per_class_f1[b]?.value ?? NaN)), r.hard_macro_f1 ? pct(r.hard_macro_f1.value) : '-',
      ...(subset ? [r.hard_subset ? est(r.hard_subset.macro_f1) : '-'] : [])]),
    [`majority baseline (always ${c.majority.behavior})`, pct(c.majority.macro_f1), pct(c.majority.accuracy), ...c.behaviors.map((b) => (b === c.majority.behavior ? pct((2 * c.majority.accuracy) / (1 + c.majority.accuracy)) : '0.0')), '-', ...(subset ? ['-'] : [])],
    [`${c.reference.label}${c.reference_not_comparable ? ' (NOT COMPARABLE)' : ''}`, pct(c.reference.macro_f1), '-', ...c.behaviors.map((b) => (b === 'proactive' ? `${pct(c.reference.proactive_f1.behaviorsft)} (standard SFT ${pct(c.reference.proactive_f1.standard_sft)})` : '-')), '-', ...(subset ? ['-'] : [])],
  ];
}

export function metaRows(c: Comparison): string[][] {
  return [
    ['run', 'run id', 'base model', 'method', 'conditioning', 'steps', 'lr', 'trained', 'dataset'],
    ...c.runs.map((r) => {
      const m = r.meta;
      if (!m) return [r.label, '-', '-', '-', '-', '-', '-', '-', '-'];
      return [r.label, m.run_id, m.base_model, m.method, m.conditioning, `${m.steps ?? '-'} (${m.length})`, m.lr === null ? '-' : `${m.lr} ${m.schedule}`,
        m.date ? m.date.slice(0, 16).replace('T', ' ') : '-', m.dataset_hash ? `${m.tasks} tasks, ${m.dataset_hash.slice(0, 12)}` : '-'];
    }),
  ];
}

/** Trained, evaluated as it ships (train.method none), or unknown (a loose predictions file). */
const trainedText = (r: ComparedRun) => (!r.meta ? '-' : r.meta.method === 'none' ? 'no (as shipped)' : `yes (${r.meta.method})`);

/**
 * The leaderboard: every run and evaluated model, and the paper's published row, by macro-F1 (highest first), with
 * whether it was trained, where its labels come from, and the hard columns.
 */
export function leaderboardRows(c: Comparison): string[][] {
  const subset = c.runs.find((r) => r.hard_subset)?.hard_subset;
  const rows = c.runs.map((r) => ({
    value: r.macro_f1.value,
    cells: [r.label, trainedText(r), !r.label_source ? '-' : r.label_source.judge > 0 ? (r.judge ? `judge (kappa ${r.judge.validity.kappa.value.toFixed(2)})` : 'judge') : 'behavior token',
      est(r.macro_f1), r.hard_macro_f1 ? est(r.hard_macro_f1) : '-', ...(subset ? [r.hard_subset ? est(r.hard_subset.macro_f1) : '-'] : [])],
  }));
  rows.push({ value: c.reference.macro_f1, cells: [`${c.reference.label}${c.reference_not_comparable ? ' (NOT COMPARABLE)' : ''}`, 'yes (published)', 'behavior token', pct(c.reference.macro_f1), '-', ...(subset ? ['-'] : [])] });
  rows.sort((a, b) => b.value - a.value);
  return [['rank', 'model', 'trained', 'labels', 'macro-F1 [95% CI]', 'hard macro-F1 [95% CI]', ...(subset ? [`Hard subset ${subset.name} [95% CI]`] : [])],
    ...rows.map((r, i) => [String(i + 1), ...r.cells])];
}

export function deltaRows(c: Comparison): string[][] {
  return [
    ['run', 'macro-F1', 'accuracy', ...c.behaviors.map((b) => `${b} F1`)],
    ...c.deltas.map((d) => [d.label, signedEst(d.macro_f1), signedEst(d.accuracy), ...c.behaviors.map((b) => signedEst(d.per_class_f1[b]!))]),
  ];
}

export function categoryRows(c: Comparison): string[][] {
  return [
    ['category', 'behavior', ...c.runs.map((r) => r.label)],
    ...c.categories.map((cat) => [cat, c.category_groups[cat] ?? '-', ...c.runs.map((r) => (r.per_category[cat] ? est(r.per_category[cat]!) : '-'))]),
  ];
}

/** The behaviors some run was forced to (steering runs), in the recipe's order. */
export function forcedBehaviors(c: Comparison): string[] {
  return c.behaviors.filter((b) => c.runs.some((r) => r.steering[b]));
}

export function steeringRows(c: Comparison): string[][] {
  const forced = forcedBehaviors(c);
  return [
    ['run', ...forced.map((b) => `forced ${b}`)],
    ...c.runs.filter((r) => Object.keys(r.steering).length).map((r) => [r.label, ...forced.map((b) => {
      const s = r.steering[b];
      return !s ? '-' : s.accuracy === null ? `n/a (${s.judged}/${s.n} judged)` : `${pct(s.accuracy)} (${s.judged})`;
    })]),
  ];
}

/** Where each run's labels come from, and how far its judge agrees with the gold labels and with the run's tokens. */
export function judgeRows(c: Comparison): string[][] {
  return [
    ['run', 'labels (token / judge / none)', 'judge', 'judge on gold: accuracy', 'kappa', 'token vs judge: agreement', 'kappa'],
    ...c.runs.map((r) => {
      const s = r.label_source;
      const j = r.judge;
      return [r.label, s ? `${s.token} / ${s.judge} / ${s.none}` : '-', j ? `${j.model} (${j.prompt_version})` : '-', j ? est(j.validity.accuracy) : '-', j ? kappa(j.validity.kappa) : '-',
        j?.agreement ? est(j.agreement.accuracy) : '-', j?.agreement ? kappa(j.agreement.kappa) : '-'];
    }),
  ];
}

const judged = (c: Comparison) => c.runs.some((r) => r.judge);
const balanced = (c: Comparison) => c.runs.some((r) => r.balance);

/** Each balanced run's operating point: the offsets, the rule, and macro-F1 / missed / over-intervention at the
 * default and the chosen point on val (where it was chosen) and test. */
export function balanceRows(c: Comparison): string[][] {
  const fig = (e: { value: number; ci: [number, number] }) => est(e);
  const rows = [['run', 'offsets', 'rule', 'split', 'macro-F1 default', 'macro-F1 chosen', 'missed default', 'missed chosen', 'over default', 'over chosen']];
  for (const r of c.runs) {
    const b = r.balance;
    if (!b) continue;
    const offsets = offsetsText(b.offsets) || 'none';
    for (const [split, part] of [['val', b.val], ['test', b.test]] as const) {
      if (!part) continue;
      rows.push([r.label, offsets, b.rule.text, `${split} (${part.tasks})`, fig(part.default.macro_f1), fig(part.chosen.macro_f1),
        fig(part.default.missed_intervention), fig(part.chosen.missed_intervention), fig(part.default.over_intervention), fig(part.chosen.over_intervention)]);
    }
  }
  return rows;
}

export function formatComparison(c: Comparison, opts: { leaderboard?: boolean } = {}): string[] {
  const out = opts.leaderboard ? ['leaderboard (by macro-F1):', ...table(leaderboardRows(c), [1, 2, 3]).map((l) => `  ${l}`), ''] : [];
  out.push(...table(scoreRows(c)));
  if (c.reference_not_comparable) out.push(`note: ${c.reference_not_comparable}`);
  if (c.deltas.length) out.push('', `deltas versus ${c.deltas[0]!.versus} (paired case bootstrap, 95% CI):`, ...table(deltaRows(c)).map((l) => `  ${l}`));
  if (forcedBehaviors(c).length) out.push('', 'steering accuracy (reply behavior == forced behavior, judged replies):', ...table(steeringRows(c)).map((l) => `  ${l}`));
  if (judged(c)) out.push('', 'labels and the judge (95% CI):', ...table(judgeRows(c)).map((l) => `  ${l}`));
  if (balanced(c)) out.push('', 'operating points (bsft balance; chosen on val, 95% CI):', ...table(balanceRows(c), [1, 2, 3]).map((l) => `  ${l}`));
  out.push('', ...table(metaRows(c)));
  if (c.study) out.push(...studySection(c.study, (r) => ['', ...table(r).map((l) => `  ${l}`)], (h) => `\n${h}:`, (p) => `\n  ${p}`));
  return out;
}

export function markdown(c: Comparison): string {
  const md = (r: string[][]) => [`| ${r[0]!.join(' | ')} |`, `|${r[0]!.map(() => '---').join('|')}|`, ...r.slice(1).map((x) => `| ${x.join(' | ')} |`)].join('\n');
  const parts = ['# BehaviorBench report', '', md(scoreRows(c))];
  if (c.runs.length > 1) parts.push('', '## Leaderboard', '', md(leaderboardRows(c)));
  if (c.reference_not_comparable) parts.push('', `**Note:** ${c.reference_not_comparable}.`);
  if (c.deltas.length) parts.push('', `## Deltas versus ${c.deltas[0]!.versus}`, '', md(deltaRows(c)));
  if (forcedBehaviors(c).length) parts.push('', '## Steering accuracy', '', md(steeringRows(c)));
  if (judged(c)) parts.push('', '## Labels and the judge', '', md(judgeRows(c)));
  if (balanced(c)) parts.push('', '## Operating points (bsft balance)', '', md(balanceRows(c)));
  parts.push('', '## Accuracy per category', '', md(categoryRows(c)));
  parts.push('', '## Runs', '', md(metaRows(c)));
  if (c.study) parts.push(...studySection(c.study, (r) => ['', md(r)], (h) => `\n## ${h}`, (p) => `\n${p}`));
  parts.push('', '## Conventions', '', ...c.conventions.map((x) => `- ${x}`), '');
  return parts.join('\n');
}
