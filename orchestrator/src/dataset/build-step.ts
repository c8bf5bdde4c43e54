import type { Step } from '../run/step.js';

export const buildStep: Step = {
  name: 'build',
  summary: 'build the behavior-token dataset',
  async unavailable() {
    return 'the dataset builder is not part of this version of bsft yet';
  },
  async done() {
    return false;
  },
  async run() {
    throw new Error('unreachable: the build step is unavailable');
  },
};
