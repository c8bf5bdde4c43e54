import { ScoreInputError } from '../errors.js';
import { Rng } from '../util/rng.js';
import type { Agreement } from './agreement.js';
import type { GoldTask, Prediction } from './inputs.js';

/**
 * BehaviorBench metrics (Contract 7). Conventions, stated in every score:
 * - a task without a prediction, or whose prediction names no behavior, counts as wrong (column "none");
 * - a class with no gold items or no predictions has F1 = 0 and is flagged; macro-F1 averages over every class;
 * - 95% intervals are percentile bootstrap intervals, resampling whole cases with replacement (seeded).
 */
export const CONVENTIONS = [
  'tasks without a prediction, or with no behavior predicted, count as wrong (column "none")',
  'a class with no gold items or no predictions has F1 = 0 and is flagged; macro-F1 averages over all classes',
  '95% intervals: percentile bootstrap over cases (all tasks of a case resampled together), seeded',
];

export interface Estimate {
  value: number;
  ci?: [number, number];
}

export interface ClassScore {
  precision: number;
  recall: number;
  f1: Estimate;
  support: number;
  predicted: number;
  flags: string[];
}

export interface Summary {
  n: number;
  accuracy: Estimate;
  macro_f1: Estimate;
  per_class: Record<string, ClassScore>;
  /** rows: gold behaviors; columns: predicted behaviors then "none". */
  confusion: number[][];
}

/** Tasks encoded as arrays, for fast bootstrap: labels 0..K-1, predictions 0..K (K = none). */
export interface Encoded {
  behaviors: string[];
  categories: string[];
  gold: Int32Array;
  pred: Int32Array;
  caseOf: Int32Array;
  categoryOf: Int32Array;
  cases: number;
}

export function encode(gold: GoldTask[], predictions: Map<string, Prediction>, behaviors: string[]): Encoded {
  const bIndex = new Map(behaviors.map((b, i) => [b, i]));
  const cases = new Map<string, number>();
  const categories = [...new Set(gold.map((t) => t.category))].sort();
  const cIndex = new Map(categories.map((c, i) => [c, i]));
  const K = behaviors.length;
  const enc: Encoded = {
    behaviors,
    categories,
    gold: new Int32Array(gold.length),
    pred: new Int32Array(gold.length),
    caseOf: new Int32Array(gold.length),
    categoryOf: new Int32Array(gold.length),
    cases: 0,
  };
  gold.forEach((t, i) => {
    enc.gold[i] = bIndex.get(t.behavior) ?? -1;
    if (enc.gold[i] < 0) throw new Error(`task ${t.id}: gold behavior "${t.behavior}" is not one of ${behaviors.join(', ')}`);
    const p = predictions.get(t.id)?.predicted_behavior;
    enc.pred[i] = p == null ? K : (bIndex.get(p) ?? K);
    if (!cases.has(t.case_id)) cases.set(t.case_id, cases.size);
    enc.caseOf[i] = cases.get(t.case_id)!;
    enc.categoryOf[i] = cIndex.get(t.category)!;
  });
  enc.cases = cases.size;
  return enc;
}

/** Flat confusion counts [K x (K+1)] of the given tasks (all when `tasks` is omitted). */
function confusionCounts(enc: Encoded, tasks?: number[]): Float64Array {
  const K = enc.behaviors.length;
  const m = new Float64Array(K * (K + 1));
  if (tasks) for (const i of tasks) m[enc.gold[i]! * (K + 1) + enc.pred[i]!]!++;
  else for (let i = 0; i < enc.gold.length; i++) m[enc.gold[i]! * (K + 1) + enc.pred[i]!]!++;
  return m;
}

interface PointMetrics {
  accuracy: number;
  macroF1: number;
  f1: number[];
  precision: number[];
  recall: number[];
  support: number[];
  predicted: number[];
}

