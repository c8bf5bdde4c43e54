import { readFileSync } from 'node:fs';
import path from 'node:path';
import { buildDataset } from '../dataset/build.js';
import type { Logger } from '../log.js';
import type { ResolvedRecipe } from '../recipe/resolve.js';
import { formatScore } from '../score/format.js';
import { scoreRun } from '../score/run-scores.js';
import { openStore, type Store } from '../store/store.js';
import { pullFolders, pushFolders } from '../store/sync.js';
import type { TrainerEvent } from '../worker/trainer-events.js';
import { runTrainer } from '../worker/trainer-process.js';
import type { RunHost, StoreFolder, TrainerRun } from './host.js';
import { buildSummary, scoreSummaryOf, type BuildSummary, type ScoreSummary } from './stage-summary.js';
import { ProgressLine } from '../util/progress.js';
import { trainerUnavailable } from './python-env.js';
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

  constructor(private readonly log: Logger) {}

  trainerUnavailable(recipe: ResolvedRecipe): Promise<string | undefined> {
    return trainerUnavailable(recipe);
  }

  async trainer(ctx: RunContext, command: 'train' | 'predict', config: string, args: string[]): Promise<TrainerRun> {
    this.epoch ??= nextEpoch(ctx.runDir);
    const { onEvent, bar } = this.showEvents(command, args);
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
    bar.finish(run.outcome === 'done' ? '' : `stopped (${run.outcome})`); // a trainer that ended without `done`
    return run;
  }

  /**
   * Trainer events on a terminal: one progress line per stage (bar, rate, ETA, loss, tok/s) with checkpoints and
   * evals above it, the events themselves at debug level. Elsewhere: each event as a log record, as before, plus
   * sparse progress records with the rate and the ETA.
   */
  private showEvents(command: 'train' | 'predict', args: string[]): { onEvent: (e: TrainerEvent) => void; bar: ProgressLine } {
    const tty = process.stderr.isTTY === true;
    const label = command === 'train' ? 'train' : args[0] === '--force' ? `predict (forced ${args[1]})` : 'predict';
    const bar = new ProgressLine(label, command === 'train' ? 'step' : 'task', (text) => process.stderr.write(text), {
      tty,
      columns: process.stderr.columns,
      record: (r) => this.log.info(r, 'progress'),
    });
    const onEvent = (e: TrainerEvent) => {
      if (tty) this.log.debug(e, `trainer ${e.event}`);
      else this.log.info(e, `trainer ${e.event}`);
      switch (e.event) {
        case 'start':
          bar.start(e.total_steps, e.resumed_from_step);
          if (e.resumed_from_step > 0) bar.note(`resumed from the checkpoint of step ${e.resumed_from_step}`);
          break;
        case 'step':
          bar.update(e.step, { loss: e.loss, tokens_per_s: e.tokens_per_s });
          break;
        case 'progress': // the first batch's event starts the line: its rate would include loading the model
          if (!bar.isStarted) bar.start(e.total, e.done);
          else bar.update(e.done);
          break;
        case 'eval':
          bar.note(`eval at step ${e.step}: val loss ${e.loss.toFixed(4)}`);
          break;
        case 'checkpoint':
          bar.note(`checkpoint at step ${e.step}: ${e.path}`);
          break;
        case 'done':
          bar.finish();
          break;
        case 'error':
          bar.finish(`${e.kind} error`);
          break;
      }
    };
    return { onEvent, bar };
  }

  async buildDataset(recipe: ResolvedRecipe, outDir: string): Promise<BuildSummary> {
    return buildSummary(await buildDataset(recipe, outDir, this.log));
  }

  /** Scores in this process and prints each split's table to the terminal. */
  async scoreSplits(runDir: string, splits: string[]): Promise<ScoreSummary> {
    const out: ScoreSummary = {};
    for (const split of splits) {
      const s = await scoreRun(runDir, split);
      for (const line of formatScore(s.label, s.report)) process.stderr.write(`${line}\n`);
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
