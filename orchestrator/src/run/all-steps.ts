import { buildStep } from '../dataset/build-step.js';
import { judgeStep } from '../judge/judge-step.js';
import { scoreStep } from '../score/score-step.js';
import type { Step } from './step.js';
import { predictStep, trainStep } from './steps.js';

/** The steps of a run, in order: build -> train -> predict -> judge -> score. */
export const STEPS: Step[] = [buildStep, trainStep, predictStep, judgeStep, scoreStep];