/** Metrics of a flat K x (K+1) confusion matrix. */
export function metricsOf(m: Float64Array | number[], K: number): PointMetrics {
  const f1: number[] = [];
  const precision: number[] = [];
  const recall: number[] = [];
  const support: number[] = [];
  const predicted: number[] = [];
  let correct = 0;
  let total = 0;
  for (let k = 0; k < K; k++) {
    let row = 0;
    let col = 0;
    for (let j = 0; j <= K; j++) row += m[k * (K + 1) + j]!;
    for (let g = 0; g < K; g++) col += m[g * (K + 1) + k]!;
    const tp = m[k * (K + 1) + k]!;
    correct += tp;
    total += row;
    const p = col > 0 ? tp / col : 0;
    const r = row > 0 ? tp / row : 0;
    precision.push(p);
    recall.push(r);
    f1.push(row > 0 && col > 0 && p + r > 0 ? (2 * p * r) / (p + r) : 0);
    support.push(row);
    predicted.push(col);
  }
  return {
    accuracy: total > 0 ? correct / total : 0,
    macroF1: K > 0 ? f1.reduce((a, b) => a + b, 0) / K : 0,
    f1,
    precision,
    recall,
    support,
    predicted,
  };
}

/** The q-quantile of sorted values, interpolated linearly (q = 0.5: the median); NaN for none. */
export function percentile(sorted: Float64Array, q: number): number {
  if (sorted.length === 0) return NaN;
  const pos = q * (sorted.length - 1);
  const lo = Math.floor(pos);
  const hi = Math.ceil(pos);
  return sorted[lo]! + (sorted[hi]! - sorted[lo]!) * (pos - lo);
}

/** 95% percentile interval; resamples where the statistic is undefined (NaN) are left out. */
export function interval(values: Float64Array): [number, number] {
  const sorted = Float64Array.from(values.filter((v) => !Number.isNaN(v))).sort();
  return [percentile(sorted, 0.025), percentile(sorted, 0.975)];
}

/** Per-case confusion counts (C x K x (K+1)) and per-case per-category (correct, total). */
interface CaseTables {
  confusion: Float64Array;
  categories: Float64Array;
  cases: number;
}

function caseTables(enc: Encoded, tasks: number[]): CaseTables {
  const K = enc.behaviors.length;
  const cell = K * (K + 1);
  const G = enc.categories.length;
  const C = enc.cases;
  const confusion = new Float64Array(C * cell);
  const categories = new Float64Array(C * G * 2);
  for (const i of tasks) {
    const c = enc.caseOf[i]!;
    confusion[c * cell + enc.gold[i]! * (K + 1) + enc.pred[i]!]!++;
    const g = enc.categoryOf[i]!;
    categories[(c * G + g) * 2 + 1]!++;
    if (enc.gold[i] === enc.pred[i]) categories[(c * G + g) * 2]!++;
  }
  return { confusion, categories, cases: C };
}

export interface BootstrapResult {
  macroF1: Float64Array;
  accuracy: Float64Array;
  f1: Float64Array[];
  recall: Float64Array[];
  categoryAccuracy: Float64Array[];
}

/**
 * Percentile bootstrap over cases: each resample draws C cases with replacement and adds up their tables.
 * Only cases present in `tasks` are drawn.
 */
export function bootstrap(enc: Encoded, tasks: number[], resamples: number, seed: number): BootstrapResult {
  const K = enc.behaviors.length;
  const cell = K * (K + 1);
  const G = enc.categories.length;
  const tables = caseTables(enc, tasks);
  const present = [...new Set(tasks.map((i) => enc.caseOf[i]!))];
  const rng = new Rng(seed);
  const out: BootstrapResult = {
    macroF1: new Float64Array(resamples),
    accuracy: new Float64Array(resamples),
    f1: Array.from({ length: K }, () => new Float64Array(resamples)),
    recall: Array.from({ length: K }, () => new Float64Array(resamples)),
    categoryAccuracy: Array.from({ length: G }, () => new Float64Array(resamples)),
  };
  const m = new Float64Array(cell);
  const cat = new Float64Array(G * 2);
  for (let r = 0; r < resamples; r++) {
    m.fill(0);
    cat.fill(0);
    for (let n = 0; n < present.length; n++) {
      const c = present[Math.floor(rng.next() * present.length)]!;
      const base = c * cell;
      for (let j = 0; j < cell; j++) m[j]! += tables.confusion[base + j]!;
      const cb = c * G * 2;
      for (let j = 0; j < G * 2; j++) cat[j]! += tables.categories[cb + j]!;
    }
    const pm = metricsOf(m, K);
    out.macroF1[r] = pm.macroF1;
    out.accuracy[r] = pm.accuracy;
    for (let k = 0; k < K; k++) {
      out.f1[k]![r] = pm.f1[k]!;
      out.recall[k]![r] = pm.support[k]! > 0 ? pm.recall[k]! : NaN;
    }
    for (let g = 0; g < G; g++) out.categoryAccuracy[g]![r] = cat[g * 2 + 1]! > 0 ? cat[g * 2]! / cat[g * 2 + 1]! : NaN;
  }
  return out;
}

