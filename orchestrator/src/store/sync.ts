import { StoreIntegrityError } from '../errors.js';
import { existsSync, readdirSync } from 'node:fs';
import path from 'node:path';
import type { Logger } from '../log.js';
import type { ResolvedRecipe } from '../recipe/resolve.js';
import { writeMeta } from './meta.js';
import { verifyFolder } from './complete.js';
import { type Store } from './store.js';
import { checkpointDirName, checkpointStep } from './checkpoint-name.js';


/** Steps of the local checkpoints whose COMPLETE verifies, newest first. */
export async function localCheckpoints(checkpointsDir: string): Promise<number[]> {
  if (!existsSync(checkpointsDir)) return [];
  const steps = readdirSync(checkpointsDir)
    .map(checkpointStep)
    .filter((s): s is number => s !== undefined)
    .sort((a, b) => b - a);
  const out: number[] = [];
  for (const s of steps) if (!(await verifyFolder(path.join(checkpointsDir, checkpointDirName(s))))) out.push(s);
  return out;
}

/**
 * Pulls the newest complete checkpoint of a run from the store into `checkpointsDir` (or exactly into `target`); a
 * checkpoint whose bytes do not match its COMPLETE is skipped for the one before. Returns the step pulled, or undefined.
 */
export async function pullNewestCheckpoint(
  store: Store,
  runId: string,
  checkpointsDir: string,
  log: Logger,
  target?: string,
): Promise<number | undefined> {
  for (const { step, rel } of await store.checkpoints(runId)) {
    try {
      await store.pull(runId, rel, target ?? path.join(checkpointsDir, path.basename(rel)));
      log.info({ run_id: runId, step, store: store.describe() }, 'pulled checkpoint from the store');
      return step;
    } catch (e) {
      if (!(e instanceof StoreIntegrityError)) throw e;
      log.warn({ run_id: runId, step, err: e.message }, 'remote checkpoint failed its integrity check; trying the previous one');
    }
  }
  return undefined;
}

/** Deletes remote checkpoints beyond the newest `keep`. */
export async function pruneRemote(store: Store, runId: string, keep: number): Promise<void> {
  for (const { rel } of (await store.checkpoints(runId)).slice(keep)) await store.remove(runId, rel);
}

/**
 * Pushes in the background, one at a time, so that training never waits for the network. A failed push is logged
 * and the next checkpoint is pushed anyway; `drain` waits for everything queued and reports the last failure.
 */
export class BackgroundPusher {
  private chain: Promise<void> = Promise.resolve();
  private lastError: Error | undefined;

  constructor(private readonly log: Logger) {}

  enqueue(what: string, fn: () => Promise<void>): void {
    this.chain = this.chain.then(async () => {
      try {
        await fn();
        this.lastError = undefined;
      } catch (e) {
        this.lastError = e as Error;
        this.log.warn({ push: what, err: (e as Error).message }, 'push to the store failed; the next checkpoint will be pushed anyway');
      }
    });
  }

  async drain(): Promise<void> {
    await this.chain;
    if (this.lastError) throw this.lastError;
  }
}

/**
 * Brings the folders a step reads from a hub store when this machine lacks them: `dataset`, `final` and
 * `predictions` when they have no COMPLETE here, and the newest complete checkpoint when there is none here. A local
 * store's folders are the run folder itself: nothing to do. Returns what was pulled (for the run's log).
 */
export async function pullFolders(store: Store, runId: string, runDir: string, folders: string[], log: Logger): Promise<Record<string, unknown>[]> {
  if (store.kind !== 'hub') return [];
  const pulled: Record<string, unknown>[] = [];
  for (const rel of folders) {
    if (rel === 'checkpoints') {
      const checkpoints = path.join(runDir, 'checkpoints');
      if ((await localCheckpoints(checkpoints)).length > 0) continue;
      const step = await pullNewestCheckpoint(store, runId, checkpoints, log);
      if (step !== undefined) pulled.push({ what: 'checkpoint', step });
      continue;
    }
    if (existsSync(path.join(runDir, rel, 'COMPLETE'))) continue;
    if (!(await store.has(runId, rel))) {
      if (rel === 'dataset') throw new Error(`dataset of ${runId} is neither in ${runDir} nor in the ${store.describe()}`);
      continue;
    }
    await store.pull(runId, rel, path.join(runDir, rel));
    pulled.push({ what: rel });
  }
  return pulled;
}

/** Sends a step's folders to a hub store (`meta`: the run's resolved recipe, written first). A local store has them. */
export async function pushFolders(store: Store, recipe: ResolvedRecipe, runDir: string, folders: string[]): Promise<string[]> {
  if (store.kind !== 'hub') return [];
  const pushed: string[] = [];
  for (const rel of folders) {
    const dir = rel === 'meta' ? writeMeta(runDir, recipe) : path.join(runDir, rel);
    if (!existsSync(dir)) continue;
    await store.push(recipe.run_id, dir, rel);
    pushed.push(rel);
  }
  return pushed;
}
