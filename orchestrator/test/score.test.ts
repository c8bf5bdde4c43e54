import { execFileSync } from 'node:child_process';
import { existsSync, mkdirSync, mkdtempSync, readFileSync, statSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import path from 'node:path';
import { describe, expect, it } from 'vitest';
import type { GoldTask, Prediction } from '../src/score/inputs.js';
import { metricsOf, score } from '../src/score/metrics.js';
import { Rng } from '../src/util/rng.js';
import { bsft } from './helpers/cli.js';

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

  function fakeRun(name: string, conditioning: string, pCorrect: number, seed: number): string {
    const runDir = path.join(dir, 'runs', name);
    mkdirSync(path.join(runDir, 'dataset'), { recursive: true });
    mkdirSync(path.join(runDir, 'predictions'), { recursive: true });
    writeFileSync(path.join(runDir, 'recipe.json'), JSON.stringify({
      name, run_id: name, data: { behaviors: Object.fromEntries(B.map((b) => [b, {}])), categories: {}, conditioning },
      eval: { splits: ['test'], bootstrap: 200 }, train: { method: 'lora', seed: 1 },
    }));
    writeFileSync(path.join(runDir, 'dataset', 'test.messages.jsonl'), g.map((t) => JSON.stringify({ ...t, messages: [] })).join('\n'));
    writeFileSync(path.join(runDir, 'predictions', 'test.jsonl'), predictions(g, seed, pCorrect).map((p) => JSON.stringify(p)).join('\n'));
    return runDir;
  }

  it('compares runs with deltas, the paper reference, and writes JSON, Markdown and HTML that renders in Chromium', async () => {
    const a = fakeRun('behaviorsft', 'token', 0.9, 1);
    const b = fakeRun('standard-sft', 'none', 0.6, 2);
    const c = fakeRun('instructed', 'instruction', 0.5, 3);
    const out = path.join(dir, 'report');
    const res = await bsft(['report', a, b, c, '--out', out, '--bootstrap', '200']);
    expect(res.code).toBe(0);
    expect(res.stdout).toMatch(/paper: BehaviorSFT, Qwen2\.5-7B-Instruct \(published\)\s+97\.3/);
    expect(res.stdout).toContain('95.0 -> 96.5');
    expect(res.stdout).toMatch(/deltas versus behaviorsft/);
    const report = JSON.parse(readFileSync(path.join(out, 'report.json'), 'utf8'));
    expect(report.runs).toHaveLength(3);
    expect(report.deltas).toHaveLength(2);
    expect(report.deltas[0].macro_f1.value).toBeLessThan(0);
    expect(report.deltas[0].macro_f1.ci[1]).toBeLessThan(0); // a 30-point gap is outside the noise
    expect(readFileSync(path.join(out, 'report.md'), 'utf8')).toContain('| run | macro-F1 [95% CI]');
    expect(existsSync(path.join(a, 'score', 'test.json'))).toBe(true);
    const asJson = await bsft(['report', a, b, c, '--out', out, '--bootstrap', '200', '--json']);
    expect(JSON.parse(asJson.stdout)).toEqual(report);

    const chromium = ['/usr/bin/chromium', '/usr/bin/chromium-browser'].find((p) => existsSync(p));
    expect(chromium, 'Debian chromium is installed by scripts/test.sh').toBeTruthy();
    const flags = ['--headless', '--no-sandbox', '--disable-gpu', '--disable-quic', '--no-first-run', '--disable-background-networking',
      '--disable-component-update', '--disable-sync', `--user-data-dir=${mkdtempSync(path.join(tmpdir(), 'chromium-'))}`];
    const url = `file://${path.join(out, 'report.html')}`;
    const dom = execFileSync(chromium!, [...flags, '--dump-dom', url], { timeout: 60_000, stdio: ['ignore', 'pipe', 'ignore'] }).toString();
    expect(dom.match(/<svg class="heatmap"/g)).toHaveLength(3);
    expect(dom.match(/<rect class="bar"/g)!.length).toBe(3 * 5);
    const png = path.join(out, 'report.png');
    execFileSync(chromium!, [...flags, `--screenshot=${png}`, '--window-size=1200,1800', '--hide-scrollbars', url], { timeout: 60_000, stdio: 'ignore' });
    expect(statSync(png).size).toBeGreaterThan(20_000);
  }, 120_000);
});