function summary(enc: Encoded, tasks: number[], boot?: BootstrapResult): Summary {
  const K = enc.behaviors.length;
  const counts = confusionCounts(enc, tasks);
  const pm = metricsOf(counts, K);
  const per_class: Record<string, ClassScore> = {};
  enc.behaviors.forEach((b, k) => {
    const flags: string[] = [];
    if (pm.support[k] === 0) flags.push('no gold items: F1 = 0');
    if (pm.predicted[k] === 0) flags.push('no predictions: F1 = 0');
    per_class[b] = {
      precision: pm.precision[k]!,
      recall: pm.recall[k]!,
      f1: { value: pm.f1[k]!, ...(boot ? { ci: interval(boot.f1[k]!) } : {}) },
      support: pm.support[k]!,
      predicted: pm.predicted[k]!,
      flags,
    };
  });
  const confusion = Array.from({ length: K }, (_, g) => Array.from(counts.subarray(g * (K + 1), (g + 1) * (K + 1))));
  return {
    n: tasks.length,
    accuracy: { value: pm.accuracy, ...(boot ? { ci: interval(boot.accuracy) } : {}) },
    macro_f1: { value: pm.macroF1, ...(boot ? { ci: interval(boot.macroF1) } : {}) },
    per_class,
    confusion,
  };
}

export interface GroupScore {
  group: string;
  n: number;
  accuracy: Estimate;
  macro_f1: number;
}

export interface ScoreReport {
  format: 'bsft-score-v1';
  split?: string;
  behaviors: string[];
  conventions: string[];
  bootstrap: { resamples: number; seed: number; unit: 'case' };
  n_tasks: number;
  n_predictions: number;
  missing: { count: number; ids: string[] };
  no_behavior: number;
  overall: Summary;
  per_category: Record<string, GroupScore>;
  per_group: Record<string, GroupScore>;
  hard: Summary | null;
  /**
   * eval.reply_tag: the behaviors the replies' own tags name, scored against the gold (a reply without a tag counts
   * wrong) and against the judge's labels.
   */
  tag?: { untagged: number; macro_f1: Estimate; accuracy: Estimate; judge_agreement: Agreement | null };
  /** A derived Hard subset (bsft hard-subset; --hard-subset): its name and the tasks of it in this split. */
  hard_subset?: (Summary & { name: string }) | null;
  answers: { n: number; accuracy: Estimate } | null;
  forced: Record<string, { n: number; judged: number; steering_accuracy: number | null; answer_accuracy: number | null }>;
  /** What always answering the split's most common gold behavior scores: the floor a model must clear. */
  majority: { behavior: string; macro_f1: number; accuracy: number };
  /** Where the chosen predictions' labels come from: their first token, a judge, or nowhere (counted wrong). */
  label_source?: { token: number; judge: number; none: number };
  /** The judge that gave labels, and how far to trust it (score/agreement.ts); absent without one. */
  judge?: {
    model: string;
    prompt_version: string;
    /** The judge's labels of the gold replies against the gold behaviors. */
    validity: Agreement & { unparseable: number };
    /** Token runs judged too (`also_token_runs`): the model's own token against the judge's label of its reply. */
    agreement: Agreement | null;
  };
}

