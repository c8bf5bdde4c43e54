import { existsSync } from 'node:fs';
import path from 'node:path';
import { sha256File } from '../util/sha256.js';
import { jsonlHashes, stampMatches, writeStamp } from '../run/settings-stamp.js';
import type { RunContext, Step } from '../run/step.js';
import { ModelJudge } from './model-judge.js';
import { OpenAIJudge } from './openai-judge.js';
import { runJudge, type Judge } from './run-judge.js';

/** The recipe's judge: an endpoint (`openai`) or a local model run by the trainer (`model`). */
export function judgeOf(ctx: RunContext): Judge {
  const settings = ctx.recipe.judge!;
  const behaviors = Object.keys(ctx.recipe.data.behaviors);
  return settings.kind === 'openai' ? new OpenAIJudge(settings, behaviors) : new ModelJudge(ctx, settings, behaviors);
}

/**
 * The judge step (after predict, before score): labels the replies no token labels, and the gold replies, with the
 * recipe's judge. A run without a `judge` section has nothing to do here (its step is skipped).
 */
export const judgeStep: Step = {
  name: 'judge',
  summary: 'label replies without a behavior token with the recipe\'s judge (and the gold replies, for its validity)',
  inputs: ['dataset', 'predictions'],
  outputs: ['judge'],
  async unavailable() {
    return undefined;
  },
  async done(ctx) {
    return !ctx.recipe.judge || stampMatches(judgeStamp(ctx), await judgeSettings(ctx));
  },
  async run(ctx) {
    const summary = await runJudge(ctx.recipe, ctx.runDir, ctx.log, judgeOf(ctx));
    await ctx.host.note({ event: 'judge', model: summary.model, requested: summary.requested, cached: summary.cached, tokens: summary.tokens,
      unparseable: Object.values(summary.files).reduce((n, f) => n + f.unparseable, 0) });
    writeStamp(judgeStamp(ctx), await judgeSettings(ctx));
  },
};

const judgeStamp = (ctx: RunContext) => path.join(ctx.runDir, 'judge', 'settings.json');

/**
 * What the labels depend on: the judge's settings that change an answer, the predictions and the eval splits'
 * conversations with their gold replies (by content: a loose file judged against other tasks is judged again).
 */
async function judgeSettings(ctx: RunContext): Promise<unknown> {
  const { kind, model, prompt_version, also_token_runs } = ctx.recipe.judge!;
  const tasks: Record<string, string | null> = {};
  for (const split of ctx.recipe.eval.splits) {
    const file = path.join(ctx.runDir, 'dataset', `${split}.messages.jsonl`);
    tasks[split] = existsSync(file) ? await sha256File(file) : null;
  }
  return { kind, model, prompt_version, also_token_runs, splits: ctx.recipe.eval.splits, tasks, predictions: await jsonlHashes(path.join(ctx.runDir, 'predictions')) };
}
