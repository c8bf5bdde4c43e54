import { DiskFullError, StoreAccessError, StoreIntegrityError } from '../errors.js';
import { createWriteStream, mkdirSync, openAsBlob, renameSync, rmSync } from 'node:fs';
import path from 'node:path';
import { Readable } from 'node:stream';
import { pipeline } from 'node:stream/promises';
import { commit, createRepo, downloadFile, listFiles, type CommitOperation, type RepoDesignation } from '@huggingface/hub';
import { COMPLETE, completeForPush, readComplete, sha256File, type CompleteFile } from './complete.js';
import { type Store } from './store.js';
import { checkpointStep } from './checkpoint-name.js';
import { onDiskFull } from '../util/disk-full.js';

export interface HubStoreOptions {
  /** Model repo `owner/name`; one folder per run inside it. */
  repo: string;
  hubUrl?: string;
  private?: boolean;
  /** Defaults to HF_TOKEN from the environment; never from a recipe or job data. */
  token?: string;
  retries?: number;
  retryBaseMs?: number;
}

const sleep = (ms: number) => new Promise((r) => setTimeout(r, ms));

function statusOf(e: unknown): number | undefined {
  const s = (e as { statusCode?: number; status?: number }).statusCode ?? (e as { status?: number }).status;
  return typeof s === 'number' ? s : undefined;
}

/** A Hugging Face Hub model repo as a checkpoint store (Contract 6), with retries, backoff and jitter. */
export class HubStore implements Store {
  readonly kind = 'hub';
  private readonly repo: RepoDesignation;
  private readonly token: string | undefined;
  private ready: Promise<void> | undefined;

  constructor(private readonly opts: HubStoreOptions) {
    this.repo = { type: 'model', name: opts.repo };
    this.token = opts.token ?? process.env.HF_TOKEN;
  }

  describe(): string {
    return `hub store ${this.opts.hubUrl ?? 'https://huggingface.co'}/${this.opts.repo}`;
  }

  private creds() {
    return { ...(this.token ? { accessToken: this.token } : {}), ...(this.opts.hubUrl ? { hubUrl: this.opts.hubUrl } : {}) };
  }

  /** Runs a Hub call, retrying network faults, 429 and 5xx with exponential backoff and jitter. */
  private async retry<T>(what: string, fn: () => Promise<T>): Promise<T> {
    const attempts = this.opts.retries ?? 5;
    const base = this.opts.retryBaseMs ?? 500;
    for (let i = 1; ; i++) {
      try {
        return await fn();
      } catch (e) {
        if (e instanceof DiskFullError) throw e; // this machine's, not the Hub's: retrying cannot help
        const status = statusOf(e);
        if (status === 401 || status === 403) {
          throw new StoreAccessError(`${this.describe()}: ${what}: HTTP ${status}: the token in HF_TOKEN ${this.token ? 'lacks access to this repo' : 'is not set'}`);
        }
        if (status === 404 && what.startsWith('list')) {
          throw new StoreAccessError(`${this.describe()}: ${what}: the repo does not exist (deleted or renamed?)`);
        }
        const retryable = status === undefined || status === 429 || status >= 500;
        if (!retryable || i >= attempts) throw new Error(`${this.describe()}: ${what} failed${status ? ` (HTTP ${status})` : ''}: ${(e as Error).message}`);
        await sleep(base * 2 ** (i - 1) * (0.5 + Math.random()));
      }
    }
  }

  private ensureRepo(): Promise<void> {
    const token = this.token;
    if (!token) return Promise.reject(new StoreAccessError(`${this.describe()}: pushing needs a token with write access in HF_TOKEN`));
    this.ready ??= this.retry('create repo', async () => {
      try {
        await createRepo({ repo: this.repo, private: this.opts.private ?? true, accessToken: token, ...(this.opts.hubUrl ? { hubUrl: this.opts.hubUrl } : {}) });
      } catch (e) {
        if (statusOf(e) !== 409) throw e; // already there
      }
    }).catch((e) => {
      this.ready = undefined;
      throw e;
    });
    return this.ready;
  }

