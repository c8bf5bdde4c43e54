import { existsSync, readFileSync } from 'node:fs';
import path from 'node:path';
import { interval, metricsOf } from './metrics.js';
import type { GoldTask, Prediction } from './inputs.js';
import { Rng } from '../util/rng.js';
import { ScoreInputError } from '../errors.js';

/**
 * The balance of a behavior-token run (issue 37): how proactive it is, chosen on validation data.
 *
 * Each prediction keeps the log-probability of every behavior token at its first generated position
 * (`behavior_logprobs`, Contract 7). An operating point adds an offset to each behavior's log-probability (the one
 * that answers, `reactive`, keeps 0) and takes the largest: a positive offset for `proactive` makes the model step in
 * more often, a negative one less. Adding a constant to a token's logit is exactly what a serving engine's
 * `logit_bias` does, so a point chosen here is one a server can apply. The sweep is a grid over the offsets of the
 * other behaviors; at each point: macro-F1, each behavior's recall, over-intervention (`proactive` chosen where the
 * gold behavior is another) and missed intervention (`proactive` needed, another chosen). A rule picks the point on
 * the validation split only; the test split is then scored at the default (all offsets 0) and at the chosen point.
 */

/** The behavior that answers (offset 0) and the one that steps in (the trade-off's axis). */
export const ANSWERS = 'reactive';
export const INTERVENES = 'proactive';

/** Predictions that cannot be balanced (no probabilities, no operating point that meets the rule): exit 2. */
export class BalanceInputError extends ScoreInputError {}

/** A split's tasks for the sweep: gold labels, cases (the bootstrap's unit) and N x K behavior log-probabilities. */
export interface BalanceTasks {
  behaviors: string[];
  gold: Int32Array;
  caseOf: Int32Array;
  cases: number;
  /** Row-major N x K; NaN where the endpoint did not return the token (it is never chosen). */
  logprobs: Float64Array;
}

export function balanceTasks(gold: GoldTask[], predictions: Prediction[], behaviors: string[], where: string): BalanceTasks {
  for (const b of [ANSWERS, INTERVENES]) if (!behaviors.includes(b)) throw new BalanceInputError(`the run's behaviors (${behaviors.join(', ')}) have no "${b}"`);
  const byId = new Map(predictions.map((p) => [p.id, p]));
  const K = behaviors.length;
  const N = gold.length;
  const t: BalanceTasks = { behaviors, gold: new Int32Array(N), caseOf: new Int32Array(N), cases: 0, logprobs: new Float64Array(N * K) };
  const cases = new Map<string, number>();
  const missing: string[] = [];
  gold.forEach((task, i) => {
    t.gold[i] = behaviors.indexOf(task.behavior);
    if (t.gold[i] < 0) throw new BalanceInputError(`${where}: task ${task.id}: gold behavior "${task.behavior}" is not one of ${behaviors.join(', ')}`);
    if (!cases.has(task.case_id)) cases.set(task.case_id, cases.size);
    t.caseOf[i] = cases.get(task.case_id)!;
    const lp = byId.get(task.id)?.behavior_logprobs;
    if (!lp) {
      missing.push(task.id);
      return;
    }
    behaviors.forEach((b, k) => {
      t.logprobs[i * K + k] = lp[b] ?? NaN;
    });
  });
  t.cases = cases.size;
  if (missing.length) {
    throw new BalanceInputError(`${where}: ${missing.length} of ${N} tasks have no behavior_logprobs (first: ${missing[0]}); ` +
      'they are written by bsft predict of this version: predict again');
  }
  return t;
}

/** The behavior chosen for each task at `offsets` (one per behavior): the largest log-probability + offset. */
export function decide(t: BalanceTasks, offsets: ArrayLike<number>, out = new Int32Array(t.gold.length)): Int32Array {
  const K = t.behaviors.length;
  for (let i = 0; i < out.length; i++) {
    let best = K; // none (no behavior token returned)
    let top = -Infinity;
    for (let k = 0; k < K; k++) {
      const v = t.logprobs[i * K + k]! + offsets[k]!;
      if (v > top) {
        top = v;
        best = k;
      }
    }
    out[i] = best;
  }
  return out;
}

