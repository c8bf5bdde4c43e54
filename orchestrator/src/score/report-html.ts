import { pct } from './format.js';
import type { Estimate } from './metrics.js';
import type { StudyResult } from '../study/stats.js';
import { studySection } from '../study/report-section.js';
import { balanceRows, categoryRows, deltaRows, forcedBehaviors, judgeRows, leaderboardRows, metaRows, scoreRows, steeringRows, type ComparedRun, type Comparison } from './report.js';

/**
 * The HTML form of a report: one self-contained page (inline SVG, no scripts, no network). Every chart is an
 * `<svg class="chart">` whose data marks carry class "mark", so a test can tell an empty chart from a drawn one.
 */

export const esc = (s: string) => s.replace(/[&<>"]/g, (ch) => ({ '&': '&amp;', '<': '&lt;', '>': '&gt;', '"': '&quot;' })[ch]!);
const PALETTE = ['#2b6cb0', '#c05621', '#2f855a', '#6b46c1', '#b83280', '#4a5568'];
const colour = (j: number) => PALETTE[j % PALETTE.length]!;
const f = (v: number) => (Math.round(v * 10) / 10).toString();

interface LegendItem {
  label: string;
  colour: string;
  /** swatch shape: a filled box (bars), a line (curves), a dashed line, a dot. */
  shape?: 'box' | 'line' | 'dash' | 'dot';
}

/** A legend laid out left to right, wrapping at `width`; returns the SVG and the height it took. */
function legend(items: LegendItem[], x: number, y: number, width: number): { svg: string; height: number } {
  const parts: string[] = [];
  let cx = x;
  let cy = y;
  for (const it of items) {
    const w = 26 + it.label.length * 6.2;
    if (cx + w > x + width && cx > x) {
      cx = x;
      cy += 16;
    }
    const swatch = it.shape === 'line' || it.shape === 'dash'
      ? `<line x1="${cx}" y1="${cy + 5}" x2="${cx + 16}" y2="${cy + 5}" stroke="${it.colour}" stroke-width="2"${it.shape === 'dash' ? ' stroke-dasharray="4 3"' : ''}/>`
      : it.shape === 'dot' ? `<circle cx="${cx + 8}" cy="${cy + 5}" r="4" fill="${it.colour}"/>`
      : `<rect x="${cx}" y="${cy}" width="12" height="10" fill="${it.colour}" stroke="#a0aec0" stroke-width="0.5"/>`;
    parts.push(`<g class="legend-item">${swatch}<text x="${cx + 20}" y="${cy + 9}" font-size="11">${esc(it.label)}</text></g>`);
    cx += w;
  }
  return { svg: `<g class="legend">${parts.join('')}</g>`, height: cy - y + 18 };
}

const runLegend = (c: Comparison): LegendItem[] => c.runs.map((r, j) => ({ label: r.label, colour: colour(j) }));

/** A vertical bar with its 95% interval as a whisker (capped line), value on top. */
function vbar(x: number, w: number, base: number, scale: number, e: Estimate, fill: string, title: string): string {
  const top = base - e.value * scale;
  const whisker = e.ci
    ? `<g class="whisker" stroke="#1a202c" stroke-width="1"><line x1="${x + w / 2}" y1="${f(base - e.ci[1] * scale)}" x2="${x + w / 2}" y2="${f(base - e.ci[0] * scale)}"/>` +
      `<line x1="${x + w / 2 - 3}" y1="${f(base - e.ci[1] * scale)}" x2="${x + w / 2 + 3}" y2="${f(base - e.ci[1] * scale)}"/>` +
      `<line x1="${x + w / 2 - 3}" y1="${f(base - e.ci[0] * scale)}" x2="${x + w / 2 + 3}" y2="${f(base - e.ci[0] * scale)}"/></g>`
    : '';
  const ci = e.ci ? ` [${pct(e.ci[0])}, ${pct(e.ci[1])}]` : '';
  return `<rect class="mark bar" x="${x}" y="${f(top)}" width="${w}" height="${f(Math.max(1, e.value * scale))}" fill="${fill}"><title>${esc(title)}: ${pct(e.value)}${ci}</title></rect>${whisker}`;
}

/** Horizontal gridlines at 0, 25, 50, 75, 100% with labels. */
function yGrid(left: number, right: number, base: number, scale: number): string {
  return [0, 0.25, 0.5, 0.75, 1].map((v) => `<line x1="${left}" y1="${f(base - v * scale)}" x2="${right}" y2="${f(base - v * scale)}" stroke="#e2e8f0"/>` +
    `<text x="${left - 6}" y="${f(base - v * scale + 4)}" text-anchor="end" font-size="10">${v * 100}</text>`).join('');
}

interface BarGroup {
  name: string;
  bars: { value: Estimate; colour: string; title: string }[];
}

/** Vertical bars in groups on a 0-100% axis, whiskers where a bar has an interval; `overlay` draws on top. */
function groupedBars(opts: { chart: string; aria: string; groups: BarGroup[]; legend: LegendItem[]; slots: number; height: number; overlay?: (y: (v: number) => number, left: number, right: number) => string }): string {
  const left = 40;
  const barW = 20;
  const groupW = Math.max(104, opts.slots * (barW + 4) + 28);
  const width = Math.max(480, left + opts.groups.length * groupW + 20);
  const lg = legend(opts.legend, left, 6, width - left);
  const base = lg.height + 14 + opts.height;
  const parts = [yGrid(left, width - 10, base, opts.height)];
  opts.groups.forEach((g, i) => {
    const x0 = left + 14 + i * groupW;
    g.bars.forEach((bar, k) => parts.push(vbar(x0 + k * (barW + 4), barW, base, opts.height, bar.value, bar.colour, bar.title)));
    parts.push(`<text x="${x0 + (opts.slots * (barW + 4)) / 2}" y="${base + 16}" text-anchor="middle" font-size="11">${esc(g.name)}</text>`);
  });
  if (opts.overlay) parts.push(opts.overlay((v) => base - v * opts.height, left, left + 14 + groupW));
  return `<svg class="chart" data-chart="${opts.chart}" xmlns="http://www.w3.org/2000/svg" width="${width}" height="${base + 28}" role="img" aria-label="${esc(opts.aria)}">${lg.svg}${parts.join('')}</svg>`;
}

/** Macro-F1 and each behavior's F1, one bar per run with its interval; the paper's macro-F1 as a dashed line. */
function scoreChart(c: Comparison): string {
  const metrics: { name: string; of: (r: ComparedRun) => Estimate | undefined }[] = [
    { name: 'macro-F1', of: (r) => r.macro_f1 },
    ...c.behaviors.map((b) => ({ name: `${b} F1`, of: (r: ComparedRun) => r.per_class_f1[b] })),
  ];
  return groupedBars({
    chart: 'scores',
    aria: 'macro-F1 and per-behavior F1 with 95% intervals',
    slots: c.runs.length,
    height: 200,
    legend: [...runLegend(c), { label: `paper macro-F1${c.reference_not_comparable ? ' (not comparable)' : ''}`, colour: '#718096', shape: 'dash' },
      { label: `majority baseline (always ${c.majority.behavior})`, colour: '#e53e3e', shape: 'dash' }],
    groups: metrics.map((m) => ({
      name: m.name,
      bars: c.runs.flatMap((r, j) => { const e = m.of(r); return e ? [{ value: e, colour: colour(j), title: `${r.label}, ${m.name}` }] : []; }),
    })),
    overlay: (y, x1, x2) => `<line class="reference" x1="${x1}" y1="${f(y(c.reference.macro_f1))}" x2="${x2}" y2="${f(y(c.reference.macro_f1))}" stroke="#718096" stroke-dasharray="4 3"><title>${esc(c.reference.label)}: ${pct(c.reference.macro_f1)}</title></line>` +
      `<line class="baseline" x1="${x1}" y1="${f(y(c.majority.macro_f1))}" x2="${x2}" y2="${f(y(c.majority.macro_f1))}" stroke="#e53e3e" stroke-dasharray="2 2"><title>majority baseline (always ${esc(c.majority.behavior)}): ${pct(c.majority.macro_f1)}</title></line>`,
  });
}

/**
 * The top of a loss axis: the highest loss, unless the first tenth of the steps rises well above everything after it
 * (an early spike would flatten the rest of the curve): then the axis is clipped a little above the later losses,
 * and the chart says so.
 */
export function lossAxisTop(loss: number[], evalLoss: number[]): { top: number; clipped: boolean; highest: number } {
  const finite = [...loss, ...evalLoss].filter(Number.isFinite);
  const highest = Math.max(...finite, 1e-9);
  const later = [...loss.slice(Math.ceil(loss.length / 10)), ...evalLoss].filter(Number.isFinite);
  const laterMax = Math.max(...later, 1e-9);
  return later.length >= 5 && highest > 1.5 * laterMax ? { top: laterMax * 1.1, clipped: true, highest } : { top: highest, clipped: false, highest };
}

/** A run's training curve: loss per step (left axis), learning rate (right axis, dashed), val loss per eval (dots). */
function curveChart(r: ComparedRun): string {
  const curve = r.curve!;
  const [left, right, width, height] = [56, 60, 520, 230];
  const axis = lossAxisTop(curve.loss, curve.eval.map((e) => e.loss));
  const lossLabel = axis.clipped ? `train loss (axis clipped at ${axis.top.toPrecision(3)}; the first steps reach ${axis.highest.toPrecision(3)})` : 'train loss';
  const lg = legend([{ label: lossLabel, colour: '#2b6cb0', shape: 'line' }, { label: 'learning rate', colour: '#c05621', shape: 'dash' },
    ...(curve.eval.length ? [{ label: 'val loss', colour: '#2f855a', shape: 'dot' as const }] : [])], left, 6, width - left - right);
  const top = lg.height + 12;
  const bottom = height - 30;
  const steps = [...curve.step, ...curve.eval.map((e) => e.step)];
  const [s0, s1] = [Math.min(...steps), Math.max(...steps, Math.min(...steps) + 1)];
  const losses = [...curve.loss, ...curve.eval.map((e) => e.loss)];
  const [l0, l1] = [Math.min(0, ...losses), axis.top];
  const lrs = curve.lr.filter(Number.isFinite);
  const lrMax = Math.max(...lrs, 1e-12);
  const x = (s: number) => left + ((s - s0) / (s1 - s0)) * (width - left - right);
  const yL = (v: number) => bottom - ((Math.min(v, l1) - l0) / (l1 - l0)) * (bottom - top); // clipped values sit on the top
  const yR = (v: number) => bottom - (v / lrMax) * (bottom - top);
  const line = (ys: number[], y: (v: number) => number) => ys.map((v, i) => (Number.isFinite(v) ? `${i === 0 ? 'M' : 'L'}${f(x(curve.step[i]!))},${f(y(v))}` : '')).join('');
  const ticks = [0, 0.5, 1].map((t) => {
    const lv = l0 + t * (l1 - l0);
    return `<text x="${left - 6}" y="${f(yL(lv) + 4)}" text-anchor="end" font-size="10">${lv.toPrecision(3)}</text>` +
      `<text x="${width - right + 6}" y="${f(yR(t * lrMax) + 4)}" font-size="10">${(t * lrMax).toExponential(1)}</text>` +
      `<line x1="${left}" y1="${f(yL(lv))}" x2="${width - right}" y2="${f(yL(lv))}" stroke="#e2e8f0"/>`;
  });
  const xTicks = [s0, Math.round((s0 + s1) / 2), s1].map((s) => `<text x="${f(x(s))}" y="${bottom + 14}" text-anchor="middle" font-size="10">${s}</text>`);
  return `<svg class="chart" data-chart="curve" xmlns="http://www.w3.org/2000/svg" width="${width}" height="${height}" role="img" aria-label="training curve of ${esc(r.label)}">` +
    `${lg.svg}${ticks.join('')}${xTicks.join('')}<text x="${(left + width - right) / 2}" y="${height - 4}" text-anchor="middle" font-size="10">step</text>` +
    `<path class="mark" d="${line(curve.loss, yL)}" fill="none" stroke="#2b6cb0" stroke-width="1.6"><title>train loss</title></path>` +
    (lrs.length ? `<path class="mark" d="${line(curve.lr, yR)}" fill="none" stroke="#c05621" stroke-width="1.2" stroke-dasharray="4 3"><title>learning rate</title></path>` : '') +
    curve.eval.map((e) => `<circle class="mark" cx="${f(x(e.step))}" cy="${f(yL(e.loss))}" r="3.5" fill="#2f855a"><title>val loss at step ${e.step}: ${e.loss.toFixed(4)}</title></circle>`).join('') +
    '</svg>';
}

/**
 * The proactivity trade-off of every balanced run on one chart (bsft balance, validation split): missed
 * intervention against needless intervention along the proactive offset, the default point (offsets 0) a circle,
 * the chosen point a square; hover a point for its offset and figures.
 */
function tradeoffChart(c: Comparison): string {
  const runs = c.runs.map((r, j) => ({ r, j })).filter(({ r }) => r.balance);
  const [left, right, width, height] = [56, 20, 460, 320];
  const lg = legend([...runs.map(({ r, j }) => ({ label: r.label, colour: colour(j) })),
    { label: 'default (offsets 0)', colour: '#1a202c', shape: 'dot' as const }, { label: 'chosen point', colour: '#1a202c' }], left, 6, width - left - right);
  const top = lg.height + 12;
  const bottom = height - 36;
  const x = (v: number) => left + v * (width - left - right);
  const y = (v: number) => bottom - v * (bottom - top);
  const grid = [0, 0.25, 0.5, 0.75, 1].map((t) => `<line x1="${f(x(0))}" y1="${f(y(t))}" x2="${f(x(1))}" y2="${f(y(t))}" stroke="#e2e8f0"/>` +
    `<text x="${left - 6}" y="${f(y(t) + 4)}" text-anchor="end" font-size="10">${t * 100}%</text>` +
    `<text x="${f(x(t))}" y="${bottom + 14}" text-anchor="middle" font-size="10">${t * 100}%</text>`).join('');
  const parts = runs.map(({ r, j }) => {
    const b = r.balance!;
    const path = b.curve.map((p, i) => `${i === 0 ? 'M' : 'L'}${f(x(p.over_intervention.value))},${f(y(p.missed_intervention.value))}`).join('');
    const zero = b.curve.find((p) => p.offset === 0);
    const tip = (name: string, m: { over_intervention: { value: number }; missed_intervention: { value: number }; macro_f1: { value: number } }) =>
      `${esc(r.label)}, ${name}: missed ${f(100 * m.missed_intervention.value)}%, needless ${f(100 * m.over_intervention.value)}%, macro-F1 ${f(100 * m.macro_f1.value)}`;
    const chosen = b.val.chosen;
    return `<path class="mark" d="${path}" fill="none" stroke="${colour(j)}" stroke-width="1.6"><title>${esc(r.label)}: along the proactive offset ${b.curve[0]!.offset} to ${b.curve.at(-1)!.offset}</title></path>` +
      (zero ? `<circle class="mark point-default" cx="${f(x(zero.over_intervention.value))}" cy="${f(y(zero.missed_intervention.value))}" r="4.5" fill="${colour(j)}"><title>${tip('default', b.val.default)}</title></circle>` : '') +
      `<rect class="mark point-chosen" x="${f(x(chosen.over_intervention.value) - 5)}" y="${f(y(chosen.missed_intervention.value) - 5)}" width="10" height="10" fill="none" stroke="${colour(j)}" stroke-width="2"><title>${tip(`chosen (${Object.entries(b.offsets).map(([k, v]) => `${k} ${v}`).join(', ')})`, chosen)}</title></rect>`;
  });
  return `<svg class="chart" data-chart="balance" xmlns="http://www.w3.org/2000/svg" width="${width}" height="${height}" role="img" aria-label="missed against needless intervention along the proactive offset">` +
    `${lg.svg}${grid}<text x="${(left + width - right) / 2}" y="${height - 8}" text-anchor="middle" font-size="11">needless intervention (proactive where not needed)</text>` +
    `<text x="12" y="${(top + bottom) / 2}" transform="rotate(-90 12 ${(top + bottom) / 2})" text-anchor="middle" font-size="11">missed intervention</text>${parts.join('')}</svg>`;
}

/** Macro-F1 (validation) along the proactive offset for every balanced run, the chosen offset marked. */
function balanceF1Chart(c: Comparison): string {
  const runs = c.runs.map((r, j) => ({ r, j })).filter(({ r }) => r.balance);
  const [left, right, width, height] = [56, 20, 460, 260];
  const lg = legend(runs.map(({ r, j }) => ({ label: r.label, colour: colour(j) })), left, 6, width - left - right);
  const top = lg.height + 12;
  const bottom = height - 36;
  const offsets = runs.flatMap(({ r }) => r.balance!.curve.map((p) => p.offset));
  const [o0, o1] = [Math.min(...offsets), Math.max(...offsets, Math.min(...offsets) + 1)];
  const x = (v: number) => left + ((v - o0) / (o1 - o0)) * (width - left - right);
  const y = (v: number) => bottom - v * (bottom - top);
  const grid = [0, 0.5, 1].map((t) => `<line x1="${left}" y1="${f(y(t))}" x2="${width - right}" y2="${f(y(t))}" stroke="#e2e8f0"/><text x="${left - 6}" y="${f(y(t) + 4)}" text-anchor="end" font-size="10">${t * 100}</text>`).join('') +
    [o0, 0, o1].map((o) => `<text x="${f(x(o))}" y="${bottom + 14}" text-anchor="middle" font-size="10">${o}</text>`).join('');
  const parts = runs.map(({ r, j }) => {
    const b = r.balance!;
    const p = b.offsets.proactive ?? 0;
    const at = b.curve.find((q) => q.offset === p);
    return `<path class="mark" d="${b.curve.map((q, i) => `${i === 0 ? 'M' : 'L'}${f(x(q.offset))},${f(y(q.macro_f1.value))}`).join('')}" fill="none" stroke="${colour(j)}" stroke-width="1.6"><title>${esc(r.label)}: validation macro-F1 along the proactive offset</title></path>` +
      (at ? `<rect class="mark point-chosen" x="${f(x(p) - 5)}" y="${f(y(at.macro_f1.value) - 5)}" width="10" height="10" fill="none" stroke="${colour(j)}" stroke-width="2"><title>${esc(r.label)}: chosen, proactive ${p}: macro-F1 ${f(100 * at.macro_f1.value)}</title></rect>` : '');
  });
  return `<svg class="chart" data-chart="balance-f1" xmlns="http://www.w3.org/2000/svg" width="${width}" height="${height}" role="img" aria-label="validation macro-F1 along the proactive offset">` +
    `${lg.svg}${grid}<text x="${(left + width - right) / 2}" y="${height - 8}" text-anchor="middle" font-size="11">offset on the proactive token (nats; the other offsets at the chosen point's)</text>${parts.join('')}</svg>`;
}

/** Confusion counts (rows gold, columns predicted): green on the diagonal (right), red off it (wrong). */
function heatmap(r: ComparedRun, behaviors: string[]): string {
  const cols = [...behaviors, 'none'];
  const cell = 64;
  const left = 90;
  const top = 40;
  const max = Math.max(1, ...r.confusion.flat());
  const shade = (v: number) => Math.round(255 - (v / max) * 200);
  const fill = (right: boolean, v: number) => (right ? `rgb(${shade(v)},${Math.min(255, shade(v) + 40)},${shade(v)})` : `rgb(255,${shade(v)},${shade(v)})`);
  const rects = r.confusion.flatMap((row, g) => row.map((v, p) =>
    `<rect class="mark" x="${left + p * cell}" y="${top + g * cell}" width="${cell - 2}" height="${cell - 2}" fill="${fill(g === p, v)}"><title>gold ${esc(behaviors[g]!)}, predicted ${esc(cols[p]!)}: ${v}</title></rect>` +
    `<text x="${left + p * cell + cell / 2 - 1}" y="${top + g * cell + cell / 2 + 4}" text-anchor="middle" font-size="13">${v}</text>`));
  const colLabels = cols.map((c, p) => `<text x="${left + p * cell + cell / 2}" y="${top - 8}" text-anchor="middle" font-size="11">${esc(c)}</text>`);
  const rowLabels = behaviors.map((b, g) => `<text x="${left - 6}" y="${top + g * cell + cell / 2 + 4}" text-anchor="end" font-size="11">${esc(b)}</text>`);
  const w = left + cols.length * cell + 10;
  // The legend names each colour by what it counts: the darkest right and wrong cells as they are in this matrix.
  const maxRight = Math.max(0, ...r.confusion.map((row, g) => row[g] ?? 0));
  const maxWrong = Math.max(0, ...r.confusion.flatMap((row, g) => row.filter((_, p) => p !== g)));
  const lg = legend([
    { label: maxRight ? `right (darkest: ${maxRight})` : 'right (none)', colour: fill(true, maxRight) },
    { label: maxWrong ? `wrong (darkest: ${maxWrong})` : 'wrong (none)', colour: fill(false, maxWrong) },
    { label: '0 tasks', colour: fill(false, 0) },
  ], left, top + behaviors.length * cell + 8, w - left);
  return `<svg class="chart heatmap" data-chart="confusion" xmlns="http://www.w3.org/2000/svg" width="${w}" height="${top + behaviors.length * cell + 8 + lg.height}" role="img" aria-label="confusion matrix">` +
    `<text x="${left}" y="14" font-size="12">predicted →   (rows: gold)</text>${colLabels.join('')}${rowLabels.join('')}${rects.join('')}${lg.svg}</svg>`;
}

/** Accuracy per category, grouped under the behavior the category calls for, one bar per run with its interval. */
function categoryChart(c: Comparison): string {
  const rowH = 14 * c.runs.length + 8;
  const left = 210;
  const width = 420;
  const lg = legend(runLegend(c), left, 6, width + 40);
  let y = lg.height + 12;
  const parts: string[] = [];
  let group: string | undefined;
  for (const cat of c.categories) {
    const g = c.category_groups[cat] ?? '-';
    if (g !== group) {
      group = g;
      y += 6;
      parts.push(`<text class="group" x="8" y="${y + 10}" font-size="12" font-weight="bold">${esc(g)}</text><line x1="8" y1="${y + 14}" x2="${left + width}" y2="${y + 14}" stroke="#cbd5e0"/>`);
      y += 20;
    }
    parts.push(`<text x="${left - 8}" y="${y + rowH / 2}" text-anchor="end" font-size="11">${esc(cat)}</text>`);
    c.runs.forEach((r, j) => {
      const e = r.per_category[cat];
      if (!e) return;
      const by = y + j * 14;
      const whisker = e.ci ? `<line class="whisker" x1="${f(left + e.ci[0] * width)}" y1="${by + 6}" x2="${f(left + e.ci[1] * width)}" y2="${by + 6}" stroke="#1a202c"/>` +
        `<line x1="${f(left + e.ci[0] * width)}" y1="${by + 3}" x2="${f(left + e.ci[0] * width)}" y2="${by + 9}" stroke="#1a202c"/><line x1="${f(left + e.ci[1] * width)}" y1="${by + 3}" x2="${f(left + e.ci[1] * width)}" y2="${by + 9}" stroke="#1a202c"/>` : '';
      parts.push(`<rect class="mark bar" x="${left}" y="${by}" width="${f(Math.max(1, e.value * width))}" height="12" fill="${colour(j)}"><title>${esc(r.label)}, ${esc(cat)}: ${pct(e.value)}${e.ci ? ` [${pct(e.ci[0])}, ${pct(e.ci[1])}]` : ''}</title></rect>${whisker}`);
      parts.push(`<text x="${f(left + Math.max(e.ci?.[1] ?? 0, e.value) * width + 6)}" y="${by + 10}" font-size="10">${pct(e.value)}</text>`);
    });
    y += rowH;
  }
  return `<svg class="chart bars" data-chart="categories" xmlns="http://www.w3.org/2000/svg" width="${left + width + 60}" height="${y + 10}" role="img" aria-label="accuracy per category">${lg.svg}${parts.join('')}</svg>`;
}

/** Steering: for each forced behavior, how often each run's reply showed it. */
function steeringChart(c: Comparison): string {
  const runs = c.runs.map((r, j) => ({ r, j })).filter(({ r }) => Object.keys(r.steering).length);
  return groupedBars({
    chart: 'steering',
    aria: 'steering accuracy per forced behavior',
    slots: runs.length,
    height: 160,
    legend: runs.map(({ r, j }) => ({ label: r.label, colour: colour(j) })),
    groups: forcedBehaviors(c).map((b) => ({
      name: `forced ${b}`,
      bars: runs.flatMap(({ r, j }) => {
        const s = r.steering[b];
        return s?.accuracy != null ? [{ value: { value: s.accuracy }, colour: colour(j), title: `${r.label}, forced ${b} (${s.judged} judged)` }] : [];
      }),
    })),
  });
}

/** The study's overall preference per pair of runs: one stacked bar each (first run preferred, tie, second preferred). */
/** Stacked bars, one per pair of runs and question: first run preferred, tie, second preferred (shares of ratings). */
function preferenceChart(s: StudyResult): string {
  const left = 360;
  const width = 420;
  const rowH = 24;
  const parts: string[] = [];
  let y = 10;
  for (const p of s.pairs) {
    parts.push(`<text x="4" y="${y + 13}" font-size="11" font-weight="bold">${esc(`${p.a} vs ${p.b}`)}</text>`);
    y += 20;
    for (const q of s.questions) {
      const x = p.questions[q.id]!;
      parts.push(`<text x="${left - 8}" y="${y + 13}" text-anchor="end" font-size="11">${esc(q.id)} (${x.n})</text>`);
      let at = left;
      for (const [name, e, fill] of [['first preferred', x.win, '#2b6cb0'], ['tie', x.tie, '#a0aec0'], ['second preferred', x.loss, '#ed8936']] as const) {
        if (!Number.isFinite(e.value)) continue;
        const w = e.value * width;
        parts.push(`<rect class="mark" data-question="${esc(q.id)}" x="${at.toFixed(1)}" y="${y}" width="${Math.max(0, w).toFixed(1)}" height="18" fill="${fill}"><title>${esc(`${p.a} vs ${p.b}, ${q.id}: ${name} ${pct(e.value)}%${e.ci ? ` [${pct(e.ci[0])}, ${pct(e.ci[1])}]` : ''}`)}</title></rect>`);
        if (w > 28) parts.push(`<text x="${(at + w / 2).toFixed(1)}" y="${y + 13}" text-anchor="middle" font-size="10" fill="#fff">${pct(e.value)}</text>`);
        at += w;
      }
      y += rowH;
    }
  }
  const legend = `<text x="${left}" y="${y + 14}" font-size="11"><tspan fill="#2b6cb0">■ first run preferred</tspan>  <tspan fill="#718096">■ tie</tspan>  <tspan fill="#dd6b20">■ second run preferred</tspan></text>`;
  return `<figure><svg class="chart" data-chart="study" xmlns="http://www.w3.org/2000/svg" width="${left + width + 20}" height="${y + 24}" role="img" aria-label="preference per pair of runs and question">${parts.join('')}${legend}</svg><figcaption>preference per pair of runs and question, share of ratings (ratings in brackets; hover a bar for its 95% interval)</figcaption></figure>`;
}

export const tableHtml = (r: string[][], cls = '') =>
  `<table${cls ? ` class="${cls}"` : ''}><thead><tr>${r[0]!.map((x) => `<th>${esc(x)}</th>`).join('')}</tr></thead><tbody>${r.slice(1).map((row) => `<tr>${row.map((x) => `<td>${esc(x)}</td>`).join('')}</tr>`).join('')}</tbody></table>`;

/**
 * The leaderboard as horizontal bars, highest macro-F1 first: trained runs in one colour, models evaluated as they
 * ship in another, the paper's published figure in grey; whiskers: 95% intervals.
 */
function leaderboardChart(c: Comparison): string {
  const rows = [
    ...c.runs.map((r) => ({ label: r.label, e: r.macro_f1, kind: !r.meta ? 'file' : r.meta.method === 'none' ? 'shipped' : 'trained' })),
    { label: c.reference.label, e: { value: c.reference.macro_f1 } as Estimate, kind: 'paper' },
  ].sort((a, b) => b.e.value - a.e.value);
  const fill = { trained: '#2b6cb0', shipped: '#c05621', file: '#4a5568', paper: '#a0aec0' } as Record<string, string>;
  const left = 300;
  const width = 760;
  const scale = width - left - 60;
  const lg = legend([{ label: 'trained (bsft)', colour: fill.trained! }, { label: 'evaluated as it ships', colour: fill.shipped! }, { label: 'published', colour: fill.paper! }], left, 6, width - left);
  const top = lg.height + 12;
  const parts = [0, 0.25, 0.5, 0.75, 1].map((v) => `<line x1="${f(left + v * scale)}" y1="${top}" x2="${f(left + v * scale)}" y2="${top + rows.length * 24}" stroke="#e2e8f0"/><text x="${f(left + v * scale)}" y="${top + rows.length * 24 + 14}" text-anchor="middle" font-size="10">${v * 100}</text>`);
  rows.forEach((r, i) => {
    const y = top + i * 24 + 4;
    const ci = r.e.ci ? ` [${pct(r.e.ci[0])}, ${pct(r.e.ci[1])}]` : '';
    parts.push(`<text x="${left - 8}" y="${y + 12}" text-anchor="end" font-size="11">${esc(r.label.length > 46 ? `${r.label.slice(0, 45)}…` : r.label)}</text>`);
    parts.push(`<rect class="mark bar ${r.kind}" x="${left}" y="${y}" width="${f(Math.max(1, r.e.value * scale))}" height="16" fill="${fill[r.kind]}"><title>${esc(r.label)}: macro-F1 ${pct(r.e.value)}${ci}</title></rect>`);
    if (r.e.ci) parts.push(`<line class="whisker" x1="${f(left + r.e.ci[0] * scale)}" y1="${y + 8}" x2="${f(left + r.e.ci[1] * scale)}" y2="${y + 8}" stroke="#1a202c"/>`);
    parts.push(`<text x="${f(left + r.e.value * scale + 6)}" y="${y + 12}" font-size="10">${pct(r.e.value)}</text>`);
  });
  return `<svg class="chart" data-chart="leaderboard" xmlns="http://www.w3.org/2000/svg" width="${width}" height="${top + rows.length * 24 + 24}" role="img" aria-label="leaderboard by macro-F1">${lg.svg}${parts.join('')}</svg>`;
}

/** The page style of every report page. */
export const STYLE = `<style>
body{font-family:system-ui,-apple-system,"DejaVu Sans",sans-serif;margin:24px;color:#1a202c;max-width:1200px}
table{border-collapse:collapse;margin:8px 0 20px}th,td{border:1px solid #cbd5e0;padding:4px 8px;font-size:13px;text-align:right}
th:first-child,td:first-child{text-align:left}th{background:#edf2f7;white-space:nowrap}.charts{display:flex;flex-wrap:wrap;gap:24px}
table.meta td{text-align:left}figure{margin:0}figcaption{font-size:12px;color:#4a5568}
.note{background:#fffbea;border-left:4px solid #d69e2e;padding:6px 10px}
</style>`;

export function html(c: Comparison): string {
  const steering = forcedBehaviors(c).length && c.runs.some((r) => Object.values(r.steering).some((s) => s.accuracy !== null));
  const curves = c.runs.filter((r) => r.curve);
  return `<!doctype html>
<html lang="en"><head><meta charset="utf-8"><title>BehaviorBench report</title>
${STYLE}</head><body>
<h1>BehaviorBench report</h1>
${tableHtml(scoreRows(c))}
${c.reference_not_comparable ? `<p class="note"><strong>Paper row not comparable:</strong> ${esc(c.reference_not_comparable)}.</p>` : ''}
<figure>${scoreChart(c)}<figcaption>bars: point estimates; whiskers: 95% case-bootstrap intervals</figcaption></figure>
${c.runs.length > 1 ? `<h2>Leaderboard</h2>${tableHtml(leaderboardRows(c))}<figure>${leaderboardChart(c)}<figcaption>macro-F1 by model, highest first; whiskers: 95% intervals</figcaption></figure>` : ''}
${c.deltas.length ? `<h2>Deltas versus ${esc(c.deltas[0]!.versus)}</h2>${tableHtml(deltaRows(c))}` : ''}
<h2>Runs</h2>
${tableHtml(metaRows(c), 'meta')}
${curves.length ? `<h2>Training curves</h2><div class="charts">${curves.map((r) => `<figure>${curveChart(r)}<figcaption>${esc(r.label)}</figcaption></figure>`).join('')}</div>` : ''}
${steering ? `<h2>Steering</h2>${tableHtml(steeringRows(c))}<figure>${steeringChart(c)}<figcaption>share of forced-token replies whose behavior is the forced one</figcaption></figure>` : ''}
${c.runs.some((r) => r.judge) ? `<h2>Labels and the judge</h2><p>Runs without behavior tokens are labelled by a judge model; its accuracy and Cohen's kappa on the gold replies say how far to trust those labels.</p>${tableHtml(judgeRows(c))}` : ''}
${c.runs.some((r) => r.balance) ? `<h2>Operating points</h2><p>How proactive each run is, chosen on the validation split by bsft balance: an offset on the behavior tokens moves every close call the same way. Left: along the offset on the proactive token, the share of conversations needing an intervention that did not get one (missed) against the share where the model stepped in needlessly; circle: the model as trained; square: the chosen point. The table gives both points on validation and test with 95% intervals.</p>${tableHtml(balanceRows(c))}<div class="charts"><figure>${tradeoffChart(c)}<figcaption>missed against needless intervention (validation)</figcaption></figure><figure>${balanceF1Chart(c)}<figcaption>macro-F1 along the proactive offset (validation)</figcaption></figure></div>` : ''}
<h2>Confusion matrices</h2>
<div class="charts">${c.runs.map((r) => `<figure>${heatmap(r, c.behaviors)}<figcaption>${esc(r.label)}</figcaption></figure>`).join('')}</div>
<h2>Accuracy per category</h2>
${tableHtml(categoryRows(c))}
<figure>${categoryChart(c)}<figcaption>grouped by the behavior each category calls for; whiskers: 95% intervals</figcaption></figure>
<h2>Conventions</h2><ul>${c.conventions.map((x) => `<li>${esc(x)}</li>`).join('')}</ul>
${c.study ? `<section id="study">${studySection(c.study, (r) => [tableHtml(r)], (h) => `<h2>${esc(h)}</h2>`, (p) => `<p>${esc(p)}</p>`, preferenceChart).join('\n')}</section>` : ''}
</body></html>
`;
}
