import { datasetDir } from '../run/trainer-config.js';
import type { Step } from '../run/step.js';
import { buildDataset } from './build.js';

export const buildStep: Step = {
  name: 'build',
  summary: 'build the behavior-token dataset (render, tokenize, split, write shards)',
  async unavailable() {
    return undefined;
  },
  async done() {
    // buildDataset itself skips the work when the dataset hash matches; it is cheap to ask it.
    return false;
  },
  async run(ctx) {
    await buildDataset(ctx.recipe, datasetDir(ctx.runDir), ctx.log);
  },
};