export interface ScoreOptions {
  resamples: number;
  seed: number;
  split?: string;
  /** A derived Hard subset to score as well (its task ids). */
  subset?: { name: string; ids: string[] };
}

/** Scores the chosen-behavior predictions of a run (and, separately, its forced-token predictions). */
export function score(gold: GoldTask[], chosen: Prediction[], forced: Prediction[][], behaviors: string[], opts: ScoreOptions): ScoreReport {
  const byId = new Map(chosen.map((p) => [p.id, p]));
  const enc = encode(gold, byId, behaviors);
  const all = gold.map((_, i) => i);
  const boot = opts.resamples > 0 ? bootstrap(enc, all, opts.resamples, opts.seed) : undefined;
  const K = behaviors.length;

  const per_category: Record<string, GroupScore> = {};
  enc.categories.forEach((c, g) => {
    const tasks = all.filter((i) => enc.categoryOf[i] === g);
    const pm = metricsOf(confusionCounts(enc, tasks), K);
    const groups = [...new Set(tasks.map((i) => behaviors[enc.gold[i]!]!))];
    per_category[c] = {
      group: groups.join('+'),
      n: tasks.length,
      accuracy: { value: pm.accuracy, ...(boot ? { ci: interval(boot.categoryAccuracy[g]!) } : {}) },
      macro_f1: pm.macroF1,
    };
  });
  const per_group: Record<string, GroupScore> = {};
  behaviors.forEach((b, k) => {
    const tasks = all.filter((i) => enc.gold[i] === k);
    const pm = metricsOf(confusionCounts(enc, tasks), K);
    per_group[b] = {
      group: b,
      n: tasks.length,
      // The accuracy of a group is the recall of its behavior; its interval is that of the resampled recall.
      accuracy: { value: pm.accuracy, ...(boot ? { ci: interval(boot.recall[k]!) } : {}) },
      macro_f1: pm.macroF1,
    };
  });

  const hardTasks = all.filter((i) => gold[i]!.hard);
  const hard = hardTasks.length ? summary(enc, hardTasks, opts.resamples > 0 ? bootstrap(enc, hardTasks, opts.resamples, opts.seed + 1) : undefined) : null;

  let hardSubset: ScoreReport['hard_subset'];
  if (opts.subset) {
    const want = new Set(opts.subset.ids);
    const tasks = all.filter((i) => want.has(gold[i]!.id));
    if (tasks.length !== want.size) {
      throw new ScoreInputError(`Hard subset ${opts.subset.name}: ${want.size - tasks.length} of its ${want.size} tasks are not in this split${opts.split ? ` (${opts.split})` : ''}: it was derived on other tasks`);
    }
    hardSubset = tasks.length ? { name: opts.subset.name, ...summary(enc, tasks, opts.resamples > 0 ? bootstrap(enc, tasks, opts.resamples, opts.seed + 2) : undefined) } : null;
  }

  const withAnswer = gold.filter((t) => t.answer !== undefined);
  const answerCorrect = (t: GoldTask, p?: Prediction) =>
    p?.predicted_answer != null && p.predicted_answer.trim().toUpperCase() === t.answer!.trim().toUpperCase();
  let answers: ScoreReport['answers'] = null;
  if (withAnswer.length) {
    const correct = withAnswer.map((t) => (answerCorrect(t, byId.get(t.id)) ? 1 : 0));
    answers = { n: withAnswer.length, accuracy: { value: correct.reduce((a: number, b) => a + b, 0) / withAnswer.length } };
    if (opts.resamples > 0) {
      const caseIds = [...new Set(withAnswer.map((t) => t.case_id))];
      const perCase = new Map(caseIds.map((c) => [c, [0, 0]]));
      withAnswer.forEach((t, i) => {
        const row = perCase.get(t.case_id)!;
        row[0]! += correct[i]!;
        row[1]! += 1;
      });
      const rows = caseIds.map((c) => perCase.get(c)!);
      const rng = new Rng(opts.seed + 2);
      const values = new Float64Array(opts.resamples);
      for (let r = 0; r < opts.resamples; r++) {
        let a = 0;
        let n = 0;
        for (let j = 0; j < rows.length; j++) {
          const row = rows[Math.floor(rng.next() * rows.length)]!;
          a += row[0]!;
          n += row[1]!;
        }
        values[r] = n ? a / n : NaN;
      }
      answers.accuracy.ci = interval(values);
    }
  }

  const forcedOut: ScoreReport['forced'] = {};
  const goldById = new Map(gold.map((t) => [t.id, t]));
  for (const run of forced) {
    const b = run[0]?.predicted_behavior;
    if (!b) continue;
    const judged = run.filter((p) => p.judged_behavior != null);
    const answered = run.filter((p) => goldById.get(p.id)?.answer !== undefined);
    forcedOut[b] = {
      n: run.length,
      judged: judged.length,
      steering_accuracy: judged.length ? judged.filter((p) => p.judged_behavior === b).length / judged.length : null,
      answer_accuracy: answered.length ? answered.filter((p) => answerCorrect(goldById.get(p.id)!, p)).length / answered.length : null,
    };
  }

  const missing = gold.filter((t) => !byId.has(t.id)).map((t) => t.id);
  const support = behaviors.map((_, b) => enc.gold.filter((g) => g === b).length);
  const top = support.indexOf(Math.max(...support));
  const constant = metricsOf(confusionCounts({ ...enc, pred: enc.gold.map(() => top) }), K);
  return {
    format: 'bsft-score-v1',
    ...(opts.split ? { split: opts.split } : {}),
    behaviors,
    conventions: CONVENTIONS,
    bootstrap: { resamples: opts.resamples, seed: opts.seed, unit: 'case' },
    n_tasks: gold.length,
    n_predictions: chosen.length,
    missing: { count: missing.length, ids: missing.slice(0, 100) },
    no_behavior: chosen.filter((p) => p.predicted_behavior == null).length,
    overall: summary(enc, all, boot),
    per_category,
    per_group,
    hard,
    ...(hardSubset !== undefined ? { hard_subset: hardSubset } : {}),
    answers,
    forced: forcedOut,
    majority: { behavior: behaviors[top]!, macro_f1: constant.macroF1, accuracy: constant.accuracy },
  };
}