  async push(runId: string, localDir: string, rel: string): Promise<void> {
    const complete = await completeForPush(localDir, rel);
    await this.ensureRepo();
    const operations: CommitOperation[] = [];
    // The files first and COMPLETE last, in one commit: the remote never has one without the other.
    for (const f of Object.keys(complete.files)) {
      operations.push({ operation: 'addOrUpdate', path: `${runId}/${rel}/${f}`, content: await openAsBlob(path.join(localDir, f)) });
    }
    operations.push({ operation: 'addOrUpdate', path: `${runId}/${rel}/${COMPLETE}`, content: await openAsBlob(path.join(localDir, COMPLETE)) });
    await this.retry(`push ${runId}/${rel}`, () => commit({ repo: this.repo, title: `bsft: ${runId}/${rel}`, operations, ...this.creds() }));
  }

  private async paths(prefix: string): Promise<{ path: string; type: string }[]> {
    return this.retry(`list ${prefix}`, async () => {
      const out: { path: string; type: string }[] = [];
      try {
        for await (const f of listFiles({ repo: this.repo, path: prefix, recursive: true, ...this.creds() })) out.push({ path: f.path, type: f.type });
      } catch (e) {
        // A folder that does not exist yet lists as 404 with the repo present: nothing there.
        if (statusOf(e) === 404 && (await this.repoExists())) return [];
        throw e;
      }
      return out;
    });
  }

  private async repoExists(): Promise<boolean> {
    try {
      for await (const _ of listFiles({ repo: this.repo, ...this.creds() })) break;
      return true;
    } catch (e) {
      if (statusOf(e) === 404) return false;
      throw e;
    }
  }

  async checkpoints(runId: string) {
    const files = await this.paths(`${runId}/checkpoints`);
    const out: { step: number; rel: string }[] = [];
    for (const f of files) {
      const parts = f.path.split('/');
      const step = checkpointStep(parts[2] ?? '');
      if (step !== undefined && parts[3] === COMPLETE && parts.length === 4) out.push({ step, rel: `checkpoints/${parts[2]}` });
    }
    return out.sort((a, b) => b.step - a.step);
  }

  async has(runId: string, rel: string) {
    return (await this.paths(`${runId}/${rel}`)).some((f) => f.path === `${runId}/${rel}/${COMPLETE}`);
  }

  private async download(remote: string, local: string): Promise<void> {
    await this.retry(`download ${remote}`, async () => {
      const blob = await downloadFile({ repo: this.repo, path: remote, ...this.creds() });
      if (!blob) throw new StoreIntegrityError(`${remote} is missing from ${this.describe()}`);
      const tmp = `${local}.part`;
      await onDiskFull(local, `pulling ${remote} from ${this.describe()}`, async () => {
        mkdirSync(path.dirname(local), { recursive: true });
        await pipeline(Readable.fromWeb(blob.stream() as never), createWriteStream(tmp));
        renameSync(tmp, local);
      });
    });
  }

  async pull(runId: string, rel: string, localDir: string): Promise<void> {
    const tmp = `${localDir}.pull-${process.pid}`;
    rmSync(tmp, { recursive: true, force: true });
    try {
      await this.download(`${runId}/${rel}/${COMPLETE}`, path.join(tmp, COMPLETE));
      const complete = readComplete(tmp) as CompleteFile | undefined;
      if (!complete) throw new StoreIntegrityError(`${runId}/${rel}: unreadable COMPLETE`);
      for (const [f, digest] of Object.entries(complete.files)) {
        await this.download(`${runId}/${rel}/${f}`, path.join(tmp, f));
        if ((await sha256File(path.join(tmp, f))) !== digest) {
          throw new StoreIntegrityError(`${this.describe()}: ${runId}/${rel}/${f} does not match the sha256 in its COMPLETE`);
        }
      }
      rmSync(localDir, { recursive: true, force: true });
      mkdirSync(path.dirname(localDir), { recursive: true });
      renameSync(tmp, localDir);
    } finally {
      rmSync(tmp, { recursive: true, force: true });
    }
  }

  async remove(runId: string, rel: string): Promise<void> {
    const files = await this.paths(`${runId}/${rel}`);
    if (files.length === 0) return;
    // COMPLETE first in the list: a half-applied delete would still leave no complete folder behind.
    const ordered = [...files.filter((f) => f.path.endsWith(`/${COMPLETE}`)), ...files.filter((f) => !f.path.endsWith(`/${COMPLETE}`))];
    await this.retry(`remove ${runId}/${rel}`, () =>
      commit({ repo: this.repo, title: `bsft: remove ${runId}/${rel}`, operations: ordered.filter((f) => f.type === 'file').map((f) => ({ operation: 'delete', path: f.path })), ...this.creds() }),
    );
  }
}

