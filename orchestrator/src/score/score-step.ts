import { existsSync } from 'node:fs';
import path from 'node:path';
import type { Step } from '../run/step.js';
import { writeModelCard } from '../store/model-card.js';
import { formatScore } from './format.js';
import { scoreRun } from './run-scores.js';

export const scoreStep: Step = {
  name: 'score',
  summary: 'score the predictions (BehaviorBench metrics with bootstrap intervals)',
  async unavailable() {
    return undefined;
  },
  async done(ctx) {
    return ctx.recipe.eval.splits.every((s) => existsSync(path.join(ctx.runDir, 'score', `${s}.json`)));
  },
  async run(ctx) {
    for (const split of ctx.recipe.eval.splits) {
      const s = await scoreRun(ctx.runDir, split);
      for (const line of formatScore(s.label, s.report)) process.stderr.write(`${line}\n`);
      ctx.log.info({ split, macro_f1: s.report.overall.macro_f1, accuracy: s.report.overall.accuracy }, 'scored');
    }
    await writeModelCard(ctx.runDir);
  },
};
