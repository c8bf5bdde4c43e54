import { existsSync, mkdirSync, mkdtempSync, readdirSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import path from 'node:path';
import { describe, expect, it } from 'vitest';
import { DiskFullError } from '../src/errors.js';
import { sha256File } from '../src/store/complete.js';
import { HubStore } from '../src/store/hub-store.js';
import { bsft } from './helpers/cli.js';
import { hubDuringTests } from './helpers/fake-hub.js';
import { cannotMount, smallDisk } from './helpers/small-disk.js';

// A real full disk (a small tmpfs) under each writer of the orchestrator's side: the dataset build and a pull from
// the Hub. Each fails naming the path and the free space there, and leaves nothing half-written. (The trainer's
// checkpoints and final/: trainer-python/tests/test_faults.py; the queue's handling: queue.test.ts.)
const why = cannotMount();
if (why) console.log(`disk-full tests skipped: cannot mount a tmpfs here (${why})`);

const entries = (dir: string): string[] => readdirSync(dir, { recursive: true }).map(String).sort();

describe.skipIf(why !== undefined)('a full disk', () => {
  const hub = hubDuringTests();

  it('under a dataset build: the build fails naming the folder and the free space; no dataset, temporary or lock is left', async () => {
    const disk = smallDisk(256); // the smoke dataset takes about 1.5 MB
    try {
      const out = path.join(disk.dir, 'dataset');
      const res = await bsft(['dataset', 'build', 'recipes/smoke.yaml', '--out', out, '--allow', disk.dir]);
      expect(res.code).toBe(1);
      expect(res.stderr).toMatch(new RegExp(`no space left on the disk of ${out} while writing the dataset \\(\\d+\\.\\d MiB free there\\): free disk space on this machine`));
      expect(entries(disk.dir)).toEqual([]);
    } finally {
      disk.unmount();
    }
  });

  it('under a pull from the Hub: no retry, the error names the file and the free space; no partial folder is left', async () => {
    const src = mkdtempSync(path.join(tmpdir(), 'bsft-disk-src-'));
    const dir = path.join(src, 'step-000004');
    mkdirSync(dir);
    writeFileSync(path.join(dir, 'trainable.pt'), Buffer.alloc(400_000, 7));
    writeFileSync(path.join(dir, 'COMPLETE'), JSON.stringify({ files: { 'trainable.pt': await sha256File(path.join(dir, 'trainable.pt')) }, step: 4 }));
    const store = new HubStore({ repo: 'lab/disk-full', hubUrl: hub.url, token: hub.writeToken, retryBaseMs: 10, retries: 4 });
    await store.push('run1', dir, 'checkpoints/step-000004');
    const fileRequests = (since: number) => hub.requests.slice(since).filter((r) => r.path.includes('trainable.pt')).length;
    let before = hub.requests.length;
    await store.pull('run1', 'checkpoints/step-000004', path.join(src, 'pulled'));
    const once = fileRequests(before); // what one download of the file takes
    const disk = smallDisk(128);
    try {
      const into = path.join(disk.dir, 'run1', 'checkpoints', 'step-000004');
      before = hub.requests.length;
      const err = await store.pull('run1', 'checkpoints/step-000004', into).catch((e: unknown) => e);
      expect(err).toBeInstanceOf(DiskFullError);
      expect((err as Error).message).toMatch(/^no space left on the disk of \S+trainable\.pt while pulling run1\/checkpoints\/step-000004\/trainable\.pt from .+ \(\d+\.\d MiB free there\)/);
      expect(fileRequests(before)).toBe(once); // not retried
      expect(existsSync(into)).toBe(false);
      expect(entries(disk.dir).filter((e) => e.includes('.pull-') || e.endsWith('.part'))).toEqual([]);
    } finally {
      disk.unmount();
    }
  });
});