export interface BalanceMetrics {
  macro_f1: number;
  accuracy: number;
  recall: Record<string, number>;
  /** Share of the tasks whose gold behavior is not `proactive` where `proactive` was chosen. */
  over_intervention: number;
  /** Share of the tasks whose gold behavior is `proactive` where another was chosen. */
  missed_intervention: number;
}

/** Flat K x (K+1) confusion counts (gold rows, chosen columns, the last: none). */
function counts(t: BalanceTasks, pred: Int32Array): Float64Array {
  const K = t.behaviors.length;
  const m = new Float64Array(K * (K + 1));
  for (let i = 0; i < pred.length; i++) m[t.gold[i]! * (K + 1) + pred[i]!]!++;
  return m;
}

function metricsOfCounts(m: Float64Array, behaviors: string[]): BalanceMetrics {
  const K = behaviors.length;
  const p = behaviors.indexOf(INTERVENES);
  const pm = metricsOf(m, K);
  let notP = 0;
  let overP = 0;
  for (let g = 0; g < K; g++) {
    if (g === p) continue;
    for (let j = 0; j <= K; j++) notP += m[g * (K + 1) + j]!;
    overP += m[g * (K + 1) + p]!;
  }
  const needP = pm.support[p]!;
  return {
    macro_f1: pm.macroF1,
    accuracy: pm.accuracy,
    recall: Object.fromEntries(behaviors.map((b, k) => [b, pm.recall[k]!])),
    over_intervention: notP > 0 ? overP / notP : 0,
    missed_intervention: needP > 0 ? (needP - m[p * (K + 1) + p]!) / needP : 0,
  };
}

export function metricsAt(t: BalanceTasks, offsets: ArrayLike<number>): BalanceMetrics {
  return metricsOfCounts(counts(t, decide(t, offsets)), t.behaviors);
}

export interface Interval {
  value: number;
  ci: [number, number];
}

export interface BalanceIntervals {
  macro_f1: Interval;
  over_intervention: Interval;
  missed_intervention: Interval;
}

/**
 * Percentile intervals (95%) of macro-F1, over- and missed intervention of the decisions `pred` (whose figures are
 * `point`), resampling whole cases:
 * each resample draws as many cases as there are, with replacement, and adds up their tasks' confusion cells.
 */
function intervalsOf(t: BalanceTasks, pred: Int32Array, resamples: number, seed: number, point: BalanceMetrics): BalanceIntervals {
  const K = t.behaviors.length;
  // Each case's tasks as confusion cells, cases contiguous (CSR).
  const start = new Int32Array(t.cases + 1);
  for (let i = 0; i < pred.length; i++) start[t.caseOf[i]! + 1]!++;
  for (let c = 0; c < t.cases; c++) start[c + 1]! += start[c]!;
  const cells = new Int32Array(pred.length);
  const fill = start.slice(0, t.cases);
  for (let i = 0; i < pred.length; i++) cells[fill[t.caseOf[i]!]!++] = t.gold[i]! * (K + 1) + pred[i]!;
  const rng = new Rng(seed);
  const m = new Float64Array(K * (K + 1));
  const f1 = new Float64Array(resamples);
  const over = new Float64Array(resamples);
  const missed = new Float64Array(resamples);
  for (let r = 0; r < resamples; r++) {
    m.fill(0);
    for (let n = 0; n < t.cases; n++) {
      const c = Math.floor(rng.next() * t.cases);
      for (let j = start[c]!; j < start[c + 1]!; j++) m[cells[j]!]!++;
    }
    const x = metricsOfCounts(m, t.behaviors);
    f1[r] = x.macro_f1;
    over[r] = x.over_intervention;
    missed[r] = x.missed_intervention;
  }
  return {
    macro_f1: { value: point.macro_f1, ci: interval(f1) },
    over_intervention: { value: point.over_intervention, ci: interval(over) },
    missed_intervention: { value: point.missed_intervention, ci: interval(missed) },
  };
}

