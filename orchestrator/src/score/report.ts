import { createHash } from 'node:crypto';
import { existsSync, readFileSync } from 'node:fs';
import path from 'node:path';
import { PACKAGE_ROOT } from '../run/python-env.js';
import { table } from '../util/table.js';
import { est, pct } from './format.js';
import { pairedDelta, type Estimate } from './metrics.js';
import type { Scored } from './run-scores.js';

/** The paper's published figures for Qwen2.5-7B-Instruct (arXiv 2505.21757), shown as a reference row. */
export const PAPER_REFERENCE = {
  label: 'paper: BehaviorSFT, Qwen2.5-7B-Instruct (published)',
  macro_f1: 0.973,
  proactive_f1: { standard_sft: 0.95, behaviorsft: 0.965 },
};

export interface Comparison {
  format: 'bsft-report-v1';
  runs: { label: string; macro_f1: Estimate; accuracy: Estimate; per_class_f1: Record<string, Estimate>; per_category: Record<string, Estimate>; hard_macro_f1: Estimate | null; answer_accuracy: Estimate | null; confusion: number[][] }[];
  /** Each run minus the first, by paired case bootstrap (only for runs scored on the same tasks). */
  deltas: { label: string; versus: string; macro_f1: Estimate; accuracy: Estimate; per_class_f1: Record<string, Estimate> }[];
  reference: typeof PAPER_REFERENCE;
  /** Why the paper's row cannot be compared with these runs (e.g. they used the bundled sample), or null. */
  reference_not_comparable: string | null;
  behaviors: string[];
  categories: string[];
  conventions: string[];
}

function sameTasks(a: Scored, b: Scored): boolean {
  return a.gold.length === b.gold.length && a.gold.every((t, i) => t.id === b.gold[i]!.id);
}

/** The bundled 630-task sample (recipes/data): scores on it are not comparable with the paper's. */
export const SAMPLE_FILE = path.join(PACKAGE_ROOT, 'recipes', 'data', 'behaviorbench-sample.jsonl');

/**
 * Why runs cannot be compared with the paper's figures, from the task files their datasets were built from
 * (`manifest.json` inputs, by sha256): the bundled sample is not BehaviorBench. undefined when nothing says so.
 */
export function notComparable(runDirs: string[]): string | undefined {
  if (!existsSync(SAMPLE_FILE)) return undefined;
  const sample = createHash('sha256').update(readFileSync(SAMPLE_FILE)).digest('hex');
  for (const dir of runDirs) {
    const file = path.join(dir, 'dataset', 'manifest.json');
    if (!existsSync(file)) continue;
    const inputs = (JSON.parse(readFileSync(file, 'utf8')) as { inputs?: { sha256: string }[] }).inputs ?? [];
    if (inputs.some((i) => i.sha256 === sample)) {
      return 'these runs used the bundled 630-task sample, not BehaviorBench: the paper row is not comparable';
    }
  }
  return undefined;
}

export function compare(runs: Scored[], resamples: number, seed: number, notComparableWhy?: string): Comparison {
  const first = runs[0]!;
  const behaviors = first.report.behaviors;
  const categories = [...new Set(runs.flatMap((r) => Object.keys(r.report.per_category)))].sort();
  return {
    format: 'bsft-report-v1',
    runs: runs.map((r) => ({
      label: r.label,
      macro_f1: r.report.overall.macro_f1,
      accuracy: r.report.overall.accuracy,
      per_class_f1: Object.fromEntries(Object.entries(r.report.overall.per_class).map(([b, c]) => [b, c.f1])),
      per_category: Object.fromEntries(Object.entries(r.report.per_category).map(([c, s]) => [c, s.accuracy])),
      hard_macro_f1: r.report.hard?.macro_f1 ?? null,
      answer_accuracy: r.report.answers?.accuracy ?? null,
      confusion: r.report.overall.confusion,
    })),
    deltas: runs.slice(1).filter((r) => sameTasks(first, r)).map((r) => ({
      label: r.label,
      versus: first.label,
      ...pairedDelta(r.encoded, first.encoded, resamples, seed),
    })),
    reference: PAPER_REFERENCE,
    reference_not_comparable: notComparableWhy ?? null,
    behaviors,
    categories,
    conventions: first.report.conventions,
  };
}

const sign = (e: Estimate) => `${e.value >= 0 ? '+' : ''}${pct(e.value)}${e.ci ? ` [${pct(e.ci[0])}, ${pct(e.ci[1])}]` : ''}`;

