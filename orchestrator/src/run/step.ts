import { BsftError } from '../errors.js';
import type { Logger } from '../log.js';
import type { ResolvedRecipe } from '../recipe/resolve.js';
import type { RunHost, StoreFolder } from './host.js';

export type StepName = 'build' | 'train' | 'predict' | 'judge' | 'score';

export interface RunContext {
  recipe: ResolvedRecipe;
  /** runs/<run-id>/ */
  runDir: string;
  log: Logger;
  /** Aborted to stop gracefully: the trainer finishes its step and checkpoints (up to preempt_grace_s). */
  signal: AbortSignal;
  /** Aborted to stop at once: the trainer is killed (training since its last checkpoint is lost). */
  kill?: AbortSignal;
  /** Where the steps execute: this process (`bsft run`) or a queue worker. */
  host: RunHost;
}

/**
 * One step of a run. `bsft run` executes the steps in order in-process; a queue worker executes the same steps
 * inside BullMQ jobs (build job: build; train job: train, predict, judge; score job: score), both through runSteps.
 */
export interface Step {
  name: StepName;
  /** What the step does, as the log says when it starts (it may depend on the recipe: predict's engine). */
  summary: string | ((recipe: RunContext['recipe']) => string);
  /** Store folders the step reads (pulled first where this machine lacks them) and writes (pushed after it). */
  inputs: StoreFolder[];
  outputs: StoreFolder[];
  /** Why this step cannot run on this machine, with what to install or do; undefined when it can run. */
  unavailable(ctx: RunContext): Promise<string | undefined>;
  /** True when a previous `bsft run` of the same run id completed this step (it is then skipped). */
  done(ctx: RunContext): Promise<boolean>;
  run(ctx: RunContext): Promise<void>;
}

/** A step that cannot run here; the message says what is missing and how to get it. Exit code 1. */
export class StepUnavailableError extends BsftError {

  constructor(
    readonly step: StepName,
    readonly reason: string,
  ) {
    super(`stopped before step "${step}": ${reason}`);
  }
}
