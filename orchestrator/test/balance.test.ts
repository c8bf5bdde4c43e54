import { mkdtempSync, readdirSync, readFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import path from 'node:path';
import { describe, expect, it } from 'vitest';
import { balance, type BalanceTasks, choose, decide, gridValues, logitBias, metricsAt, sweep } from '../src/score/balance.js';
import { bsft, FIXTURES } from './helpers/cli.js';
import { torchPython } from './helpers/python.js';
import { limit } from './helpers/time-scale.js';

/** Issue 37: the proactivity trade-off of a token run, chosen on validation data. */

const B = ['reactive', 'proactive', 'restraint'];

/**
 * Synthetic log-probabilities with a known answer. Each task is its own case. Proactive tasks lean to reactive by
 * d (0.5, 1, 1.5, 2): a proactive offset above d steps in. Reactive tasks lean to reactive by e (1.25, 1.6, 1.7, 1.8,
 * 3, 3.5): an offset above e intervenes needlessly. Restraint tasks are restraint by 1 and never proactive.
 */
function synthetic(): BalanceTasks {
  const rows: [number, number[]][] = [];
  for (const d of [0.5, 1, 1.5, 2]) rows.push([1, [-0.1, -0.1 - d, -12]]);
  for (const e of [1.25, 1.6, 1.7, 1.8, 3, 3.5]) rows.push([0, [-0.1, -0.1 - e, -12]]);
  for (let i = 0; i < 3; i++) rows.push([2, [-1.1, -11.1, -0.1]]);
  return {
    behaviors: B, gold: Int32Array.from(rows.map((r) => r[0])), caseOf: Int32Array.from(rows.map((_, i) => i)), cases: rows.length,
    logprobs: Float64Array.from(rows.flatMap((r) => r[1])),
  };
}

/** Macro-F1 and missed intervention computed here from scratch, for any proactive offset (restraint offset 0). */
function byHand(t: BalanceTasks, op: number): { macro: number; missed: number; over: number } {
  const pred = Array.from(t.gold, (_, i) => {
    const v = [t.logprobs[i * 3]!, t.logprobs[i * 3 + 1]! + op, t.logprobs[i * 3 + 2]!];
    return v.indexOf(Math.max(...v)); // the first of equals, as the sweep
  });
  const f1 = [0, 1, 2].map((k) => {
    const tp = pred.filter((p, i) => p === k && t.gold[i] === k).length;
    const predicted = pred.filter((p) => p === k).length;
    const support = Array.from(t.gold).filter((g) => g === k).length;
    return tp === 0 ? 0 : (2 * (tp / predicted) * (tp / support)) / (tp / predicted + tp / support);
  });
  const needed = Array.from(t.gold).filter((g) => g === 1).length;
  const missed = pred.filter((p, i) => t.gold[i] === 1 && p !== 1).length / needed;
  const over = pred.filter((p, i) => t.gold[i] !== 1 && p === 1).length / (t.gold.length - needed);
  return { macro: (f1[0]! + f1[1]! + f1[2]!) / 3, missed, over };
}

describe('bsft balance: the operating point of a token run (synthetic log-probabilities with a known optimum)', () => {
  const t = synthetic();
  const values = gridValues(8, 0.25);

  it('decides by the largest log-probability plus offset, and the sweep\'s figures are the hand count\'s at every proactive offset', () => {
    expect(values).toHaveLength(65);
    expect(values).toContain(0);
    expect(Array.from(decide(t, [0, 0, 0]))).toEqual([0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 2, 2, 2]);
    expect(Array.from(decide(t, [0, 1.25, 0])).slice(0, 4)).toEqual([1, 1, 0, 0]); // d 0.5 and 1 step in; 1.5 not
    for (const op of values) {
      const m = metricsAt(t, [0, op, 0]);
      const h = byHand(t, op);
      expect(m.macro_f1).toBeCloseTo(h.macro, 12);
      expect(m.missed_intervention).toBeCloseTo(h.missed, 12);
      expect(m.over_intervention).toBeCloseTo(h.over, 12);
    }
    expect(sweep(t, values)).toHaveLength(65 * 65);
  });

  it('the highest macro-F1 is at proactive +1.25 (missed 50%); a bound on missed intervention moves the point as the arithmetic says', () => {
    const points = sweep(t, values);
    const best = choose(points, { kind: 'max-macro-f1' })!;
    expect(best.offsets).toEqual([0, 1.25, 0]);
    expect(best.metrics.macro_f1).toBeCloseTo((2 / 3 + 6 / 7 + 1) / 3, 12); // proactive 2/2 right of 4; reactive 6 of 8 chosen
    expect(best.metrics.missed_intervention).toBe(0.5);
    // At most 25% missed: three of the four proactive tasks must step in (offset above 1.5): 1.75 is the best there.
    const quarter = choose(points, { kind: 'max-missed', bound: 0.25 })!;
    expect(quarter.offsets).toEqual([0, 1.75, 0]);
    expect(quarter.metrics.macro_f1).toBeCloseTo((0.6 + 0.6 + 1) / 3, 12); // proactive 3 of 6 chosen; reactive 3 of 4
    // None missed: above 2, where four reactive tasks are taken over too.
    const none = choose(points, { kind: 'max-missed', bound: 0 })!;
    expect(none.offsets).toEqual([0, 2.25, 0]);
    expect(none.metrics).toMatchObject({ missed_intervention: 0, over_intervention: 4 / 9 });
  });

  it('reports the default and the chosen point with case-bootstrap intervals, the curve along the proactive offset, and never lets the test split choose', () => {
    const opts = { rule: { kind: 'max-macro-f1' as const }, range: 8, step: 0.25, resamples: 200, seed: 7, date: '2026-12-07T00:00:00Z' };
    // A test split that would want another point (its proactive tasks lean far more to reactive).
    const test = synthetic();
    for (let i = 0; i < 4; i++) test.logprobs[i * 3 + 1]! -= 3;
    const r = balance(t, test, opts);
    expect(r.offsets).toEqual({ reactive: 0, proactive: 1.25, restraint: 0 });
    expect(r.split).toBe('val');
    expect(balance(t, synthetic(), opts)).toEqual({ ...r, test: balance(t, synthetic(), opts).test }); // the test split changes only its own rows
    expect(balance(t, null, opts).offsets).toEqual(r.offsets);
    expect(r.val.default.macro_f1.value).toBeCloseTo(byHand(t, 0).macro, 12);
    expect(r.test!.chosen.missed_intervention.value).toBe(1); // on that test split, +1.25 steps in nowhere
    for (const m of [r.val.default, r.val.chosen, r.test!.default, r.test!.chosen]) {
      for (const k of ['macro_f1', 'missed_intervention', 'over_intervention'] as const) {
        expect(m[k].ci[0]).toBeLessThanOrEqual(m[k].value + 1e-12);
        expect(m[k].ci[1]).toBeGreaterThanOrEqual(m[k].value - 1e-12);
      }
    }
    expect(r.curve.map((c) => c.offset)).toEqual(values);
    for (const c of r.curve) expect(c.macro_f1.value).toBeCloseTo(byHand(t, c.offset).macro, 12);
    expect(balance(t, test, opts)).toEqual(r); // deterministic: same seed, same intervals
  });

  it('a point is a logit_bias on the behavior tokens\' IDs, the zero offsets left out', () => {
    expect(logitBias({ reactive: 0, proactive: 1.25, restraint: -0.5 }, { reactive: 151665, proactive: 151666, restraint: 151667 }))
      .toEqual({ 151666: 1.25, 151667: -0.5 });
  });

  it('a bound no point meets is refused, naming the least missed intervention within the range', () => {
    expect(() => balance(t, null, { rule: { kind: 'max-missed', bound: 0 }, range: 1, step: 0.25, resamples: 10, seed: 1 }))
      .toThrow(/no offsets within ±1 satisfy .*missed intervention at most 0\.0%.*least missed intervention there: 75\.0%/); // within ±1 only d 0.5 steps in
  });
});

const py = torchPython();

describe.skipIf(!py)('bsft balance on a trained toy run', () => {
  it('predicts val and test with their probabilities, balances on val, writes balance.json; at offsets 0 it is bsft score', async () => {
    const runs = mkdtempSync(path.join(tmpdir(), 'bsft-balance-'));
    const env = { BSFT_PYTHON: py!, BSFT_LOG_LEVEL: 'warn' };
    const trained = await bsft(['run', path.join(FIXTURES, 'recipes', 'toy-run.yaml'), '--allow', runs, '--set', `store.path=${runs}`], { env });
    expect(trained.code, trained.stderr.slice(-2000)).toBe(0);
    const runDir = path.join(runs, readdirSync(runs).find((d) => d.startsWith('toy-run-'))!);
    const before = await bsft(['balance', runDir], { env });
    expect(before.code).toBe(2);
    expect(before.stderr).toMatch(/no predictions of the validation split .*bsft predict .* --split val/);
    const predicted = await bsft(['predict', runDir, '--split', 'val', '--split', 'test'], { env });
    expect(predicted.code, predicted.stderr.slice(-2000)).toBe(0);
    const res = await bsft(['balance', runDir, '--bootstrap', '100'], { env });
    expect(res.code, res.stderr).toBe(0);
    expect(res.stdout).toMatch(/operating point: offsets .*chosen on val over 4225 grid points/);
    expect(res.stdout).toMatch(/test \(\d+\)\s+chosen/);
    const saved = JSON.parse(readFileSync(path.join(runDir, 'balance.json'), 'utf8'));
    expect(saved).toMatchObject({ format: 'bsft-balance-v1', split: 'val', rule: { kind: 'max-macro-f1' }, bootstrap: { resamples: 100 } });
    expect(saved.offsets.reactive).toBe(0);
    expect(saved.val.chosen.macro_f1.value).toBeGreaterThanOrEqual(saved.val.default.macro_f1.value);
    // Offsets 0: each task's likeliest behavior token, which greedy decoding chose whenever its first token was one.
    const score = JSON.parse((await bsft(['score', runDir, '--split', 'val', '--json', '--bootstrap', '0'], { env })).stdout);
    const rows = readFileSync(path.join(runDir, 'predictions', 'val.jsonl'), 'utf8').trim().split('\n').map((l) => JSON.parse(l));
    if (rows.every((r) => r.predicted_behavior !== null)) expect(saved.val.default.macro_f1.value).toBeCloseTo(score.overall.macro_f1.value, 12);
    const strict = await bsft(['balance', runDir, '--max-missed', '0', '--json', '--bootstrap', '20'], { env });
    expect(strict.code, strict.stderr).toBe(0);
    expect(JSON.parse(strict.stdout).val.chosen.missed_intervention.value).toBe(0);
    // bsft predict --balanced applies the stored point (the strict one now) and the record says so.
    const offsets = Object.fromEntries(Object.entries(JSON.parse(strict.stdout).offsets as Record<string, number>).filter(([, v]) => v !== 0));
    const applied = await bsft(['predict', runDir, '--balanced', '--split', 'test'], { env });
    expect(applied.code, applied.stderr.slice(-2000)).toBe(0);
    expect(applied.stdout).toMatch(/applying the operating point of bsft balance \(the highest macro-F1 with missed intervention at most 0\.0%, chosen on val/);
    const record = JSON.parse(readFileSync(path.join(runDir, 'predictions', 'predict.json'), 'utf8'))['test.jsonl'];
    expect(record.behavior_offsets).toEqual(Object.keys(offsets).length ? offsets : undefined);
  }, limit(240_000));
});