function rows(c: Comparison): string[][] {
  return [
    ['run', 'macro-F1 [95% CI]', 'accuracy', ...c.behaviors.map((b) => `${b} F1`), 'hard macro-F1'],
    ...c.runs.map((r) => [r.label, est(r.macro_f1), est(r.accuracy), ...c.behaviors.map((b) => pct(r.per_class_f1[b]?.value ?? NaN)), r.hard_macro_f1 ? pct(r.hard_macro_f1.value) : '-']),
    [`${c.reference.label}${c.reference_not_comparable ? ' (NOT COMPARABLE)' : ''}`, pct(c.reference.macro_f1), '-', ...c.behaviors.map((b) => (b === 'proactive' ? `${pct(c.reference.proactive_f1.standard_sft)} -> ${pct(c.reference.proactive_f1.behaviorsft)}` : '-')), '-'],
  ];
}

export function formatComparison(c: Comparison): string[] {
  const out = table(rows(c));
  if (c.reference_not_comparable) out.push(`note: ${c.reference_not_comparable}`);
  if (c.deltas.length) {
    out.push('', `deltas versus ${c.deltas[0]!.versus} (paired case bootstrap, 95% CI):`);
    out.push(...table([
      ['run', 'macro-F1', 'accuracy', ...c.behaviors.map((b) => `${b} F1`)],
      ...c.deltas.map((d) => [d.label, sign(d.macro_f1), sign(d.accuracy), ...c.behaviors.map((b) => sign(d.per_class_f1[b]!))]),
    ]).map((l) => `  ${l}`));
  }
  return out;
}

export function markdown(c: Comparison): string {
  const md = (r: string[][]) => [`| ${r[0]!.join(' | ')} |`, `|${r[0]!.map(() => '---').join('|')}|`, ...r.slice(1).map((x) => `| ${x.join(' | ')} |`)].join('\n');
  const parts = ['# BehaviorBench report', '', md(rows(c))];
  if (c.reference_not_comparable) parts.push('', `**Note:** ${c.reference_not_comparable}.`);
  if (c.deltas.length) {
    parts.push('', `## Deltas versus ${c.deltas[0]!.versus}`, '', md([
      ['run', 'macro-F1', 'accuracy', ...c.behaviors.map((b) => `${b} F1`)],
      ...c.deltas.map((d) => [d.label, sign(d.macro_f1), sign(d.accuracy), ...c.behaviors.map((b) => sign(d.per_class_f1[b]!))]),
    ]));
  }
  parts.push('', '## Accuracy per category', '', md([
    ['category', ...c.runs.map((r) => r.label)],
    ...c.categories.map((cat) => [cat, ...c.runs.map((r) => (r.per_category[cat] ? est(r.per_category[cat]!) : '-'))]),
  ]));
  parts.push('', '## Conventions', '', ...c.conventions.map((x) => `- ${x}`), '');
  return parts.join('\n');
}

