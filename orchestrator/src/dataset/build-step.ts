import { datasetDir } from '../run/trainer-config.js';
import type { Step } from '../run/step.js';
import { datasetUpToDate } from './build.js';

export const buildStep: Step = {
  name: 'build',
  summary: 'build the behavior-token dataset (render, tokenize, split, write shards)',
  inputs: [],
  outputs: ['dataset', 'meta'],
  async unavailable() {
    return undefined;
  },
  async done(ctx) {
    return datasetUpToDate(ctx.recipe, datasetDir(ctx.runDir));
  },
  async run(ctx) {
    const res = await ctx.host.buildDataset(ctx.recipe, datasetDir(ctx.runDir));
    await ctx.host.note({ event: 'dataset', built: res.built, shared: !res.built, dataset_hash: res.dataset_hash, documents: res.documents });
  },
};
