import { existsSync, readFileSync } from 'node:fs';
import path from 'node:path';
import { runTrainer } from '../worker/trainer-process.js';
import { stampMatches, writeStamp } from './settings-stamp.js';
import { missingModules, TRAINER_INSTALL, trainerPython } from './python-env.js';
import type { RunContext, Step } from './step.js';
import { predictArgs, predictionsFile, writeTrainerConfig } from './trainer-config.js';

/** Python modules the trainer needs for this recipe's model (the bsft-toy test model needs no transformers). */
function trainerModules(ctx: RunContext): string[] {
  const base = ['bsft_trainer', 'torch', 'numpy'];
  const model = ctx.recipe.model.name_or_path;
  try {
    const config = JSON.parse(readFileSync(path.join(model, 'config.json'), 'utf8')) as { model_type?: string };
    if (config.model_type === 'bsft-toy') return base;
  } catch {
    // A Hub id or an unreadable folder: the real model path.
  }
  return [...base, 'transformers', 'peft', 'safetensors'];
}

async function trainerUnavailable(ctx: RunContext): Promise<string | undefined> {
  const missing = await missingModules(trainerModules(ctx));
  if (missing.length === 0) return undefined;
  return `the trainer's Python packages are missing for ${trainerPython()}: ${missing.join(', ')}.\n` +
    `Install them with:\n  ${TRAINER_INSTALL}\n(or set BSFT_PYTHON to a Python that has them), then run the same command again.`;
}

const LOCAL_LEASE = { ms: 30_000, holds: async () => true };

/** Writes train.json and runs `python -m bsft_trainer <command>`, logging its events. */
async function runTrainerStep(ctx: RunContext, command: 'train' | 'predict', args: string[] = []): Promise<void> {
  const configPath = writeTrainerConfig(ctx.recipe, ctx.runDir);
  const res = await runTrainer({
    command,
    config: configPath,
    cwd: ctx.runDir,
    args,
    signal: ctx.signal,
    kill: ctx.kill,
    graceMs: ctx.recipe.train.preempt_grace_s * 1000,
    // No other process can take this run: the lease only ends the trainer when bsft run itself is gone.
    lease: LOCAL_LEASE,
    onEvent: (e) => ctx.log.info(e, `trainer ${e.event}`),
    onLog: (line) => ctx.log.debug({ trainer: line }),
  });
  if (res.outcome !== 'done') {
    const why = res.error?.message ?? res.stderrTail.slice(-5).join('\n');
    throw new Error(`trainer ${command} ended ${res.outcome} (exit ${res.exitCode ?? res.signal}): ${why}`);
  }
}

export const trainStep: Step = {
  name: 'train',
  summary: 'fine-tune the model on the train split (python -m bsft_trainer train)',
  unavailable: trainerUnavailable,
  async done(ctx) {
    return existsSync(path.join(ctx.runDir, 'final', 'COMPLETE'));
  },
  run: (ctx) => runTrainerStep(ctx, 'train'),
};

/** The eval settings predictions depend on: new ones make predict run again for the same training. */
const predictSettings = (ctx: RunContext) => ({ max_new_tokens: ctx.recipe.eval.max_new_tokens });
const predictStamp = (ctx: RunContext) => path.join(ctx.runDir, 'predictions', 'settings.json');

export const predictStep: Step = {
  name: 'predict',
  summary: 'generate predictions on the eval splits (python -m bsft_trainer predict)',
  unavailable: trainerUnavailable,
  async done(ctx) {
    return (
      stampMatches(predictStamp(ctx), predictSettings(ctx)) &&
      predictArgs(ctx.recipe).every((args) => ctx.recipe.eval.splits.every((s) => existsSync(predictionsFile(ctx.runDir, s, args))))
    );
  },
  async run(ctx) {
    for (const args of predictArgs(ctx.recipe)) await runTrainerStep(ctx, 'predict', args);
    writeStamp(predictStamp(ctx), predictSettings(ctx));
  },
};