const esc = (s: string) => s.replace(/[&<>"]/g, (ch) => ({ '&': '&amp;', '<': '&lt;', '>': '&gt;', '"': '&quot;' })[ch]!);

function heatmap(run: Comparison['runs'][number], behaviors: string[]): string {
  const cols = [...behaviors, 'none'];
  const cell = 64;
  const left = 90;
  const top = 40;
  const max = Math.max(1, ...run.confusion.flat());
  const rects = run.confusion.flatMap((row, g) => row.map((v, p) => {
    const shade = Math.round(255 - (v / max) * 200);
    const fill = g === p ? `rgb(${shade},${Math.min(255, shade + 40)},${shade})` : `rgb(255,${shade},${shade})`;
    return `<rect x="${left + p * cell}" y="${top + g * cell}" width="${cell - 2}" height="${cell - 2}" fill="${fill}"><title>gold ${esc(behaviors[g]!)}, predicted ${esc(cols[p]!)}: ${v}</title></rect>` +
      `<text x="${left + p * cell + cell / 2 - 1}" y="${top + g * cell + cell / 2 + 4}" text-anchor="middle" font-size="13">${v}</text>`;
  }));
  const colLabels = cols.map((c, p) => `<text x="${left + p * cell + cell / 2}" y="${top - 8}" text-anchor="middle" font-size="11">${esc(c)}</text>`);
  const rowLabels = behaviors.map((b, g) => `<text x="${left - 6}" y="${top + g * cell + cell / 2 + 4}" text-anchor="end" font-size="11">${esc(b)}</text>`);
  const w = left + cols.length * cell + 10;
  const h = top + behaviors.length * cell + 24;
  return `<svg class="heatmap" xmlns="http://www.w3.org/2000/svg" width="${w}" height="${h}" role="img" aria-label="confusion matrix">` +
    `<text x="${left}" y="14" font-size="12">predicted →   (rows: gold)</text>${colLabels.join('')}${rowLabels.join('')}${rects.join('')}</svg>`;
}

const PALETTE = ['#2b6cb0', '#c05621', '#2f855a', '#6b46c1', '#b83280', '#4a5568'];

function bars(c: Comparison): string {
  const rowH = 14 * c.runs.length + 10;
  const left = 210;
  const width = 420;
  const h = 30 + c.categories.length * rowH;
  const parts: string[] = [];
  c.categories.forEach((cat, i) => {
    const y = 30 + i * rowH;
    parts.push(`<text x="${left - 8}" y="${y + rowH / 2}" text-anchor="end" font-size="11">${esc(cat)}</text>`);
    c.runs.forEach((r, j) => {
      const v = r.per_category[cat]?.value ?? 0;
      parts.push(`<rect class="bar" x="${left}" y="${y + j * 14}" width="${Math.max(1, v * width)}" height="12" fill="${PALETTE[j % PALETTE.length]}"><title>${esc(r.label)}: ${pct(v)}%</title></rect>`);
      parts.push(`<text x="${left + Math.max(1, v * width) + 4}" y="${y + j * 14 + 10}" font-size="10">${pct(v)}</text>`);
    });
  });
  const legend = c.runs.map((r, j) => `<rect x="${left + j * 150}" y="4" width="10" height="10" fill="${PALETTE[j % PALETTE.length]}"/><text x="${left + j * 150 + 14}" y="13" font-size="11">${esc(r.label.slice(0, 22))}</text>`);
  return `<svg class="bars" xmlns="http://www.w3.org/2000/svg" width="${left + width + 60}" height="${h}" role="img" aria-label="accuracy per category">${legend.join('')}${parts.join('')}</svg>`;
}

/** One self-contained HTML page: tables plus SVG charts (confusion heatmaps, per-category bars). No scripts, no network. */
export function html(c: Comparison): string {
  const tableHtml = (r: string[][]) =>
    `<table><thead><tr>${r[0]!.map((x) => `<th>${esc(x)}</th>`).join('')}</tr></thead><tbody>${r.slice(1).map((row) => `<tr>${row.map((x) => `<td>${esc(x)}</td>`).join('')}</tr>`).join('')}</tbody></table>`;
  const deltaRows = c.deltas.length ? `<h2>Deltas versus ${esc(c.deltas[0]!.versus)}</h2>${tableHtml([
    ['run', 'macro-F1', 'accuracy', ...c.behaviors.map((b) => `${b} F1`)],
    ...c.deltas.map((d) => [d.label, sign(d.macro_f1), sign(d.accuracy), ...c.behaviors.map((b) => sign(d.per_class_f1[b]!))]),
  ])}` : '';
  return `<!doctype html>
<html lang="en"><head><meta charset="utf-8"><title>BehaviorBench report</title>
<style>
body{font-family:system-ui,-apple-system,"DejaVu Sans",sans-serif;margin:24px;color:#1a202c;max-width:1100px}
table{border-collapse:collapse;margin:8px 0 20px}th,td{border:1px solid #cbd5e0;padding:4px 8px;font-size:13px;text-align:right}
th:first-child,td:first-child{text-align:left}th{background:#edf2f7}.charts{display:flex;flex-wrap:wrap;gap:24px}
figure{margin:0}figcaption{font-size:12px;color:#4a5568}
</style></head><body>
<h1>BehaviorBench report</h1>
${tableHtml(rows(c))}
${c.reference_not_comparable ? `<p class="note"><strong>Note:</strong> ${esc(c.reference_not_comparable)}.</p>` : ''}
${deltaRows}
<h2>Confusion matrices</h2>
<div class="charts">${c.runs.map((r) => `<figure>${heatmap(r, c.behaviors)}<figcaption>${esc(r.label)}</figcaption></figure>`).join('')}</div>
<h2>Accuracy per category</h2>
${bars(c)}
<h2>Conventions</h2><ul>${c.conventions.map((x) => `<li>${esc(x)}</li>`).join('')}</ul>
</body></html>
`;
}
