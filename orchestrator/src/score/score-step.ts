import { existsSync } from 'node:fs';
import path from 'node:path';
import { jsonlHashes, stampMatches, writeStamp } from '../run/settings-stamp.js';
import type { RunContext, Step } from '../run/step.js';
import { writeModelCard } from '../store/model-card.js';

export const scoreStep: Step = {
  name: 'score',
  summary: 'score the predictions (BehaviorBench metrics with bootstrap intervals)',
  inputs: ['dataset', 'predictions', 'judge'],
  outputs: ['score'],
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
    const scores = await ctx.host.scoreSplits(ctx.runDir, ctx.recipe.eval.splits);
    for (const [split, s] of Object.entries(scores)) await ctx.host.note({ event: 'score', split, ...s });
    writeStamp(scoreStamp(ctx), await scoreSettings(ctx));
    // The model card goes into final/ (and its COMPLETE) wherever final/ is on this machine.
    await writeModelCard(ctx.runDir);
  },
};

const scoreStamp = (ctx: RunContext) => path.join(ctx.runDir, 'score', 'settings.json');

/** What the scores depend on besides the training: the bootstrap count, the predictions and the judge's labels (by content). */
async function scoreSettings(ctx: RunContext): Promise<unknown> {
  return {
    bootstrap: ctx.recipe.eval.bootstrap,
    predictions: await jsonlHashes(path.join(ctx.runDir, 'predictions')),
    judge: await jsonlHashes(path.join(ctx.runDir, 'judge'), ['cache.jsonl']),
  };
}
