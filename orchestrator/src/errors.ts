/**
 * The errors bsft reports to a user, one tiny class each (as BullMQ's src/classes/errors). Every one carries the
 * exit code the CLI returns for it: 2 for input the user must fix (a queue never retries those), 1 for the rest.
 * Errors with more to say (RecipeError, DataError, JobDataError, StepUnavailableError) extend these in their own
 * files.
 */
export class BsftError extends Error {
  readonly exitCode: number = 1;

  constructor(message: string) {
    super(message);
    this.name = new.target.name;
  }
}

/** Input the user must fix (a recipe, task data, a command line, a run folder): exit 2, never retried. */
export class InputError extends BsftError {
  override readonly exitCode: number = 2;
}

/** A command line that does not fit the command; the CLI prints its usage. */
export class UsageError extends InputError {}

/** A run folder or id that does not exist. */
export class RunNotFoundError extends InputError {}

/** A dataset folder without a (readable) manifest. */
export class DatasetNotFoundError extends InputError {}

/** Tokenizer files that cannot give exact Qwen tokenization (missing, unreadable, a token that collides). */
export class TokenizerError extends InputError {}

/** Predictions or gold data that cannot be scored. */
export class ScoreInputError extends InputError {}

/** A chat template that cannot render a conversation. */
export class RenderError extends BsftError {}

/** Redis cannot be reached (its password never in the message). */
export class RedisUnavailableError extends BsftError {}

/** Bytes from a store that do not match their COMPLETE: the previous checkpoint is tried. */
export class StoreIntegrityError extends BsftError {}

/** The store refuses us (bad token, no rights, repo gone): retrying will not help. */
export class StoreAccessError extends BsftError {}

/** The child process of a dataset build or a scoring failed; its exit code is the task's (2: bad input). */
export class OffloadError extends BsftError {
  override readonly exitCode: number;

  constructor(message: string, exitCode = 1) {
    super(message);
    this.exitCode = exitCode;
  }
}

/** The trainer refused its input (exit 2: a config or data error); never retried. */
export class TrainerInputError extends InputError {}

/** The trainer failed in a way another attempt may not (a crash, a lost lease, silence); retried by the queue. */
export class TrainerFailedError extends BsftError {}

/** The trainer stopped after a checkpoint (preempted, or its worker is shutting down): the run resumes from there. */
export class PreemptedError extends BsftError {
  /** 'node lost': a machine of a run across machines was lost; `detail` names it (the others stopped at once). */
  constructor(readonly reason: 'preempted' | 'worker shutdown' | 'node lost', detail?: string) {
    super(reason === 'preempted' ? 'the trainer was preempted after a checkpoint'
      : reason === 'node lost' ? `${detail ?? 'a machine of the run was lost'}: every machine stopped; the run resumes from its newest complete checkpoint`
        : 'the worker is shutting down; the trainer stopped after a checkpoint');
  }
}

/**
 * This machine's disk is full (the trainer's exit 74, or a build, a pull, a copy that hit ENOSPC): nothing
 * half-written stays. Not the run's fault: a queue puts the job back without using an attempt, for another worker.
 */
export class DiskFullError extends BsftError {}

/** `bsft cancel` stopped the run. */
export class CancelledError extends BsftError {
  constructor() {
    super('cancelled by bsft cancel');
  }
}

/** The judge endpoint refused the key (401/403), or has no such model: fixing the setup, not retrying, helps. */
export class JudgeSetupError extends InputError {}

/** The judge endpoint is unreachable, rate-limited or failing (after the retries): the step may succeed later. */
export class JudgeUnavailableError extends BsftError {}
