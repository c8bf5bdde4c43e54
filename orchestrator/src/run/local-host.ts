import { readFileSync } from 'node:fs';
import path from 'node:path';
import { buildDataset } from '../dataset/build.js';
import type { Logger } from '../log.js';
import type { ResolvedRecipe } from '../recipe/resolve.js';
import { formatScore } from '../score/format.js';
import type { ScoreReport } from '../score/metrics.js';
import { runLabel, runRecipe, scoreRun } from '../score/run-scores.js';
import { openStore, type Store } from '../store/store.js';
import { pullFolders, pushFolders } from '../store/sync.js';
import type { BuildSummary, ScoreSummary } from '../worker/offload.js';
import { runTrainer } from '../worker/trainer-process.js';
import type { RunHost, StoreFolder, TrainerRun } from './host.js';
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
    return runTrainer({
      command,
      config,
      cwd: ctx.runDir,
      args,
      signal: ctx.signal,
      ...(ctx.kill ? { kill: ctx.kill } : {}),
      graceMs: ctx.recipe.train.preempt_grace_s * 1000,
      lease: LOCAL_LEASE,
      epoch: this.epoch,
      onEvent: (e) => this.log.info(e, `trainer ${e.event}`),
      onLog: (line) => this.log.debug({ trainer: line }),
    });
  }

  async buildDataset(recipe: ResolvedRecipe, outDir: string): Promise<BuildSummary> {
    const res = await buildDataset(recipe, outDir, this.log);
    const documents = Object.fromEntries(Object.entries(res.manifest.documents).map(([k, v]) => [k, v.length]));
    return { built: res.built, dataset_hash: res.manifest.dataset_hash, documents };
  }

  async scoreSplits(runDir: string, splits: string[]): Promise<ScoreSummary> {
    const out: ScoreSummary = {};
    for (const split of splits) {
      const s = await scoreRun(runDir, split);
      out[split] = { macro_f1: s.report.overall.macro_f1, accuracy: s.report.overall.accuracy, file: path.join(runDir, 'score', `${split}.json`) };
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
    if (record.event === 'score' && typeof record.file === 'string') {
      const report = JSON.parse(readFileSync(record.file, 'utf8')) as ScoreReport;
      const runDir = path.dirname(path.dirname(record.file));
      for (const line of formatScore(runLabel(runRecipe(runDir)), report)) process.stderr.write(`${line}\n`);
      this.log.info({ split: record.split, macro_f1: record.macro_f1, accuracy: record.accuracy }, 'scored');
      return;
    }
    this.log.info(record, record.event);
  }
}