/** Paired bootstrap of run A minus run B over the same tasks: resamples cases jointly. */
export function pairedDelta(a: Encoded, b: Encoded, resamples: number, seed: number) {
  const K = a.behaviors.length;
  const all = Array.from(a.gold, (_, i) => i);
  const ta = caseTables(a, all);
  const tb = caseTables(b, all);
  const cell = K * (K + 1);
  const rng = new Rng(seed);
  const macro = new Float64Array(resamples);
  const acc = new Float64Array(resamples);
  const f1 = Array.from({ length: K }, () => new Float64Array(resamples));
  const ma = new Float64Array(cell);
  const mb = new Float64Array(cell);
  for (let r = 0; r < resamples; r++) {
    ma.fill(0);
    mb.fill(0);
    for (let n = 0; n < a.cases; n++) {
      const c = Math.floor(rng.next() * a.cases);
      for (let j = 0; j < cell; j++) {
        ma[j]! += ta.confusion[c * cell + j]!;
        mb[j]! += tb.confusion[c * cell + j]!;
      }
    }
    const pa = metricsOf(ma, K);
    const pb = metricsOf(mb, K);
    macro[r] = pa.macroF1 - pb.macroF1;
    acc[r] = pa.accuracy - pb.accuracy;
    for (let k = 0; k < K; k++) f1[k]![r] = pa.f1[k]! - pb.f1[k]!;
  }
  const pa = metricsOf(confusionCounts(a), K);
  const pb = metricsOf(confusionCounts(b), K);
  return {
    macro_f1: { value: pa.macroF1 - pb.macroF1, ci: interval(macro) },
    accuracy: { value: pa.accuracy - pb.accuracy, ci: interval(acc) },
    per_class_f1: Object.fromEntries(a.behaviors.map((bh, k) => [bh, { value: pa.f1[k]! - pb.f1[k]!, ci: interval(f1[k]!) }])),
  };
}
