import { agreement, type Agreement } from '../score/agreement.js';
import { interval, percentile, type Estimate } from '../score/metrics.js';
import { Rng } from '../util/rng.js';
import { ANSWERS } from './rubric.js';
import type { KeyEntry, Rating, Study } from './study-files.js';

/** Win / tie / loss of the first run of a pair against the second, each a share of the ratings. */
export interface WinTieLoss {
  n: number;
  win: Estimate;
  tie: Estimate;
  loss: Estimate;
}

export interface PairResult {
  a: string;
  b: string;
  /** Distinct tasks rated for this pair. */
  tasks: number;
  /** Per question (the first is the overall preference). */
  questions: Record<string, WinTieLoss>;
  /** Overall preference per behavior group of the task's category. */
  groups: Record<string, WinTieLoss>;
}

export interface StudyResult {
  format: 'bsft-study-report-v1';
  name: string;
  split: string;
  rubric_version: string;
  questions: { id: string; text: string }[];
  runs: string[];
  items: number;
  rated_items: number;
  ratings: number;
  raters: { name: string; ratings: number; median_s: number }[];
  resamples: number;
  pairs: PairResult[];
  /**
   * Bradley–Terry log-strengths from the overall preference (mean 0; a difference d means the first is preferred
   * with probability 1 / (1 + e^-d)); a tie counts half a win each way, and every pair of runs starts from one tie.
   * Null with fewer than three runs (the pair's win rate says it all).
   */
  bradley_terry: { label: string; score: Estimate; rank: number }[] | null;
  /** Agreement between raters on pairs rated by several, per question. */
  agreement: Record<string, { units: number; alpha: Estimate; cohen?: Agreement }>;
  /** How often the left reply (A) won the overall preference, among answers that were not a tie; 0.5 is unbiased. */
  position_bias: { n: number; left_share: Estimate; p_value: number | null };
  comments: number;
}

/** Krippendorff's alpha for nominal data; `units` holds each unit's values (units with fewer than two are left out). */
export function krippendorffAlpha(units: string[][], weights?: number[]): number {
  const index = new Map<string, number>();
  for (const u of units) for (const v of u) if (!index.has(v)) index.set(v, index.size);
  const k = index.size;
  const o = new Float64Array(k * k);
  units.forEach((u, ui) => {
    const m = u.length;
    if (m < 2) return;
    const w = weights ? weights[ui]! : 1;
    if (!w) return;
    const counts = new Float64Array(k);
    for (const v of u) counts[index.get(v)!]!++;
    for (let c = 0; c < k; c++) for (let d = 0; d < k; d++) o[c * k + d]! += (w * counts[c]! * (c === d ? counts[d]! - 1 : counts[d]!)) / (m - 1);
  });
  const nc = new Float64Array(k);
  let n = 0;
  for (let c = 0; c < k; c++) for (let d = 0; d < k; d++) nc[c]! += o[c * k + d]!;
  for (const x of nc) n += x;
  let disagree = 0;
  let expected = 0;
  for (let c = 0; c < k; c++) {
    for (let d = 0; d < k; d++) {
      if (c === d) continue;
      disagree += o[c * k + d]!;
      expected += nc[c]! * nc[d]!;
    }
  }
  if (n <= 1) return NaN;
  if (expected === 0) return disagree === 0 ? 1 : NaN; // every value the same: nothing to disagree on
  return 1 - ((n - 1) * disagree) / expected;
}

/**
 * Bradley–Terry strengths by Hunter's MM algorithm. `wins[i][j]` is how often i was preferred to j (ties already
 * split half and half); returns log-strengths with mean 0.
 */
export function bradleyTerry(wins: number[][]): number[] {
  const k = wins.length;
  let p: number[] = new Array<number>(k).fill(1);
  for (let iter = 0; iter < 100000; iter++) {
    const next = p.map((pi, i) => {
      let w = 0;
      let denom = 0;
      for (let j = 0; j < k; j++) {
        if (j === i) continue;
        w += wins[i]![j]!;
        const nij = wins[i]![j]! + wins[j]![i]!;
        if (nij) denom += nij / (pi + p[j]!);
      }
      return denom ? w / denom : pi;
    });
    const g = Math.exp(next.reduce((a, x) => a + Math.log(x), 0) / k);
    const scaled = next.map((x) => x / g);
    const change = Math.max(...scaled.map((x, i) => Math.abs(Math.log(x) - Math.log(p[i]!))));
    p = scaled;
    if (change < 1e-12) break;
  }
  return p.map((x) => Math.log(x));
}

/** Exact two-sided binomial test of k successes in n against p = 0.5 (outcomes no more likely than k's). */
export function binomialTwoSided(k: number, n: number): number {
  if (n === 0) return 1;
  const logFact = new Float64Array(n + 1);
  for (let i = 2; i <= n; i++) logFact[i] = logFact[i - 1]! + Math.log(i);
  const logPmf = (i: number) => logFact[n]! - logFact[i]! - logFact[n - i]! - n * Math.LN2;
  const at = logPmf(k);
  let p = 0;
  // As scipy's binomtest: outcomes whose probability is at most the observed one's (with a relative tolerance).
  for (let i = 0; i <= n; i++) if (logPmf(i) <= at + Math.log1p(1e-7)) p += Math.exp(logPmf(i));
  return Math.min(1, p);
}