/** How the operating point is chosen on the validation split. */
export type BalanceRule = { kind: 'max-macro-f1' } | { kind: 'max-missed'; bound: number };

export const ruleText = (r: BalanceRule) => (r.kind === 'max-macro-f1' ? 'the highest macro-F1' :
  `the highest macro-F1 with missed intervention at most ${(100 * r.bound).toFixed(1)}%`);

export interface SweepPoint {
  /** One per behavior (the answering one 0). */
  offsets: number[];
  metrics: BalanceMetrics;
}

/** The grid's offsets: -range .. range in steps of `step`, 0 included. */
export function gridValues(range: number, step: number): number[] {
  const n = Math.round(range / step);
  return Array.from({ length: 2 * n + 1 }, (_, i) => +((i - n) * step).toFixed(10));
}

/** Every grid point: each behavior but the answering one takes every grid value. */
export function sweep(t: BalanceTasks, values: number[]): SweepPoint[] {
  const K = t.behaviors.length;
  const a = t.behaviors.indexOf(ANSWERS);
  const free = t.behaviors.map((_, k) => k).filter((k) => k !== a);
  const points: SweepPoint[] = [];
  const offsets = new Array<number>(K).fill(0);
  const pred = new Int32Array(t.gold.length);
  const visit = (d: number): void => {
    if (d === free.length) {
      points.push({ offsets: [...offsets], metrics: metricsOfCounts(counts(t, decide(t, offsets, pred)), t.behaviors) });
      return;
    }
    for (const v of values) {
      offsets[free[d]!] = v;
      visit(d + 1);
    }
  };
  visit(0);
  return points;
}

/** The point the rule picks: the highest macro-F1 among the points it allows, then the nearest to the default
 * (smallest sum of |offset|); undefined when no point satisfies it. */
export function choose(points: SweepPoint[], rule: BalanceRule): SweepPoint | undefined {
  const allowed = rule.kind === 'max-missed' ? points.filter((p) => p.metrics.missed_intervention <= rule.bound + 1e-12) : points;
  const size = (p: SweepPoint) => p.offsets.reduce((s, v) => s + Math.abs(v), 0);
  let best: SweepPoint | undefined;
  for (const p of allowed) {
    if (!best || p.metrics.macro_f1 > best.metrics.macro_f1 + 1e-12 ||
      (Math.abs(p.metrics.macro_f1 - best.metrics.macro_f1) <= 1e-12 && size(p) < size(best))) best = p;
  }
  return best;
}

/** A point's figures: macro-F1, missed and over-intervention with their intervals; accuracy and recall. */
export type PointReport = Omit<BalanceMetrics, keyof BalanceIntervals> & BalanceIntervals;

export interface CurvePoint {
  /** The intervening behavior's offset (the others at the chosen point's). */
  offset: number;
  macro_f1: Interval;
  over_intervention: Interval;
  missed_intervention: Interval;
}

export interface BalanceResult {
  format: 'bsft-balance-v1';
  behaviors: string[];
  /** The chosen operating point: an offset per behavior, added to its log-probability (the answering one 0). */
  offsets: Record<string, number>;
  rule: BalanceRule & { text: string };
  /** The split the point was chosen on (never the test split). */
  split: string;
  date: string;
  grid: { range: number; step: number; points: number };
  bootstrap: { resamples: number; seed: number; unit: 'case' };
  val: { tasks: number; default: PointReport; chosen: PointReport };
  test: { tasks: number; default: PointReport; chosen: PointReport } | null;
  /** Along the intervening behavior's offset, the others at the chosen point's, on the validation split. */
  curve: CurvePoint[];
}

