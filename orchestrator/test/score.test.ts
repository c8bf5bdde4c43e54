import { createHash } from 'node:crypto';
import { existsSync, mkdirSync, mkdtempSync, readFileSync, statSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import path from 'node:path';
import { describe, expect, it } from 'vitest';
import type { GoldTask, Prediction } from '../src/score/inputs.js';
import { metricsOf, score } from '../src/score/metrics.js';
import { lossAxisTop } from '../src/score/report-html.js';
import { balance, type BalanceTasks } from '../src/score/balance.js';
import { Rng } from '../src/util/rng.js';
import { openPage } from './helpers/browser.js';
import { bsft, ROOT } from './helpers/cli.js';
import { limit } from './helpers/time-scale.js';

const B = ['reactive', 'proactive', 'restraint'];

function gold(n: number, seed: number, perCase = 4): GoldTask[] {
  const rng = new Rng(seed);
  return Array.from({ length: n }, (_, i) => ({
    id: `t${i}`,
    case_id: `c${Math.floor(i / perCase)}`,
    category: `cat${i % 5}`,
    behavior: B[Math.floor(rng.next() * 3)]!,
    hard: i % 7 === 0,
    ...(i % 3 === 0 ? { answer: 'ABCD'[i % 4]! } : {}),
  }));
}

function predictions(g: GoldTask[], seed: number, pCorrect: number): Prediction[] {
  const rng = new Rng(seed);
  return g.flatMap((t) => {
    const r = rng.next();
    if (r > 0.97) return []; // missing
    if (r > 0.94) return [{ id: t.id, predicted_behavior: null }];
    const behavior = rng.next() < pCorrect ? t.behavior : B[Math.floor(rng.next() * 3)]!;
    return [{ id: t.id, predicted_behavior: behavior, ...(t.answer ? { predicted_answer: rng.next() < 0.5 ? t.answer : 'Z' } : {}) }];
  });
}

/** An independent reference: per-class counts by direct comparison of label pairs (a different code path). */
function reference(g: GoldTask[], p: Prediction[]) {
  const byId = new Map(p.map((x) => [x.id, x.predicted_behavior]));
  const pairs = g.map((t) => [t.behavior, byId.get(t.id) ?? 'none'] as const);
  const f1s = B.map((b) => {
    const tp = pairs.filter(([y, yh]) => y === b && yh === b).length;
    const fp = pairs.filter(([y, yh]) => y !== b && yh === b).length;
    const fn = pairs.filter(([y, yh]) => y === b && yh !== b).length;
    if (tp + fp === 0 || tp + fn === 0) return { p: tp + fp ? tp / (tp + fp) : 0, r: tp + fn ? tp / (tp + fn) : 0, f1: 0 };
    return { p: tp / (tp + fp), r: tp / (tp + fn), f1: tp === 0 ? 0 : (2 * tp) / (2 * tp + fp + fn) };
  });
  return {
    accuracy: pairs.filter(([y, yh]) => y === yh).length / pairs.length,
    macro: f1s.reduce((a, x) => a + x.f1, 0) / B.length,
    f1s,
  };
}

describe('metrics', () => {
  it('hand-computed case', () => {
    // gold:      R R R P P X      predicted: R R P P none X
    const g: GoldTask[] = ['reactive', 'reactive', 'reactive', 'proactive', 'proactive', 'restraint'].map((b, i) => ({ id: `t${i}`, case_id: `c${i}`, category: 'k', behavior: b, hard: false }));
    const p: Prediction[] = [
      { id: 't0', predicted_behavior: 'reactive' },
      { id: 't1', predicted_behavior: 'reactive' },
      { id: 't2', predicted_behavior: 'proactive' },
      { id: 't3', predicted_behavior: 'proactive' },
      { id: 't5', predicted_behavior: 'restraint' },
    ];
    const r = score(g, p, [], B, { resamples: 0, seed: 1 });
    // reactive P=2/2 R=2/3 F1=0.8; proactive P=1/2 R=1/2 F1=0.5; restraint P=1 R=1 F1=1
    expect(r.overall.per_class.reactive!.f1.value).toBeCloseTo(0.8, 12);
    expect(r.overall.per_class.proactive!.f1.value).toBeCloseTo(0.5, 12);
    expect(r.overall.per_class.restraint!.f1.value).toBe(1);
    expect(r.overall.macro_f1.value).toBeCloseTo((0.8 + 0.5 + 1) / 3, 12);
    expect(r.overall.accuracy.value).toBeCloseTo(4 / 6, 12);
    expect(r.overall.confusion).toEqual([[2, 1, 0, 0], [0, 1, 0, 1], [0, 0, 1, 0]]);
    expect(r.missing).toEqual({ count: 1, ids: ['t4'] });
  });

  it('zero-division corners: a class with no gold items or no predictions has F1 0 and is flagged', () => {
    const g: GoldTask[] = [0, 1, 2].map((i) => ({ id: `t${i}`, case_id: 'c', category: 'k', behavior: 'reactive', hard: false }));
    const r = score(g, g.map((t) => ({ id: t.id, predicted_behavior: 'reactive' })), [], B, { resamples: 0, seed: 1 });
    expect(r.overall.per_class.reactive!.f1.value).toBe(1);
    expect(r.overall.per_class.proactive).toMatchObject({ f1: { value: 0 }, precision: 0, recall: 0, flags: ['no gold items: F1 = 0', 'no predictions: F1 = 0'] });
    expect(r.overall.macro_f1.value).toBeCloseTo(1 / 3, 12);
    const none = score(g, [], [], B, { resamples: 0, seed: 1 });
    expect(none.overall.accuracy.value).toBe(0);
    expect(none.overall.per_class.reactive!.flags).toEqual(['no predictions: F1 = 0']);
    expect(metricsOf(new Float64Array(12), 3)).toMatchObject({ accuracy: 0, macroF1: 0 });
  });

  it('agrees with an independent reference implementation to 1e-12 on random prediction sets', () => {
    for (let seed = 1; seed <= 25; seed++) {
      const g = gold(300 + seed * 7, seed);
      const p = predictions(g, seed + 100, 0.3 + (seed % 7) / 10);
      const r = score(g, p, [], B, { resamples: 0, seed });
      const ref = reference(g, p);
      expect(Math.abs(r.overall.accuracy.value - ref.accuracy)).toBeLessThan(1e-12);
      expect(Math.abs(r.overall.macro_f1.value - ref.macro)).toBeLessThan(1e-12);
      B.forEach((b, k) => {
        expect(Math.abs(r.overall.per_class[b]!.f1.value - ref.f1s[k]!.f1)).toBeLessThan(1e-12);
        expect(Math.abs(r.overall.per_class[b]!.precision - ref.f1s[k]!.p)).toBeLessThan(1e-12);
        expect(Math.abs(r.overall.per_class[b]!.recall - ref.f1s[k]!.r)).toBeLessThan(1e-12);
      });
      const hardRef = reference(g.filter((t) => t.hard), p);
      expect(Math.abs(r.hard!.macro_f1.value - hardRef.macro)).toBeLessThan(1e-12);
    }
  });

  it('bootstrap intervals are seeded, resample whole cases, and bracket the estimate', () => {
    const g = gold(400, 3);
    const p = predictions(g, 4, 0.7);
    const a = score(g, p, [], B, { resamples: 300, seed: 9 });
    const b = score(g, p, [], B, { resamples: 300, seed: 9 });
    const c = score(g, p, [], B, { resamples: 300, seed: 10 });
    expect(a.overall.macro_f1.ci).toEqual(b.overall.macro_f1.ci);
    expect(a.overall.macro_f1.ci).not.toEqual(c.overall.macro_f1.ci);
    const [lo, hi] = a.overall.macro_f1.ci!;
    expect(lo).toBeLessThanOrEqual(a.overall.macro_f1.value);
    expect(hi).toBeGreaterThanOrEqual(a.overall.macro_f1.value);
    expect(hi - lo).toBeGreaterThan(0.01);
    // One case only: every resample is that case, so the interval collapses onto the estimate.
    const one = gold(12, 5, 100);
    const s = score(one, predictions(one, 6, 0.5), [], B, { resamples: 100, seed: 1 });
    expect(s.overall.accuracy.ci).toEqual([s.overall.accuracy.value, s.overall.accuracy.value]);
  });

  it('scores forced runs as steering accuracy over judged replies', () => {
    const g = gold(30, 7);
    const forced: Prediction[] = g.map((t, i) => ({ id: t.id, predicted_behavior: 'proactive', forced: true, judged_behavior: i < 20 ? (i % 4 ? 'proactive' : 'reactive') : null }));
    const r = score(g, [], [forced], B, { resamples: 0, seed: 1 });
    expect(r.forced.proactive).toMatchObject({ n: 30, judged: 20, steering_accuracy: 15 / 20 });
  });
});

describe('bsft score and bsft report', () => {
  const dir = mkdtempSync(path.join(tmpdir(), 'bsft-score-'));
  const g = gold(240, 11);
  const tasksFile = path.join(dir, 'tasks.jsonl');
  writeFileSync(tasksFile, g.map((t) => JSON.stringify(t)).join('\n'));

  it('names the line of unknown ids, duplicate ids and unknown labels', async () => {
    const bad = path.join(dir, 'bad.jsonl');
    writeFileSync(bad, [
      JSON.stringify({ id: 't0', predicted_behavior: 'reactive' }),
      JSON.stringify({ id: 'nope', predicted_behavior: 'reactive' }),
      JSON.stringify({ id: 't0', predicted_behavior: 'reactive' }),
      JSON.stringify({ id: 't1', predicted_behavior: 'bold' }),
      '{broken',
    ].join('\n'));
    const res = await bsft(['score', bad, '--tasks', tasksFile]);
    expect(res.code).toBe(2);
    expect(res.stderr).toMatch(/bad\.jsonl:2 id: unknown task id "nope"/);
    expect(res.stderr).toMatch(/bad\.jsonl:3 id: duplicate prediction for "t0" \(first at line 1\)/);
    expect(res.stderr).toMatch(/bad\.jsonl:4 predicted_behavior: unknown label "bold"/);
    expect(res.stderr).toMatch(/bad\.jsonl:5: invalid JSON/);
  });

  it('reports tasks without predictions as wrong', async () => {
    const file = path.join(dir, 'partial.jsonl');
    writeFileSync(file, g.slice(0, 200).map((t) => JSON.stringify({ id: t.id, predicted_behavior: t.behavior })).join('\n'));
    const res = await bsft(['score', file, '--tasks', tasksFile, '--json', '--bootstrap', '50']);
    expect(res.code).toBe(0);
    const r = JSON.parse(res.stdout);
    expect(r.missing.count).toBe(40);
    expect(r.overall.accuracy.value).toBeCloseTo(200 / 240, 12);
    const text = await bsft(['score', file, '--tasks', tasksFile, '--bootstrap', '50']);
    expect(text.stdout).toContain('40 task(s) without a prediction, counted as wrong');
    expect(text.stdout).toContain('note: a class with no gold items or no predictions has F1 = 0 and is flagged');
  });

  /** A scored run folder; `history` adds metrics.jsonl and a dataset manifest, `forced` forced-token predictions. */
  function fakeRun(name: string, conditioning: string, pCorrect: number, seed: number, opts: { history?: boolean; forced?: boolean } = {}): string {
    const runDir = path.join(dir, 'runs', name);
    mkdirSync(path.join(runDir, 'dataset'), { recursive: true });
    mkdirSync(path.join(runDir, 'predictions'), { recursive: true });
    writeFileSync(path.join(runDir, 'recipe.json'), JSON.stringify({
      name, run_id: `${name}-0123abcd`, model: { name_or_path: 'Qwen/Qwen2.5-7B-Instruct' },
      data: { behaviors: Object.fromEntries(B.map((b) => [b, {}])), categories: {}, conditioning },
      eval: { splits: ['test'], bootstrap: 200 }, train: { method: 'lora', seed: 1, lr: 2e-4, schedule: 'cosine', max_steps: 50 },
    }));
    // Each category calls for one behavior, as in BehaviorBench: two categories per behavior.
    const tasks = g.map((t, i) => ({ ...t, category: `${t.behavior}_${i % 2}`, messages: [] }));
    writeFileSync(path.join(runDir, 'dataset', 'test.messages.jsonl'), tasks.map((t) => JSON.stringify(t)).join('\n'));
    writeFileSync(path.join(runDir, 'predictions', 'test.jsonl'), predictions(g, seed, pCorrect).map((p) => JSON.stringify(p)).join('\n'));
    if (opts.history) {
      const sample = createHash('sha256').update(readFileSync(path.join(ROOT, 'recipes', 'data', 'behaviorbench-sample.jsonl'))).digest('hex');
      writeFileSync(path.join(runDir, 'dataset', 'manifest.json'), JSON.stringify({
        dataset_hash: 'ab'.repeat(32), inputs: [{ file: 'behaviorbench-sample.jsonl', sha256: sample, bytes: 1 }],
        documents: { train: ['x'], val: [], test: g.map((t) => t.id) },
      }));
      const lines = Array.from({ length: 50 }, (_, i) => ({ kind: 'step', step: i + 1, time: 1.7e9 + i, loss: 3 / (1 + i / 10), lr: 2e-4 * (1 - i / 50), grad_norm: 1, tokens_per_s: 1000, mem_gib: 1 }));
      lines.push({ kind: 'eval', step: 50, time: 1.7e9 + 60, loss: 0.9 } as never);
      writeFileSync(path.join(runDir, 'metrics.jsonl'), `${lines.map((l) => JSON.stringify(l)).join('\n')}\n`);
    }
    if (opts.forced) {
      for (const [k, b] of B.entries()) {
        const rng = new Rng(seed + k);
        writeFileSync(path.join(runDir, 'predictions', `test.forced-${b}.jsonl`), g.map((t) => JSON.stringify({
          id: t.id, predicted_behavior: b, forced: true, judged_behavior: rng.next() < 0.8 ? b : B[(k + 1) % 3],
        })).join('\n'));
      }
    }
    return runDir;
  }

  it('compares runs with deltas, the paper reference, and writes JSON, Markdown and HTML that renders in Chromium', async () => {
    const a = fakeRun('behaviorsft', 'token', 0.9, 1, { history: true, forced: true });
    const b = fakeRun('standard-sft', 'none', 0.6, 2);
    const c = fakeRun('instructed', 'instruction', 0.5, 3);
    // Two runs with an operating point (bsft balance on 300 synthetic validation tasks leaning to answering).
    for (const [k, run] of [a, b].entries()) {
      const rng = new Rng(40 + k);
      const n = 300;
      const t: BalanceTasks = { behaviors: B, gold: new Int32Array(n), caseOf: Int32Array.from({ length: n }, (_, i) => i >> 1), cases: n / 2, logprobs: new Float64Array(n * 3) };
      for (let i = 0; i < n; i++) {
        t.gold[i] = i % 3;
        const l = B.map((_, j) => rng.next() + (j === i % 3 ? 1 : 0) - (j === 1 ? 0.8 + k : 0));
        const lse = Math.log(l.reduce((s, v) => s + Math.exp(v), 0));
        for (let j = 0; j < 3; j++) t.logprobs[i * 3 + j] = l[j]! - lse;
      }
      writeFileSync(path.join(run, 'balance.json'), JSON.stringify(balance(t, t, { rule: { kind: 'max-macro-f1' }, range: 4, step: 0.5, resamples: 50, seed: 1 })));
    }
    const out = path.join(dir, 'report');
    const res = await bsft(['report', a, b, c, '--out', out, '--bootstrap', '200']);
    expect(res.code).toBe(0);
    expect(res.stdout).toMatch(/operating points \(bsft balance; chosen on val, 95% CI\):\n\s+run\s+offsets/);
    expect(res.stdout).toMatch(/behaviorsft \(token, lora\)\s+proactive \+[\d.]+.*the highest macro-F1\s+test \(300\)/);
    expect(res.stdout).toMatch(/paper: BehaviorSFT, Qwen2\.5-7B-Instruct \(published\) \(NOT COMPARABLE\)\s+97\.3/);
    expect(res.stdout).toContain('96.5 (standard SFT 95.0)'); // the paper's proactive F1, and what standard SFT got
    expect(res.stdout).toMatch(/majority baseline \(always \w+\)\s+\d+\.\d/);
    expect(res.stdout).toMatch(/deltas versus behaviorsft/);
    expect(res.stdout).toMatch(/steering accuracy/);
    expect(res.stdout).toMatch(/behaviorsft \(token, lora\)\s+behaviorsft-0123abcd\s+Qwen\/Qwen2\.5-7B-Instruct\s+lora\s+token\s+50 \(max_steps 50\)/);
    const report = JSON.parse(readFileSync(path.join(out, 'report.json'), 'utf8'));
    expect(report.runs).toHaveLength(3);
    expect(report.deltas).toHaveLength(2);
    expect(report.deltas[0].macro_f1.value).toBeLessThan(0);
    expect(report.deltas[0].macro_f1.ci[1]).toBeLessThan(0); // a 30-point gap is outside the noise
    // Not comparable: the first run used the bundled sample (by its sha256 in the manifest).
    expect(report.reference_not_comparable).toMatch(/bundled 241-task sample/);
    expect(report.runs[0].curve.step).toHaveLength(50);
    expect(report.runs[0].curve.eval).toEqual([{ step: 50, loss: 0.9 }]);
    expect(report.runs[0].meta).toMatchObject({ run_id: 'behaviorsft-0123abcd', steps: 50, lr: 2e-4, tasks: 241, date: new Date(1.7e9 * 1000).toISOString() });
    expect(report.runs[0].steering.proactive.accuracy).toBeGreaterThan(0.7);
    expect(report.runs[1].meta.dataset_hash).toBeNull();
    const md = readFileSync(path.join(out, 'report.md'), 'utf8');
    expect(md).toContain('| run | macro-F1 [95% CI]');
    expect(md).toContain('## Steering accuracy');
    expect(existsSync(path.join(a, 'score', 'test.json'))).toBe(true);
    const asJson = await bsft(['report', a, b, c, '--out', out, '--bootstrap', '200', '--json']);
    expect(JSON.parse(asJson.stdout)).toEqual(report);

    const { page, errors, close } = await openPage(`file://${path.join(out, 'report.html')}`);
    try {
      const charts = await page.$$eval('svg.chart', (els) => els.map((e) => ({
        chart: (e as SVGElement).dataset.chart, marks: e.querySelectorAll('.mark').length, legend: e.querySelectorAll('.legend-item').length,
        width: e.getBoundingClientRect().width, whiskers: e.querySelectorAll('.whisker').length,
      })));
      expect(errors).toEqual([]);
      const of = (name: string) => charts.filter((c) => c.chart === name);
      expect(of('scores')).toHaveLength(1);
      expect(of('scores')[0]).toMatchObject({ marks: 3 * 4, legend: 5 }); // 3 runs x (macro-F1 + 3 behaviors); 3 runs + paper line + majority baseline
      expect(await page.locator('svg[data-chart="scores"] line.baseline title').textContent()).toMatch(/^majority baseline \(always \w+\): \d+\.\d$/);
      // The confusion legend names what each colour counts, in this matrix; every swatch is drawn (outlined).
      const confusionLegend = await page.locator('svg[data-chart="confusion"]').first().locator('.legend-item text').allTextContents();
      expect(confusionLegend).toEqual([expect.stringMatching(/^right \((darkest: \d+|none)\)$/), expect.stringMatching(/^wrong \((darkest: \d+|none)\)$/), '0 tasks']);
      expect(await page.locator('svg[data-chart="confusion"] .legend-item rect[stroke]').count()).toBe(3 * 3);
      // Headers keep their labels on one line.
      expect(await page.$eval('th', (th) => getComputedStyle(th).whiteSpace)).toBe('nowrap');
      expect(of('scores')[0]!.whiskers).toBe(3 * 4);
      expect(of('curve')).toHaveLength(1); // only the run with a metrics.jsonl
      expect(of('curve')[0]).toMatchObject({ marks: 3, legend: 3 }); // loss, lr, one eval dot
      expect(of('steering')).toHaveLength(1);
      expect(of('steering')[0]!.marks).toBe(3);
      expect(of('confusion')).toHaveLength(3);
      expect(of('categories')[0]).toMatchObject({ marks: 3 * 6, legend: 3, whiskers: 3 * 6 });
      for (const c of charts) expect(c.marks, `${c.chart} has content`).toBeGreaterThan(0);
      // The operating points: both balanced runs on one trade-off chart (curve, default circle, chosen square each)
      // and on the macro-F1 chart (curve, chosen square each).
      expect(of('balance')[0]).toMatchObject({ marks: 2 * 3, legend: 2 + 2 });
      expect(of('balance-f1')[0]).toMatchObject({ marks: 2 * 2, legend: 2 });
      expect(await page.locator('svg[data-chart="balance"] rect.point-chosen title').first().textContent()).toMatch(/chosen \(reactive 0, proactive [\d.]+, restraint -?[\d.]+\): missed [\d.]+%/);
      expect(report.runs[0].balance.offsets.proactive).toBeGreaterThan(0);
      expect(report.runs[2].balance).toBeNull();
      // Categories are grouped under their behavior; the note says why the paper row is not comparable.
      expect(await page.locator('svg[data-chart="categories"] text.group').allTextContents()).toEqual(['reactive', 'proactive', 'restraint']);
      expect(await page.locator('p.note').textContent()).toMatch(/not comparable/);
      const png = path.join(out, 'report.png');
      await page.screenshot({ path: png, fullPage: true });
      expect(statSync(png).size).toBeGreaterThan(20_000);
    } finally {
      await close();
    }
  }, limit(120_000));

  it('a loss axis is clipped only when an early spike would flatten the curve, and says so', () => {
    const flat = Array.from({ length: 50 }, (_, i) => 2 - i / 50);
    expect(lossAxisTop(flat, [])).toEqual({ top: 2, clipped: false, highest: 2 });
    const spiked = [40, 12, ...flat.slice(2)];
    const axis = lossAxisTop(spiked, [1.2]);
    expect(axis.clipped).toBe(true);
    expect(axis.highest).toBe(40);
    expect(axis.top).toBeCloseTo(Math.max(...flat.slice(5)) * 1.1, 6);
  });
});