interface Row {
  task: number;
  rater: number;
  item: number;
  pair: number;
  group: number;
  /** Per question: 0 = the pair's first run won, 1 = tie, 2 = the second won. */
  outcome: number[];
  /** Per question: the answer as shown (0 = A, 1 = B, 2 = tie). */
  shown: number[];
}

const share = (c: Float64Array | number[], at: number): [number, number, number] => {
  const n = c[at]! + c[at + 1]! + c[at + 2]!;
  return n ? [c[at]! / n, c[at + 1]! / n, c[at + 2]! / n] : [NaN, NaN, NaN];
};

/**
 * The study's statistics from the ratings that count (newest per rater and pair). Intervals are 95% percentile
 * intervals of a bootstrap that resamples raters and then tasks (all of a task's pairs together), seeded.
 */
export function studyStats(study: Study, key: KeyEntry[], ratings: Rating[], resamples: number, seed: number): StudyResult {
  const runs = study.runs.map((r) => r.label);
  const qs = study.rubric.questions;
  const Q = qs.length;
  const byItem = new Map(key.map((k) => [k.item, k]));
  const pairsOf: [number, number][] = [];
  for (let i = 0; i < runs.length; i++) for (let j = i + 1; j < runs.length; j++) pairsOf.push([i, j]);
  const pairIndex = (p: [number, number]) => pairsOf.findIndex(([i, j]) => i === p[0] && j === p[1]);
  const groups = [...new Set(key.map((k) => k.group))].sort();
  const tasks = new Map<string, number>();
  const raters = new Map<string, number>();
  const items = new Map<string, number>();
  const rows: Row[] = [];
  for (const r of ratings) {
    const k = byItem.get(r.item);
    if (!k) continue;
    if (!tasks.has(k.task_id)) tasks.set(k.task_id, tasks.size);
    if (!raters.has(r.rater)) raters.set(r.rater, raters.size);
    if (!items.has(r.item)) items.set(r.item, items.size);
    const shown = qs.map((q) => ANSWERS.indexOf(r.answers[q.id]!));
    const outcome = shown.map((s) => {
      if (s === 2) return 1;
      const winner = s === 0 ? k.a : k.runs[0] === k.a ? k.runs[1] : k.runs[0];
      return winner === k.runs[0] ? 0 : 2;
    });
    rows.push({ task: tasks.get(k.task_id)!, rater: raters.get(r.rater)!, item: items.get(r.item)!, pair: pairIndex(k.runs), group: groups.indexOf(k.group), outcome, shown });
  }
  const P = pairsOf.length;
  const G = groups.length;
  // Counts per pair x (all, groups...) x question x outcome, under weights per rating.
  const countsOf = (w: (row: Row) => number) => {
    const c = new Float64Array(P * (G + 1) * Q * 3);
    for (const row of rows) {
      const x = w(row);
      if (!x) continue;
      for (let q = 0; q < Q; q++) {
        c[((row.pair * (G + 1)) * Q + q) * 3 + row.outcome[q]!]! += x;
        if (q === 0) c[((row.pair * (G + 1) + 1 + row.group) * Q) * 3 + row.outcome[0]!]! += x;
      }
    }
    return c;
  };
  const btOf = (c: Float64Array) => {
    const wins = runs.map(() => runs.map(() => 0));
    pairsOf.forEach(([i, j], p) => {
      const at = (p * (G + 1) * Q) * 3;
      wins[i]![j] = c[at]! + 0.5 * c[at + 1]! + 0.5;
      wins[j]![i] = c[at + 2]! + 0.5 * c[at + 1]! + 0.5;
    });
    return bradleyTerry(wins);
  };
  const leftOf = (w: (row: Row) => number) => {
    let left = 0;
    let decided = 0;
    for (const row of rows) {
      const x = w(row);
      if (!x || row.shown[0] === 2) continue;
      decided += x;
      if (row.shown[0] === 0) left += x;
    }
    return decided ? left / decided : NaN;
  };
  // Units of agreement: pairs rated by two raters or more; values are the answers as shown.
  const units = (q: number) => {
    const byUnit = new Map<number, { task: number; values: string[] }>();
    for (const row of rows) {
      const u = byUnit.get(row.item) ?? { task: row.task, values: [] };
      u.values.push(ANSWERS[row.shown[q]!]!);
      byUnit.set(row.item, u);
    }
    return [...byUnit.values()].filter((u) => u.values.length >= 2);
  };

  const whole = countsOf(() => 1);
  const bt = runs.length >= 3 ? btOf(whole) : null;
  const left = leftOf(() => 1);
  const unitsByQ = qs.map((_, q) => units(q));
  const alphas = unitsByQ.map((u) => krippendorffAlpha(u.map((x) => x.values)));

  // The bootstrap: raters with replacement (when there are several), then tasks with replacement.
  const T = tasks.size;
  const R = raters.size;
  const B = T ? resamples : 0;
  const draws = {
    counts: Array.from({ length: B }, () => new Float64Array(0)),
    bt: [] as number[][],
    left: new Float64Array(B),
    alpha: qs.map(() => new Float64Array(B)),
  };
  const rng = new Rng(seed + 31);
  const tw = new Float64Array(T);
  const rw = new Float64Array(R);
  for (let b = 0; b < B; b++) {
    tw.fill(0);
    rw.fill(0);
    for (let i = 0; i < T; i++) tw[Math.floor(rng.next() * T)]!++;
    if (R > 1) for (let i = 0; i < R; i++) rw[Math.floor(rng.next() * R)]!++;
    else rw.fill(1);
    const w = (row: Row) => tw[row.task]! * rw[row.rater]!;
    draws.counts[b] = countsOf(w);
    if (bt) draws.bt.push(btOf(draws.counts[b]!));
    draws.left[b] = leftOf(w);
    unitsByQ.forEach((u, q) => { draws.alpha[q]![b] = krippendorffAlpha(u.map((x) => x.values), u.map((x) => tw[x.task]!)); });
  }
  const estimate = (value: number, pick: (b: number) => number): Estimate => (B ? { value, ci: interval(Float64Array.from({ length: B }, (_, b) => pick(b))) } : { value });
  const wtl = (p: number, g: number, q: number): WinTieLoss => {
    const at = ((p * (G + 1) + g) * Q + q) * 3;
    const [win, tie, loss] = share(whole, at);
    return {
      n: whole[at]! + whole[at + 1]! + whole[at + 2]!,
      win: estimate(win, (b) => share(draws.counts[b]!, at)[0]),
      tie: estimate(tie, (b) => share(draws.counts[b]!, at)[1]),
      loss: estimate(loss, (b) => share(draws.counts[b]!, at)[2]),
    };
  };
  const decided = rows.filter((r) => r.shown[0] !== 2);
  const raterNames = [...raters.keys()];
  return {
    format: 'bsft-study-report-v1',
    name: study.name,
    split: study.split,
    rubric_version: study.rubric.version,
    questions: qs.map((q) => ({ id: q.id, text: q.text })),
    runs,
    items: key.length,
    rated_items: items.size,
    ratings: rows.length,
    raters: raterNames.map((name) => {
      const mine = ratings.filter((r) => r.rater === name && byItem.has(r.item));
      return { name, ratings: mine.length, median_s: percentile(Float64Array.from(mine, (r) => r.ms / 1000).sort(), 0.5) };
    }),
    resamples: B,
    pairs: pairsOf.map(([i, j], p) => ({
      a: runs[i]!,
      b: runs[j]!,
      tasks: new Set(rows.filter((r) => r.pair === p).map((r) => r.task)).size,
      questions: Object.fromEntries(qs.map((q, qi) => [q.id, wtl(p, 0, qi)])),
      groups: Object.fromEntries(groups.map((g, gi) => [g, wtl(p, gi + 1, 0)]).filter(([, x]) => (x as WinTieLoss).n > 0)),
    })),
    bradley_terry: bt
      ? runs.map((label, i) => ({ label, score: estimate(bt[i]!, (b) => draws.bt[b]![i]!), rank: 1 + bt.filter((x) => x > bt[i]!).length })).sort((x, y) => x.rank - y.rank)
      : null,
    agreement: Object.fromEntries(qs.map((q, qi) => {
      const u = unitsByQ[qi]!;
      const entry: StudyResult['agreement'][string] = { units: u.length, alpha: estimate(alphas[qi]!, (b) => draws.alpha[qi]![b]!) };
      if (raterNames.length === 2 && u.length) {
        const [r1, r2] = [0, 1];
        const byUnit = new Map<number, { task: number; a?: string; b?: string }>();
        for (const row of rows) {
          const e = byUnit.get(row.item) ?? { task: row.task };
          if (row.rater === r1) e.a = ANSWERS[row.shown[qi]!];
          if (row.rater === r2) e.b = ANSWERS[row.shown[qi]!];
          byUnit.set(row.item, e);
        }
        const both = [...byUnit.values()].filter((e) => e.a && e.b);
        entry.cohen = agreement(both.map((e) => ({ a: e.a!, b: e.b!, case_id: String(e.task) })), [...ANSWERS], B, seed);
      }
      return [q.id, entry];
    })),
    position_bias: {
      n: decided.length,
      left_share: estimate(left, (b) => draws.left[b]!),
      p_value: decided.length ? binomialTwoSided(decided.filter((r) => r.shown[0] === 0).length, decided.length) : null,
    },
    comments: ratings.filter((r) => r.comment && byItem.has(r.item)).length,
  };
}