export interface BalanceOptions {
  rule: BalanceRule;
  range: number;
  step: number;
  resamples: number;
  seed: number;
  date?: string;
}

/** The sweep on `val`, the point the rule picks, its curve, and `test` at the default and the chosen point. */
export function balance(val: BalanceTasks, test: BalanceTasks | null, opts: BalanceOptions): BalanceResult {
  const { behaviors } = val;
  const values = gridValues(opts.range, opts.step);
  const points = sweep(val, values);
  const chosen = choose(points, opts.rule);
  if (!chosen) {
    const least = Math.min(...points.map((p) => p.metrics.missed_intervention));
    throw new BalanceInputError(`no offsets within ±${opts.range} satisfy "${ruleText(opts.rule)}" on the validation split ` +
      `(the least missed intervention there: ${(100 * least).toFixed(1)}%)`);
  }
  const zero = behaviors.map(() => 0);
  const at = (t: BalanceTasks, o: number[]): PointReport => {
    const pred = decide(t, o);
    const m = metricsOfCounts(counts(t, pred), behaviors);
    return { ...m, ...intervalsOf(t, pred, opts.resamples, opts.seed, m) };
  };
  const p = behaviors.indexOf(INTERVENES);
  // Along the curve, neighbouring offsets often decide every task alike (far from 0 all of them saturate): such a
  // point takes its neighbour's figures instead of resampling again (the same decisions, the same seed).
  let last: { pred: Int32Array; figures: BalanceIntervals } | undefined;
  const curve = values.map((v) => {
    const o = [...chosen.offsets];
    o[p] = v;
    const pred = decide(val, o);
    if (!last || pred.some((x, i) => x !== last!.pred[i])) {
      last = { pred, figures: intervalsOf(val, pred, opts.resamples, opts.seed, metricsOfCounts(counts(val, pred), behaviors)) };
    }
    return { offset: v, ...last.figures };
  });
  return {
    format: 'bsft-balance-v1',
    behaviors,
    offsets: Object.fromEntries(behaviors.map((b, k) => [b, chosen.offsets[k]!])),
    rule: { ...opts.rule, text: ruleText(opts.rule) },
    split: 'val',
    date: opts.date ?? new Date().toISOString(),
    grid: { range: opts.range, step: opts.step, points: points.length },
    bootstrap: { resamples: opts.resamples, seed: opts.seed, unit: 'case' },
    val: { tasks: val.gold.length, default: at(val, zero), chosen: at(val, chosen.offsets) },
    test: test ? { tasks: test.gold.length, default: at(test, zero), chosen: at(test, chosen.offsets) } : null,
    curve,
  };
}

/** A run's stored operating point (`<run>/balance.json`, written by bsft balance), or undefined. */
export function readOperatingPoint(runDir: string): BalanceResult | undefined {
  const file = path.join(runDir, 'balance.json');
  if (!existsSync(file)) return undefined;
  const r = JSON.parse(readFileSync(file, 'utf8')) as BalanceResult;
  if (r.format !== 'bsft-balance-v1') throw new BalanceInputError(`${file}: not a bsft balance file (format ${String(r.format)})`);
  return r;
}

/** The non-zero offsets of a point, for people: `proactive +1.25, restraint -0.5` ('' when none). */
export function offsetsText(offsets: Record<string, number>): string {
  return Object.entries(offsets).filter(([, v]) => v !== 0).map(([b, v]) => `${b} ${v > 0 ? '+' : ''}${v}`).join(', ');
}

/** The offsets as an OpenAI-style `logit_bias` (token ID as a string -> bias), the zero ones left out. */
export function logitBias(offsets: Record<string, number>, behaviorIds: Record<string, number>): Record<string, number> {
  return Object.fromEntries(Object.entries(offsets).filter(([, v]) => v !== 0).map(([b, v]) => [String(behaviorIds[b]), v]));
}
