import { existsSync, readFileSync } from 'node:fs';
import path from 'node:path';
import { predictViaChat } from '../predict/chat-predict.js';
import { predictViaEndpoint } from '../predict/endpoint-predict.js';
import { redactUrl } from '../recipe/secrets.js';
import { stampMatches, writeStamp } from './settings-stamp.js';
import type { RunContext, Step } from './step.js';
import { checkTrainerRun } from './trainer-outcome.js';
import { predictArgs, predictionsFile, writeTrainerConfig } from './trainer-config.js';

/** Writes train.json and runs `python -m bsft_trainer <command>` on the run's host; one outcome mapping. */
async function runTrainerStep(ctx: RunContext, command: 'train' | 'predict', args: string[] = []): Promise<void> {
  const config = writeTrainerConfig(ctx.recipe, ctx.runDir);
  checkTrainerRun(command, await ctx.host.trainer(ctx, command, config, args));
}

export const trainStep: Step = {
  name: 'train',
  summary: 'fine-tune the model on the train split (python -m bsft_trainer train)',
  inputs: ['dataset', 'checkpoints'],
  outputs: ['final', 'meta'], // meta: the recipe and, now, the metrics history
  unavailable: (ctx) => ctx.host.trainerUnavailable(ctx.recipe),
  async done(ctx) {
    // train.method none: nothing to train, the model is evaluated as it ships (its endpoint, or predict loads it).
    return ctx.recipe.train.method === 'none' || existsSync(path.join(ctx.runDir, 'final', 'COMPLETE'));
  },
  // Several GPUs: the trainer starts one rank per GPU with torchrun (trainer-python launch.py); an elastic run as many
  // as the worker gave it (each rank then takes step_batches / ranks batches a step: the same global batch).
  run: (ctx) => {
    const gpus = ctx.host.trainerGpus?.() ?? ctx.recipe.resources.gpus;
    return runTrainerStep(ctx, 'train', gpus > 1 ? ['--nproc-per-node', String(gpus)] : []);
  },
};

/**
 * The eval settings predictions depend on: new ones make predict run again for the same training. The trainer's
 * engines (static, continuous, auto) give the same greedy tokens of the same model, so a change among them keeps the
 * predictions (and says so); an endpoint's model (eval.engine openai) is another source: predictions are made again.
 */
const predictSettings = (ctx: RunContext) => {
  const e = ctx.recipe.eval;
  // An operating point changes the replies: predictions made at another one are made again (?? {}: a run recorded
  // before offsets existed).
  const offsets = Object.values(e.behavior_offsets ?? {}).some((v) => v !== 0) ? { behavior_offsets: e.behavior_offsets } : {};
  if (e.engine === 'openai-chat') return { max_new_tokens: e.max_new_tokens, reply_tag: e.reply_tag, source: { engine: 'openai-chat', base_url: redactUrl(e.endpoint!.base_url), model: e.endpoint!.model } };
  return e.engine === 'openai' ? { max_new_tokens: e.max_new_tokens, ...offsets, source: { engine: 'openai', base_url: redactUrl(e.endpoint!.base_url), model: e.endpoint!.model } }
    : { max_new_tokens: e.max_new_tokens, ...offsets };
};

/** Says so when predictions made by one of the trainer's engines are kept for another (predictions/predict.json). */
function sayKeptEngine(ctx: RunContext): void {
  const e = ctx.recipe.eval.engine;
  if (predictsViaEndpoint(ctx.recipe)) return;
  let made: string[] = [];
  try {
    made = Object.values(JSON.parse(readFileSync(path.join(ctx.runDir, 'predictions', 'predict.json'), 'utf8')) as Record<string, { engine?: string }>)
      .map((f) => f.engine ?? '').filter((x) => x && x !== e && !(e === 'auto'));
  } catch {
    return;
  }
  if (made.length) ctx.log.info({ made_with: [...new Set(made)], engine: e }, `predictions made with engine ${[...new Set(made)].join(', ')} are kept for eval.engine ${e}: the trainer's engines give the same greedy tokens (delete the run's predictions/ to make them again)`);
}
/** Predictions asked of an endpoint (eval.engine openai, openai-chat) by this process, not made by the trainer. */
export const predictsViaEndpoint = (recipe: RunContext['recipe']) => recipe.eval.engine === 'openai' || recipe.eval.engine === 'openai-chat';
const predictStamp = (ctx: RunContext) => path.join(ctx.runDir, 'predictions', 'settings.json');

export const predictStep: Step = {
  name: 'predict',
  summary: (recipe) => (predictsViaEndpoint(recipe)
    ? `generate predictions on the eval splits (eval.engine ${recipe.eval.engine}: ${redactUrl(recipe.eval.endpoint?.base_url ?? '')}, model ${recipe.eval.endpoint?.model})`
    : `generate predictions on the eval splits (python -m bsft_trainer predict, engine ${recipe.eval.engine})`),
  inputs: ['dataset', 'final'],
  outputs: ['predictions'],
  // A serving engine (eval.engine: openai, openai-chat) needs no trainer here: this process asks the endpoint.
  unavailable: async (ctx) => (predictsViaEndpoint(ctx.recipe) ? undefined : ctx.host.trainerUnavailable(ctx.recipe)),
  async done(ctx) {
    const done = stampMatches(predictStamp(ctx), predictSettings(ctx)) &&
      predictArgs(ctx.recipe).every((args) => ctx.recipe.eval.splits.every((s) => existsSync(predictionsFile(ctx.runDir, s, args))));
    if (done) sayKeptEngine(ctx);
    return done;
  },
  async run(ctx) {
    for (const args of predictArgs(ctx.recipe)) {
      if (!predictsViaEndpoint(ctx.recipe)) await runTrainerStep(ctx, 'predict', args);
      else {
        for (const split of ctx.recipe.eval.splits) {
          const r = ctx.recipe.eval.engine === 'openai-chat' ? await predictViaChat(ctx.recipe, ctx.runDir, split, ctx.log, ctx.signal)
            : await predictViaEndpoint(ctx.recipe, ctx.runDir, split, args[1] ?? null, ctx.log, ctx.signal);
          ctx.log.info({ file: path.relative(ctx.runDir, r.file), tasks: r.tasks, tokens: r.generatedTokens, tokens_per_s: Math.round(r.generatedTokens / Math.max(r.seconds, 1e-3)) }, 'predictions from the endpoint');
        }
      }
    }
    writeStamp(predictStamp(ctx), predictSettings(ctx));
  },
};
