import type { Step } from '../run/step.js';

export const scoreStep: Step = {
  name: 'score',
  summary: 'score predictions against BehaviorBench metrics',
  async unavailable() {
    return 'BehaviorBench scoring is not part of this version of bsft yet';
  },
  async done() {
    return false;
  },
  async run() {
    throw new Error('unreachable: the score step is unavailable');
  },
};
