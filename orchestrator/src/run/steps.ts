import { existsSync } from 'node:fs';
import path from 'node:path';
import { predictViaEndpoint } from '../predict/endpoint-predict.js';
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
    return existsSync(path.join(ctx.runDir, 'final', 'COMPLETE'));
  },
  // Several GPUs: the trainer starts one rank per GPU with torchrun (trainer-python launch.py).
  run: (ctx) => runTrainerStep(ctx, 'train', ctx.recipe.resources.gpus > 1 ? ['--nproc-per-node', String(ctx.recipe.resources.gpus)] : []),
};

/** The eval settings predictions depend on: new ones make predict run again for the same training. */
const predictSettings = (ctx: RunContext) => ({ max_new_tokens: ctx.recipe.eval.max_new_tokens });
const predictStamp = (ctx: RunContext) => path.join(ctx.runDir, 'predictions', 'settings.json');

export const predictStep: Step = {
  name: 'predict',
  summary: 'generate predictions on the eval splits (python -m bsft_trainer predict)',
  inputs: ['dataset', 'final'],
  outputs: ['predictions'],
  // A serving engine (eval.engine: openai) needs no trainer here: this process asks the endpoint.
  unavailable: async (ctx) => (ctx.recipe.eval.engine === 'openai' ? undefined : ctx.host.trainerUnavailable(ctx.recipe)),
  async done(ctx) {
    return (
      stampMatches(predictStamp(ctx), predictSettings(ctx)) &&
      predictArgs(ctx.recipe).every((args) => ctx.recipe.eval.splits.every((s) => existsSync(predictionsFile(ctx.runDir, s, args))))
    );
  },
  async run(ctx) {
    for (const args of predictArgs(ctx.recipe)) {
      if (ctx.recipe.eval.engine !== 'openai') await runTrainerStep(ctx, 'predict', args);
      else {
        for (const split of ctx.recipe.eval.splits) {
          const r = await predictViaEndpoint(ctx.recipe, ctx.runDir, split, args[1] ?? null, ctx.log, ctx.signal);
          ctx.log.info({ file: path.relative(ctx.runDir, r.file), tasks: r.tasks, tokens: r.generatedTokens, tokens_per_s: Math.round(r.generatedTokens / Math.max(r.seconds, 1e-3)) }, 'predictions from the endpoint');
        }
      }
    }
    writeStamp(predictStamp(ctx), predictSettings(ctx));
  },
};
