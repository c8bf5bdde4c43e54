import { Rng } from '../util/rng.js';
import { DEFAULT_RUBRIC } from './rubric.js';
import type { KeyEntry, Rating, Study } from './study-files.js';

export interface SyntheticOptions {
  runs: number;
  tasks: number;
  raters: number;
  /** How many raters rate the pairs of task t (each pair of that task by the same number). */
  perPair: (t: number) => number;
  seed: number;
}

/**
 * A made-up study for the statistics' tests and bench:study: runs of increasing quality (a later run is preferred
 * more often), a quarter of ties, a slight pull towards the left reply, every pair of runs on every task.
 */
export function syntheticStudy(o: SyntheticOptions): { study: Study; key: KeyEntry[]; ratings: Rating[] } {
  const rng = new Rng(o.seed);
  const questions = DEFAULT_RUBRIC.questions.map((q) => q.id);
  const key: KeyEntry[] = [];
  const ratings: Rating[] = [];
  for (let t = 0; t < o.tasks; t++) {
    for (let i = 0; i < o.runs; i++) {
      for (let j = i + 1; j < o.runs; j++) {
        const item = `p${t}-${i}-${j}`;
        const a = rng.next() < 0.5 ? i : j;
        key.push({ item, task_id: `t${t}`, case_id: `c${t >> 1}`, category: `cat${t % 4}`, group: ['proactive', 'reactive', 'restraint'][t % 3]!, runs: [i, j], a });
        for (let r = 0; r < o.perPair(t); r++) {
          const answers = Object.fromEntries(questions.map((q) => {
            const u = rng.next();
            const pick = u < 0.25 ? 'tie' : (u - 0.25) / 0.75 < 0.5 + 0.12 * (j - i) ? j : i;
            const shown = pick === 'tie' ? 'tie' : pick === a ? 'A' : 'B';
            return [q, shown === 'B' && rng.next() < 0.1 ? 'A' : shown] as const;
          }));
          ratings.push({ rating_id: `${item}-${r}`, rater: `rater${(r + t) % o.raters}`, item, answers, comment: r === 0 && t % 7 === 0 ? 'note' : '', ms: 1000 * (5 + (t % 9)), submitted_at: '', source: 'web' });
        }
      }
    }
  }
  const study: Study = {
    format: 'bsft-study-v1', name: 'synthetic', id: 'synthetic', created: '', split: 'test', seed: o.seed, tasks: o.tasks, stratify: null,
    runs: Array.from({ length: o.runs }, (_, i) => ({ run_id: `r${i}`, label: `run ${i}`, dir: '' })), rubric: DEFAULT_RUBRIC, items: key.length,
  };
  return { study, key, ratings };
}
