/**
 * npm run bench:score — scoring 142,496 predictions with 1,000 case-bootstrap resamples (target < 10 s), side by side
 * with a baseline measured in the same run: the same bootstrap recomputing each resample task by task instead of
 * adding up per-case confusion tables.
 */
import type { GoldTask, Prediction } from '../score/inputs.js';
import { encode, metricsOf, score } from '../score/metrics.js';
import { Rng } from '../util/rng.js';

const N = 142_496;
const RESAMPLES = 1000;
const B = ['reactive', 'proactive', 'restraint'];

function data(): { gold: GoldTask[]; preds: Prediction[] } {
  const rng = new Rng(1);
  const gold: GoldTask[] = [];
  const preds: Prediction[] = [];
  for (let i = 0; i < N; i++) {
    const behavior = B[Math.floor(rng.next() * 3)]!;
    gold.push({ id: `t${i}`, case_id: `c${Math.floor(i / 12)}`, category: `category_${i % 13}`, behavior, hard: i % 9 === 0, ...(i % 4 === 0 ? { answer: 'A' } : {}) });
    preds.push({ id: `t${i}`, predicted_behavior: rng.next() < 0.85 ? behavior : B[Math.floor(rng.next() * 3)]!, ...(i % 4 === 0 ? { predicted_answer: rng.next() < 0.6 ? 'A' : 'B' } : {}) });
  }
  return { gold, preds };
}

/** The same statistics (overall and hard-subset confusion metrics, per-category accuracy) resampled task by task. */
function baseline(gold: GoldTask[], preds: Prediction[]): number {
  const enc = encode(gold, new Map(preds.map((p) => [p.id, p])), B);
  const byCase: number[][] = Array.from({ length: enc.cases }, () => []);
  enc.caseOf.forEach((c, i) => byCase[c]!.push(i));
  const G = enc.categories.length;
  let sum = 0;
  for (const subset of [(i: number) => true, (i: number) => gold[i]!.hard]) {
    const rng = new Rng(2);
    for (let r = 0; r < RESAMPLES; r++) {
      const m = new Float64Array(12);
      const cat = new Float64Array(G * 2);
      for (let n = 0; n < enc.cases; n++) {
        for (const i of byCase[Math.floor(rng.next() * enc.cases)]!) {
          if (!subset(i)) continue;
          m[enc.gold[i]! * 4 + enc.pred[i]!]!++;
          cat[enc.categoryOf[i]! * 2 + 1]!++;
          if (enc.gold[i] === enc.pred[i]) cat[enc.categoryOf[i]! * 2]!++;
        }
      }
      sum += metricsOf(m, 3).macroF1 + cat[0]! / Math.max(1, cat[1]!);
    }
  }
  return sum;
}

const { gold, preds } = data();
let t = performance.now();
const report = score(gold, preds, [], B, { resamples: RESAMPLES, seed: 42 });
const ours = (performance.now() - t) / 1000;
t = performance.now();
baseline(gold, preds);
const base = (performance.now() - t) / 1000;
console.log(`scoring ${N.toLocaleString('en')} predictions, ${RESAMPLES} case-bootstrap resamples (macro-F1 ${(100 * report.overall.macro_f1.value).toFixed(2)})`);
console.log(`  bsft score (per-case tables)        ${ours.toFixed(2)} s   target < 10 s: ${ours < 10 ? 'met' : 'NOT met'}`);
console.log(`  baseline (task-by-task resampling)  ${base.toFixed(2)} s   same statistics`);
console.log(`  speed-up                            ${(base / ours).toFixed(1)}x`);
