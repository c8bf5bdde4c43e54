import { Rng } from '../util/rng.js';
import { interval, type Estimate } from './metrics.js';

/** Two labelings of the same items (a: the reference, b: the judge; null: no label), with each item's case. */
export interface LabelPair {
  a: string;
  b: string | null;
  case_id: string;
}

export interface Agreement {
  n: number;
  /** Share of items where the labels agree. */
  accuracy: Estimate;
  /** Cohen's kappa: agreement beyond what the two label distributions give by chance. */
  kappa: Estimate;
}

/** Accuracy and Cohen's kappa from a (K+1) x (K+1) count table (the last row and column: no label). */
function point(counts: Float64Array, k: number): { accuracy: number; kappa: number } {
  let n = 0;
  let agree = 0;
  const rows = new Float64Array(k);
  const cols = new Float64Array(k);
  for (let i = 0; i < k; i++) {
    for (let j = 0; j < k; j++) {
      const c = counts[i * k + j]!;
      n += c;
      rows[i]! += c;
      cols[j]! += c;
      if (i === j && i < k - 1) agree += c; // "no label" never agrees
    }
  }
  if (n === 0) return { accuracy: NaN, kappa: NaN };
  const po = agree / n;
  let pe = 0;
  for (let i = 0; i < k - 1; i++) pe += (rows[i]! / n) * (cols[i]! / n);
  return { accuracy: po, kappa: pe >= 1 ? (po >= 1 ? 1 : 0) : (po - pe) / (1 - pe) };
}

/**
 * How well labels `b` agree with labels `a`: accuracy and Cohen's kappa, with 95% percentile intervals from a
 * bootstrap that resamples whole cases (seeded), as every other interval of a score.
 */
export function agreement(pairs: LabelPair[], labels: string[], resamples: number, seed: number): Agreement {
  const k = labels.length + 1;
  const index = new Map(labels.map((l, i) => [l, i]));
  const cases = new Map<string, Float64Array>();
  const all = new Float64Array(k * k);
  for (const p of pairs) {
    const i = index.get(p.a) ?? k - 1;
    const j = p.b === null ? k - 1 : (index.get(p.b) ?? k - 1);
    let table = cases.get(p.case_id);
    if (!table) cases.set(p.case_id, (table = new Float64Array(k * k)));
    table[i * k + j]!++;
    all[i * k + j]!++;
  }
  const whole = point(all, k);
  const out: Agreement = { n: pairs.length, accuracy: { value: whole.accuracy }, kappa: { value: whole.kappa } };
  if (resamples > 0 && cases.size > 0) {
    const tables = [...cases.values()];
    const rng = new Rng(seed + 7);
    const acc = new Float64Array(resamples);
    const kap = new Float64Array(resamples);
    const sum = new Float64Array(k * k);
    for (let r = 0; r < resamples; r++) {
      sum.fill(0);
      for (let c = 0; c < tables.length; c++) {
        const t = tables[Math.floor(rng.next() * tables.length)]!;
        for (let x = 0; x < t.length; x++) sum[x]! += t[x]!;
      }
      const p = point(sum, k);
      acc[r] = p.accuracy;
      kap[r] = p.kappa;
    }
    out.accuracy.ci = interval(acc);
    out.kappa.ci = interval(kap);
  }
  return out;
}
