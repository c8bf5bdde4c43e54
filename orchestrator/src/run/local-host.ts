import { readFileSync } from 'node:fs';
import path from 'node:path';
import { buildDataset } from '../dataset/build.js';
import type { Logger } from '../log.js';
import type { ResolvedRecipe } from '../recipe/resolve.js';
import { formatScore } from '../score/format.js';
import { scoreRun } from '../score/run-scores.js';
import { openStore, type Store } from '../store/store.js';
import { pullFolders, pushFolders } from '../store/sync.js';
import type { TrainerCommand } from '../worker/trainer-events.js';
import { runTrainer } from '../worker/trainer-process.js';
import type { RunHost, StoreFolder, TrainerRun } from './host.js';
import { buildSummary, scoreSummaryOf, type BuildSummary, type ScoreSummary } from './stage-summary.js';
import { trainerUnavailable } from './python-env.js';
import { trainerProgress } from './trainer-progress.js';
import type { RunContext } from './step.js';

/** No other process can take a local run: the lease only ends the trainer when bsft run itself is gone. */
const LOCAL_LEASE = { ms: 30_000, holds: async () => true };

/** The fencing epoch of this `bsft run`: one more than the run folder's (fence.py), for every trainer it starts. */
function nextEpoch(runDir: string): number {
  try {
    return Number(readFileSync(path.join(runDir, 'EPOCH'), 'utf8').trim()) + 1 || 1;
  } catch {
    return 1;
  }
}

/** `bsft run`: the steps in this process; trainer events go to the log, scores to the terminal. */
export class LocalHost implements RunHost {
  private store: Promise<Store> | undefined;
  private epoch: number | undefined;

  /** `out`: command output (the score tables), stdout by default; progress and logs go to stderr. */
  constructor(
    private readonly log: Logger,
    private readonly out: (line: string) => void = (line) => process.stdout.write(`${line}\n`),
  ) {}

  trainerUnavailable(recipe: ResolvedRecipe): Promise<string | undefined> {
    return trainerUnavailable(recipe);
  }

  async trainer(ctx: RunContext, command: TrainerCommand, config: string, args: string[]): Promise<TrainerRun> {
    this.epoch ??= nextEpoch(ctx.runDir);
    const { onEvent, bar } = trainerProgress(command, args, { tty: process.stderr.isTTY === true, columns: process.stderr.columns, write: (t) => process.stderr.write(t), log: this.log });
    const run = await runTrainer({
      command,
      config,
      cwd: ctx.runDir,
      args,
      signal: ctx.signal,
      ...(ctx.kill ? { kill: ctx.kill } : {}),
      graceMs: ctx.recipe.train.preempt_grace_s * 1000,
      lease: LOCAL_LEASE,
      epoch: this.epoch,
      onEvent,
      onLog: (line) => this.log.debug({ trainer: line }),
    });
    // A trainer that ended without `done`: say why in the user's words (Ctrl-C twice is the user's stop, not a failure).
    const why = ctx.kill?.aborted ? 'at once, as asked' : ctx.signal.aborted ? 'as asked' : run.outcome;
    bar.finish(run.outcome === 'done' ? '' : `stopped (${why})`);
    return run;
  }

  async buildDataset(recipe: ResolvedRecipe, outDir: string): Promise<BuildSummary> {
    return buildSummary(await buildDataset(recipe, outDir, this.log));
  }

  /** Scores in this process and prints each split's table as command output. */
  async scoreSplits(runDir: string, splits: string[]): Promise<ScoreSummary> {
    const out: ScoreSummary = {};
    for (const split of splits) {
      const s = await scoreRun(runDir, split);
      for (const line of formatScore(s.label, s.report)) this.out(line);
      out[split] = scoreSummaryOf(runDir, split, s);
    }
    return out;
  }

  private openStore(recipe: ResolvedRecipe): Promise<Store> {
    this.store ??= openStore(recipe);
    return this.store;
  }

  async pull(ctx: RunContext, folders: StoreFolder[]): Promise<void> {
    const store = await this.openStore(ctx.recipe);
    for (const p of await pullFolders(store, ctx.recipe.run_id, ctx.runDir, folders, this.log)) this.log.info({ ...p, store: store.describe() }, 'pulled');
  }

  async push(ctx: RunContext, folders: StoreFolder[]): Promise<void> {
    const store = await this.openStore(ctx.recipe);
    const pushed = await pushFolders(store, ctx.recipe, ctx.runDir, folders);
    if (pushed.length) this.log.info({ pushed, store: store.describe() }, 'pushed');
  }

  async note(record: Record<string, unknown> & { event: string }): Promise<void> {
    if (record.event === 'score') this.log.info({ split: record.split, macro_f1: record.macro_f1, accuracy: record.accuracy }, 'scored');
    else this.log.info(record, record.event);
  }
}
