import { execFileSync } from 'node:child_process';
import path from 'node:path';
import { describe, expect, it } from 'vitest';
import { DEFAULT_RUBRIC } from '../src/study/rubric.js';
import { binomialTwoSided, bradleyTerry, krippendorffAlpha, studyStats } from '../src/study/stats.js';
import type { Rating } from '../src/study/study-files.js';
import { syntheticStudy } from '../src/study/synthetic.js';
import { FIXTURES } from './helpers/cli.js';
import { pythonThatRuns } from './helpers/python.js';

const QUESTIONS = DEFAULT_RUBRIC.questions.map((q) => q.id);

const synthetic = (runs: number, tasks: number, raters: number, seed: number) =>
  syntheticStudy({ runs, tasks, raters, seed, perPair: (t) => (t % 3 === 0 ? raters : 1) }); // all raters on a third of the pairs

// scikit-learn and scipy: Debian's python3-sklearn (scripts/test.sh installs it), or any Python that has them.
const py = pythonThatRuns('import sklearn, scipy, numpy', [process.env.BSFT_PYTHON, '/usr/bin/python3', 'python3']);

describe('study statistics', () => {
  it("Krippendorff's alpha: the nominal example of Krippendorff (2011), alpha = 0.743", () => {
    // 4 observers, 12 units, missing values left out; units 12 has a single value and does not count.
    const units = [
      ['1', '1', '1'], ['2', '2', '3', '2'], ['3', '3', '3', '3'], ['3', '3', '3', '3'], ['2', '2', '2', '2'], ['1', '2', '3', '4'],
      ['4', '4', '4', '4'], ['1', '1', '2', '1'], ['2', '2', '2', '2'], ['5', '5', '5'], ['1', '1'], ['3'],
    ];
    expect(krippendorffAlpha(units)).toBeCloseTo(0.743, 3);
    expect(krippendorffAlpha([['A', 'A'], ['B', 'B']])).toBe(1);
    expect(krippendorffAlpha([['A', 'A'], ['A', 'A']])).toBe(1); // one value throughout: nothing to disagree on
  });

  it('Bradley–Terry: a hand-worked case and the maximum-likelihood condition', () => {
    // Two runs, 3 wins to 1: p0 / (p0 + p1) = 3/4, so the log-strength difference is ln 3.
    const s = bradleyTerry([[0, 3], [1, 0]]);
    expect(s[0]! - s[1]!).toBeCloseTo(Math.log(3), 10);
    expect(s[0]! + s[1]!).toBeCloseTo(0, 12);
    // Three runs: at the optimum each run's wins equal its expected wins.
    const w = [[0, 7, 4], [3, 0, 6], [2, 5, 0]];
    const t = bradleyTerry(w);
    for (let i = 0; i < 3; i++) {
      let expected = 0;
      let won = 0;
      for (let j = 0; j < 3; j++) {
        if (i === j) continue;
        won += w[i]![j]!;
        expected += (w[i]![j]! + w[j]![i]!) / (1 + Math.exp(t[j]! - t[i]!));
      }
      expect(expected).toBeCloseTo(won, 8);
    }
  });

  it('binomial test: hand-worked values', () => {
    expect(binomialTwoSided(5, 10)).toBeCloseTo(1, 12);
    expect(binomialTwoSided(0, 5)).toBeCloseTo(2 / 32, 12);
    expect(binomialTwoSided(9, 10)).toBeCloseTo(22 / 1024, 12);
  });

  it.skipIf(!py)('every figure equals an independent computation (scikit-learn, scipy, the definitions)', () => {
    for (const [runs, raters] of [[3, 2], [4, 3]] as const) {
      const { study, key, ratings } = synthetic(runs, 60, raters, 11 + runs);
      const s = studyStats(study, key, ratings, 200, 3);
      const ref = JSON.parse(execFileSync(py!, [path.join(FIXTURES, 'study_stats_reference.py')], {
        input: JSON.stringify({ runs: study.runs.map((r) => r.label), questions: QUESTIONS, key, ratings }),
      }).toString()) as { shares: Record<string, Record<string, { win: number; tie: number; loss: number }>>; bt: number[]; alpha: Record<string, number>; kappa: Record<string, number>; left_share: number; p_value: number };
      expect(s.ratings).toBe(ratings.length);
      for (const q of QUESTIONS) {
        s.pairs.forEach((p) => {
          const [i, j] = [study.runs.findIndex((r) => r.label === p.a), study.runs.findIndex((r) => r.label === p.b)];
          const want = ref.shares[q]![`${i}-${j}`]!;
          for (const o of ['win', 'tie', 'loss'] as const) {
            expect(p.questions[q]![o].value).toBeCloseTo(want[o], 12);
            const ci = p.questions[q]![o].ci!;
            expect(ci[0]).toBeLessThanOrEqual(want[o] + 1e-12);
            expect(ci[1]).toBeGreaterThanOrEqual(want[o] - 1e-12);
          }
        });
        expect(s.agreement[q]!.alpha.value).toBeCloseTo(ref.alpha[q]!, 10);
        if (raters === 2) expect(s.agreement[q]!.cohen!.kappa.value).toBeCloseTo(ref.kappa[q]!, 10);
        else expect(s.agreement[q]!.cohen).toBeUndefined();
      }
      const bt = study.runs.map((r) => s.bradley_terry!.find((x) => x.label === r.label)!.score.value);
      bt.forEach((v, i) => expect(v).toBeCloseTo(ref.bt[i]!, 5));
      expect(s.bradley_terry!.map((x) => x.label)).toEqual([...study.runs].reverse().map((r) => r.label)); // better runs rank higher
      expect(s.position_bias.left_share.value).toBeCloseTo(ref.left_share, 12);
      expect(s.position_bias.p_value!).toBeCloseTo(ref.p_value, 10);
    }
  });

  it('intervals: seeded, around the estimate, and degenerate where every rating agrees', () => {
    const { study, key, ratings } = synthetic(2, 40, 2, 5);
    const a = studyStats(study, key, ratings, 300, 9);
    expect(studyStats(study, key, ratings, 300, 9)).toEqual(a);
    expect(a.bradley_terry).toBeNull(); // two runs: the pair's win rate says it
    const all = ratings.map((r) => {
      const k = key.find((x) => x.item === r.item)!;
      return { ...r, answers: Object.fromEntries(QUESTIONS.map((q) => [q, k.a === 0 ? 'A' : 'B'])) } as Rating;
    });
    const s = studyStats(study, key, all, 300, 9);
    expect(s.pairs[0]!.questions.overall).toMatchObject({ win: { value: 1, ci: [1, 1] }, tie: { value: 0, ci: [0, 0] }, loss: { value: 0, ci: [0, 0] } });
    expect(Object.keys(s.pairs[0]!.groups).sort()).toEqual(['proactive', 'reactive', 'restraint']);
    expect(s.raters.map((r) => r.name).sort()).toEqual(['rater0', 'rater1']);
  });
});
