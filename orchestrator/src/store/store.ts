import { StoreAccessError, StoreIntegrityError } from '../errors.js';
import { cpSync, existsSync, mkdirSync, readdirSync, rmSync } from 'node:fs';
import path from 'node:path';
import type { ResolvedRecipe } from '../recipe/resolve.js';
import { COMPLETE, completeForPush, readComplete, verifyFolder } from './complete.js';
import { checkpointStep } from './checkpoint-name.js';


/**
 * Contract 6: where a run's folders live beyond the machine that made them. Folder paths are relative to the run:
 * `dataset`, `checkpoints/step-000120`, `final`, `predictions`, `score`. A folder exists in a store only with its
 * COMPLETE file, which is pushed in the same commit as its files.
 */
export interface Store {
  readonly kind: 'local' | 'hub';
  describe(): string;
  push(runId: string, localDir: string, rel: string): Promise<void>;
  /** Complete checkpoints of a run, newest first. */
  checkpoints(runId: string): Promise<{ step: number; rel: string }[]>;
  has(runId: string, rel: string): Promise<boolean>;
  /** Downloads a folder, checking every sha256 of its COMPLETE; a mismatch throws StoreIntegrityError. */
  pull(runId: string, rel: string, localDir: string): Promise<void>;
  remove(runId: string, rel: string): Promise<void>;
}

/** The local store: a directory (default ./runs) holding runs/<run-id>/... . */
export class LocalStore implements Store {
  readonly kind = 'local';

  constructor(readonly root: string) {}

  describe(): string {
    return `local store ${this.root}`;
  }

  private dir(runId: string, rel: string): string {
    return path.join(this.root, runId, rel);
  }

  async push(runId: string, localDir: string, rel: string): Promise<void> {
    const target = this.dir(runId, rel);
    await completeForPush(localDir, rel);
    if (path.resolve(localDir) === path.resolve(target)) return;
    const tmp = `${target}.tmp-${process.pid}`;
    rmSync(tmp, { recursive: true, force: true });
    mkdirSync(path.dirname(tmp), { recursive: true });
    cpSync(localDir, tmp, { recursive: true, filter: (src) => path.basename(src) !== COMPLETE });
    rmSync(target, { recursive: true, force: true });
    cpSync(path.join(localDir, COMPLETE), path.join(tmp, COMPLETE));
    cpSync(tmp, target, { recursive: true });
    rmSync(tmp, { recursive: true, force: true });
  }

  async checkpoints(runId: string) {
    const dir = this.dir(runId, 'checkpoints');
    if (!existsSync(dir)) return [];
    return readdirSync(dir)
      .map((name) => ({ step: checkpointStep(name), name }))
      .filter((x): x is { step: number; name: string } => x.step !== undefined && existsSync(path.join(dir, x.name, COMPLETE)))
      .map((x) => ({ step: x.step, rel: `checkpoints/${x.name}` }))
      .sort((a, b) => b.step - a.step);
  }

  async has(runId: string, rel: string) {
    return existsSync(path.join(this.dir(runId, rel), COMPLETE));
  }

  async pull(runId: string, rel: string, localDir: string): Promise<void> {
    const source = this.dir(runId, rel);
    const problem = await verifyFolder(source);
    if (problem) throw new StoreIntegrityError(`${this.describe()}: ${runId}/${rel}: ${problem}`);
    if (path.resolve(source) === path.resolve(localDir)) return;
    rmSync(localDir, { recursive: true, force: true });
    mkdirSync(path.dirname(localDir), { recursive: true });
    cpSync(source, localDir, { recursive: true });
    if (!readComplete(localDir)) throw new StoreIntegrityError(`${runId}/${rel}: copy lost its COMPLETE`);
  }

  async remove(runId: string, rel: string): Promise<void> {
    rmSync(this.dir(runId, rel), { recursive: true, force: true });
  }
}

/** The store of a recipe: local (its runs dir) or a Hugging Face Hub model repo (token from HF_TOKEN). */
export async function openStore(recipe: Pick<ResolvedRecipe, 'store' | 'runs_dir'>): Promise<Store> {
  if (recipe.store.kind === 'hub') {
    const { HubStore } = await import('./hub-store.js');
    return new HubStore({ repo: recipe.store.repo!, hubUrl: recipe.store.hub_url, private: recipe.store.private });
  }
  return new LocalStore(recipe.runs_dir);
}
