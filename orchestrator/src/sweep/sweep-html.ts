import { esc, STYLE, tableHtml } from '../score/report-html.js';
import { est, pct } from '../score/format.js';
import { pointText } from './points.js';
import { effectRows, rankRows, type SweepReport } from './sweep-report.js';

/**
 * The HTML form of a sweep report: the ranking, then one chart per swept key (each scored point at its value, with
 * its validation interval; the mean of each value joined by a line; the best point a square), then the best point
 * with its commands and its test score. Self-contained (inline SVG, no scripts); data marks carry class "mark".
 */

const f = (v: number) => (Math.round(v * 10) / 10).toString();

function effectChart(r: SweepReport, key: string): string {
  const effect = r.effects.find((e) => e.key === key)!;
  const values = effect.values.map((v) => v.value);
  const scored = r.points.filter((p) => p.val);
  const W = 440;
  const H = 250;
  const left = 48;
  const right = W - 16;
  const top = 16;
  const base = H - 44;
  const numeric = values.every((v) => typeof v === 'number');
  const nums = values as number[];
  const log = numeric && nums.every((v) => v > 0) && Math.max(...nums) / Math.min(...nums) >= 10;
  const span = (v: number) => (log ? Math.log10(v) : v);
  const lo = numeric ? span(Math.min(...nums)) : 0;
  const hi = numeric ? span(Math.max(...nums)) : values.length - 1;
  const slot = (v: unknown) => (numeric ? span(v as number) : values.findIndex((x) => JSON.stringify(x) === JSON.stringify(v)));
  const x = (v: unknown) => (hi === lo ? (left + right) / 2 : left + 24 + ((slot(v) - lo) / (hi - lo)) * (right - left - 48));
  const ys = scored.flatMap((p) => [p.val!.macro_f1.ci?.[0] ?? p.val!.macro_f1.value, p.val!.macro_f1.ci?.[1] ?? p.val!.macro_f1.value]);
  const ymin = Math.max(0, Math.floor((Math.min(...ys, 1) - 0.02) * 20) / 20);
  const ymax = Math.min(1, Math.ceil((Math.max(...ys, 0) + 0.02) * 20) / 20);
  const y = (v: number) => base - ((v - ymin) / Math.max(1e-9, ymax - ymin)) * (base - top);
  const parts: string[] = [];
  for (let t = 0; t <= 4; t++) {
    const v = ymin + ((ymax - ymin) * t) / 4;
    parts.push(`<line x1="${left}" y1="${f(y(v))}" x2="${right}" y2="${f(y(v))}" stroke="#e2e8f0"/><text x="${left - 6}" y="${f(y(v) + 4)}" text-anchor="end" font-size="10">${pct(v)}</text>`);
  }
  for (const v of effect.values) parts.push(`<text class="tick" x="${f(x(v.value))}" y="${base + 16}" text-anchor="middle" font-size="10">${esc(v.text)}</text>`);
  parts.push(`<text x="${(left + right) / 2}" y="${H - 8}" text-anchor="middle" font-size="11">${esc(key)}${log ? ' (log scale)' : ''}</text>`);
  // The mean of each value, joined: the key's effect with the other keys averaged out.
  const means = effect.values.filter((v) => v.mean_macro_f1 !== null);
  if (means.length > 1) parts.push(`<polyline class="mean" fill="none" stroke="#a0aec0" stroke-width="1.5" points="${means.map((v) => `${f(x(v.value))},${f(y(v.mean_macro_f1!))}`).join(' ')}"/>`);
  // Points sharing a value are spread a little sideways so that each stays visible.
  const seen = new Map<string, number>();
  const perValue = new Map<string, number>();
  for (const p of scored) perValue.set(JSON.stringify(p.values[key]), (perValue.get(JSON.stringify(p.values[key])) ?? 0) + 1);
  for (const p of [...scored].sort((a, b) => a.index - b.index)) {
    const k = JSON.stringify(p.values[key]);
    const i = seen.get(k) ?? 0;
    seen.set(k, i + 1);
    const n = perValue.get(k)!;
    const cx = x(p.values[key]) + (n > 1 ? (i - (n - 1) / 2) * Math.min(10, 60 / n) : 0);
    const e = p.val!.macro_f1;
    const best = p.rank === 1;
    const colour = best ? '#c05621' : '#2b6cb0';
    const title = `point ${p.index} (${pointText(p.values)}): val macro-F1 ${est(e)}${best ? ', best' : ''}`;
    if (e.ci) parts.push(`<line class="whisker" x1="${f(cx)}" y1="${f(y(e.ci[1]))}" x2="${f(cx)}" y2="${f(y(e.ci[0]))}" stroke="${colour}" stroke-width="1"/>`);
    parts.push(best
      ? `<rect class="mark best" x="${f(cx - 5)}" y="${f(y(e.value) - 5)}" width="10" height="10" fill="${colour}"><title>${esc(title)}</title></rect>`
      : `<circle class="mark" cx="${f(cx)}" cy="${f(y(e.value))}" r="4" fill="${colour}"><title>${esc(title)}</title></circle>`);
  }
  return `<svg class="chart" data-chart="sweep-effect" data-key="${esc(key)}" xmlns="http://www.w3.org/2000/svg" width="${W}" height="${H}" role="img" aria-label="${esc(`validation macro-F1 by ${key}`)}">${parts.join('')}</svg>`;
}

export function sweepHtml(r: SweepReport): string {
  const b = r.best;
  return `<!doctype html>
<html lang="en"><head><meta charset="utf-8"><title>Sweep ${esc(r.sweep)}</title>
${STYLE}</head><body>
<h1>Sweep ${esc(r.sweep)}</h1>
<p>${r.points.length} points (${r.method} over ${esc(r.keys.join(', '))}), ranked by macro-F1 on the <strong>validation</strong> split; the test split is scored for the chosen point only. Intervals: 95% case bootstrap (${r.bootstrap.resamples} resamples); "vs best": paired difference on the same tasks.</p>
${b ? `<h2>Best point</h2><p id="best">#${b.index}: <code>${esc(pointText(b.values))}</code> (${esc(b.run_id)})</p>
<p>Train it again: <code>${esc(b.command)}</code><br>Queue it: <code>${esc(b.submit_command)}</code></p>
<p>${b.test ? `Test split (this point only): macro-F1 ${esc(est(b.test.macro_f1))}, accuracy ${esc(est(b.test.accuracy))}, ${b.test.n_tasks} tasks.` : `Test split: not scored (${esc(b.test_reason ?? '')}).`}</p>` : '<p>No point has validation predictions yet.</p>'}
<h2>Ranking</h2>
${tableHtml(rankRows(r))}
<h2>Effect of each swept value</h2>
<p>Validation macro-F1 of each scored point at its value, with its 95% interval; square: the best point; line: the mean of the points with each value (the other keys averaged out).</p>
<div class="charts">${r.keys.map((k) => `<figure>${effectChart(r, k)}<figcaption>by ${esc(k)}</figcaption></figure>`).join('')}</div>
${r.effects.map((e) => tableHtml(effectRows(e))).join('\n')}
</body></html>
`;
}
