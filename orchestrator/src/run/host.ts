import type { ResolvedRecipe } from '../recipe/resolve.js';
import type { BuildSummary, ScoreSummary } from './stage-summary.js';
import type { TrainerResult } from '../worker/trainer-process.js';
import type { TrainerCommand } from '../worker/trainer-events.js';
import type { RunContext } from './step.js';

/** Why a host stopped a trainer itself (a queue worker: cancel, shutdown, silence, a lost lock). */
/** Why a host stopped a trainer: a worker's shutdown, bsft cancel, silence, a lost job lock, or (a run across machines)
 * a machine of its gang lost. */
export type StopReason = 'shutdown' | 'cancel' | 'silent' | 'lost-lock' | 'node-lost';

export interface TrainerRun extends TrainerResult {
  stopReason?: StopReason;
  /** With stopReason 'silent': how long the trainer had been silent. */
  silenceMs?: number;
  /** With a lost lock or lease: why, and what happens next (the job's attempts: lostLockMessage). */
  lostLock?: string;
  /** With stopReason 'node-lost': which machine of the run's gang was lost, or what broke the gang. */
  nodeLost?: string;
}

/** Folders of a run in its store that steps read and write: `dataset`, `meta`, `checkpoints`, `final`, `predictions`, `score`. */
export type StoreFolder = 'dataset' | 'meta' | 'checkpoints' | 'final' | 'predictions' | 'judge' | 'score';

/**
 * Where the steps of a run execute: `bsft run` in this process (LocalHost), or a queue worker inside BullMQ jobs
 * (QueueHost). The steps are the same objects; a host decides how the trainer is started (lease, fencing epoch,
 * GPUs, what its events become), where CPU-heavy work runs, and how folders move to and from the run's store.
 */
export interface RunHost {
  /** Why the trainer cannot run here (missing Python packages, with what to install); undefined when it can. */
  trainerUnavailable(recipe: ResolvedRecipe): Promise<string | undefined>;
  /** How many GPUs this host gave the run's trainer (a worker's `--gpus` pool; an elastic run gets what was free);
   * undefined when it gives none of its own (the trainer uses resources.gpus). */
  trainerGpus?(): number | undefined;
  /** Runs `python -m bsft_trainer <command> --config <config> <args>` and reports how it ended. */
  trainer(ctx: RunContext, command: TrainerCommand, config: string, args: string[]): Promise<TrainerRun>;
  buildDataset(recipe: ResolvedRecipe, outDir: string): Promise<BuildSummary>;
  scoreSplits(runDir: string, splits: string[]): Promise<ScoreSummary>;
  /** Brings a step's inputs from the store when they are not here. */
  pull(ctx: RunContext, folders: StoreFolder[]): Promise<void>;
  /** Sends a step's outputs to the store. */
  push(ctx: RunContext, folders: StoreFolder[]): Promise<void>;
  /** A record of what a step did (dataset built, a split scored): logged, or written to the job's log. */
  note(record: Record<string, unknown> & { event: string }): Promise<void>;
}
