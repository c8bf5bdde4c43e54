import { datasetDir } from '../run/trainer-config.js';
import type { Step } from '../run/step.js';
import { buildDataset, datasetUpToDate } from './build.js';

export const buildStep: Step = {
  name: 'build',
  summary: 'build the behavior-token dataset (render, tokenize, split, write shards)',
  async unavailable() {
    return undefined;
  },
  async done(ctx) {
    return datasetUpToDate(ctx.recipe, datasetDir(ctx.runDir));
  },
  async run(ctx) {
    await buildDataset(ctx.recipe, datasetDir(ctx.runDir), ctx.log);
  },
};

