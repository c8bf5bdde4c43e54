import { existsSync, readdirSync } from 'node:fs';
import path from 'node:path';
import { stampMatches, writeStamp } from '../run/settings-stamp.js';
import type { RunContext, Step } from '../run/step.js';
import { sha256File } from '../util/sha256.js';
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
    return (
      ctx.recipe.eval.splits.every((s) => existsSync(path.join(ctx.runDir, 'score', `${s}.json`))) &&
      stampMatches(scoreStamp(ctx), await scoreSettings(ctx))
    );
  },
  async run(ctx) {
    for (const split of ctx.recipe.eval.splits) {
      const s = await scoreRun(ctx.runDir, split);
      for (const line of formatScore(s.label, s.report)) process.stderr.write(`${line}\n`);
      ctx.log.info({ split, macro_f1: s.report.overall.macro_f1, accuracy: s.report.overall.accuracy }, 'scored');
    }
    writeStamp(scoreStamp(ctx), await scoreSettings(ctx));
    await writeModelCard(ctx.runDir);
  },
};

const scoreStamp = (ctx: RunContext) => path.join(ctx.runDir, 'score', 'settings.json');

/** What the scores depend on besides the training: the bootstrap count and the predictions (by content). */
async function scoreSettings(ctx: RunContext): Promise<unknown> {
  const dir = path.join(ctx.runDir, 'predictions');
  const files = existsSync(dir) ? readdirSync(dir).filter((f) => f.endsWith('.jsonl')).sort() : [];
  const predictions: Record<string, string> = {};
  for (const f of files) predictions[f] = await sha256File(path.join(dir, f));
  return { bootstrap: ctx.recipe.eval.bootstrap, predictions };
}
