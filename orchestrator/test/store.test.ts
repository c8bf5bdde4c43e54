import { StoreAccessError, StoreIntegrityError } from '../src/errors.js';
import { execFileSync } from 'node:child_process';
import { existsSync, mkdirSync, mkdtempSync, readFileSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import path from 'node:path';
import { pino } from 'pino';
import { afterEach, describe, expect, it } from 'vitest';
import { completeForPush, sha256File, verifyFolder } from '../src/store/complete.js';
import { HubStore } from '../src/store/hub-store.js';

import { pruneRemote, pullNewestCheckpoint } from '../src/store/sync.js';
import { bsft, ROOT } from './helpers/cli.js';
import { pythonWith } from './helpers/python.js';
import { hubDuringTests } from './helpers/fake-hub.js';
import { queueEnv, startWorkerProc, stop, submitRun, testRecipeArgs, waitForRun, type WorkerProc } from './helpers/queue.js';
import { limit } from './helpers/time-scale.js';

const silent = pino({ level: 'silent' });
const hub = hubDuringTests();

/** A checkpoint folder as the trainer writes it: files, then COMPLETE with their sha256. */
async function checkpoint(root: string, step: number): Promise<string> {
  const dir = path.join(root, 'checkpoints', `step-${String(step).padStart(6, '0')}`);
  mkdirSync(dir, { recursive: true });
  writeFileSync(path.join(dir, 'trainable.pt'), Buffer.alloc(10_000, step)); // large: goes through LFS
  writeFileSync(path.join(dir, 'trainer_state.pt'), `state ${step}`);
  const files = { 'trainable.pt': await sha256File(path.join(dir, 'trainable.pt')), 'trainer_state.pt': await sha256File(path.join(dir, 'trainer_state.pt')) };
  writeFileSync(path.join(dir, 'COMPLETE'), JSON.stringify({ files, step }));
  return dir;
}

const store = (repo: string, token = hub.writeToken) => new HubStore({ repo, hubUrl: hub.url, token, retryBaseMs: 10, retries: 4 });

describe('hub store against a local Hub API server', () => {
  it('pushes a checkpoint in one commit with its COMPLETE, through the routes the library uses, and pulls it back verified', async () => {
    const root = mkdtempSync(path.join(tmpdir(), 'bsft-store-'));
    const s = store('lab/push-test');
    const before = hub.requests.length;
    await s.push('run1', await checkpoint(root, 3), 'checkpoints/step-000003');
    const calls = hub.requests.slice(before).map((r) => `${r.method} ${r.path.replace(/[0-9a-f]{64}/, '<sha256>')}`);
    expect(calls).toEqual([
      'POST /api/repos/create',
      'POST /api/models/lab/push-test/preupload/main',
      'POST /lab/push-test.git/info/lfs/objects/batch',
      'PUT /lfs-upload/<sha256>',
      'POST /api/models/lab/push-test/commit/main',
    ]);
    expect([...hub.files('lab/push-test').keys()].sort()).toEqual([
      'run1/checkpoints/step-000003/COMPLETE', 'run1/checkpoints/step-000003/trainable.pt', 'run1/checkpoints/step-000003/trainer_state.pt',
    ]);
    await s.push('run1', await checkpoint(root, 6), 'checkpoints/step-000006');
    expect(await s.checkpoints('run1')).toEqual([{ step: 6, rel: 'checkpoints/step-000006' }, { step: 3, rel: 'checkpoints/step-000003' }]);
    const into = mkdtempSync(path.join(tmpdir(), 'bsft-pull-'));
    expect(await pullNewestCheckpoint(s, 'run1', into, silent)).toBe(6);
    expect(readFileSync(path.join(into, 'step-000006', 'trainable.pt')).equals(Buffer.alloc(10_000, 6))).toBe(true);
  });

  it('an upload cut off mid-way leaves no COMPLETE of that step, and a pull takes the previous checkpoint', async () => {
    const root = mkdtempSync(path.join(tmpdir(), 'bsft-store-'));
    const s = store('lab/cut-test');
    await s.push('run', await checkpoint(root, 2), 'checkpoints/step-000002');
    hub.cutCommitsContaining = 'step-000004';
    try {
      await expect(s.push('run', await checkpoint(root, 4), 'checkpoints/step-000004')).rejects.toThrow(/push run\/checkpoints\/step-000004 failed/);
    } finally {
      hub.cutCommitsContaining = undefined;
    }
    expect([...hub.files('lab/cut-test').keys()].some((k) => k.includes('step-000004'))).toBe(false);
    const into = mkdtempSync(path.join(tmpdir(), 'bsft-pull-'));
    expect(await pullNewestCheckpoint(s, 'run', into, silent)).toBe(2);
  });

  it('a corrupted remote file is caught by its sha256 and the previous checkpoint is used', async () => {
    const root = mkdtempSync(path.join(tmpdir(), 'bsft-store-'));
    const s = store('lab/corrupt-test');
    await s.push('run', await checkpoint(root, 2), 'checkpoints/step-000002');
    await s.push('run', await checkpoint(root, 4), 'checkpoints/step-000004');
    hub.files('lab/corrupt-test').set('run/checkpoints/step-000004/trainer_state.pt', Buffer.from('flipped bits'));
    const into = mkdtempSync(path.join(tmpdir(), 'bsft-pull-'));
    await expect(s.pull('run', 'checkpoints/step-000004', path.join(into, 'x'))).rejects.toThrow(StoreIntegrityError);
    expect(existsSync(path.join(into, 'x'))).toBe(false);
    expect(await pullNewestCheckpoint(s, 'run', into, silent)).toBe(2);
  });

  it('keeps the newest N remote checkpoints', async () => {
    const root = mkdtempSync(path.join(tmpdir(), 'bsft-store-'));
    const s = store('lab/prune-test');
    for (const step of [1, 2, 3, 4]) await s.push('run', await checkpoint(root, step), `checkpoints/step-${String(step).padStart(6, '0')}`);
    await pruneRemote(s, 'run', 2);
    expect((await s.checkpoints('run')).map((c) => c.step)).toEqual([4, 3]);
  });

  it('retries 503s with backoff; fails clearly without rights or when the repo is gone', async () => {
    const root = mkdtempSync(path.join(tmpdir(), 'bsft-store-'));
    const s = store('lab/retry-test');
    hub.fail503 = 3;
    await s.push('run', await checkpoint(root, 1), 'checkpoints/step-000001');
    expect(await s.has('run', 'checkpoints/step-000001')).toBe(true);
    await expect(store('lab/retry-test', hub.readToken).push('run', await checkpoint(root, 2), 'checkpoints/step-000002')).rejects.toThrow(/HTTP 403: the token in HF_TOKEN lacks access/);
    await expect(store('lab/retry-test', 'hf_wrong_token_aaaaaaaaaaaaaaaaaaaa').checkpoints('run')).rejects.toThrow(StoreAccessError);
    await expect(store('lab/never-created').checkpoints('run')).rejects.toThrow(/the repo does not exist/);
  });
});

describe('scripts/hub-smoke.sh', () => {
  it('runs its flow against a Hub API (here the local one)', async () => {
    const { execa } = await import('execa');
    const { ROOT } = await import('./helpers/cli.js');
    const res = await execa('bash', ['scripts/hub-smoke.sh'], { cwd: ROOT, reject: false, env: { HF_TOKEN: hub.writeToken, HUB_REPO: 'lab/smoke', HUB_URL: hub.url } });
    expect(res.exitCode, String(res.stderr)).toBe(0);
    expect(String(res.stdout)).toMatch(/hub-smoke: ok/);
    const skipped = await execa('bash', ['scripts/hub-smoke.sh'], { cwd: ROOT, reject: false, env: { HF_TOKEN: '' } });
    expect(String(skipped.stdout)).toContain('skipped');
  });
});

describe('a run on rented GPUs with a hub store', () => {
  const workers: WorkerProc[] = [];
  afterEach(async () => {
    await Promise.all(workers.splice(0).map((w) => stop(w, 'SIGKILL')));
  });

  it('a worker with an empty workspace resumes from the store alone, from the newest pushed step; pull --final gets a model card', async () => {
    const repo = 'lab/e2e';
    const env = queueEnv({ HF_TOKEN: hub.writeToken, HF_ENDPOINT: hub.url, FIXTURE_STEP_MS: '250' });
    const { runId } = await submitRun(env, ['store.kind=hub', `store.repo=${repo}`, `store.hub_url=${hub.url}`, 'store.keep_remote=2',
      'train.max_steps=24', 'train.checkpoint_every=3', 'queue.attempts=3']);
    const a = startWorkerProc('ok', env, ['--workdir', mkdtempSync(path.join(tmpdir(), 'bsft-wa-')), '--name', 'gpu-a']);
    workers.push(a);
    const pushed = async (step: number) => hub.files(repo).has(`${runId}/checkpoints/step-${String(step).padStart(6, '0')}/COMPLETE`);
    for (let i = 0; i < 200 && !(await pushed(6)); i++) await new Promise((r) => setTimeout(r, 100));
    expect(await pushed(6), a.stderr.filter((l) => /"level":(40|50)/.test(l)).join("\n")).toBe(true);
    expect(hub.files(repo).has(`${runId}/dataset/COMPLETE`)).toBe(true);
    a.proc.kill('SIGKILL');
    const newest = Math.max(...[...hub.files(repo).keys()].map((k) => /checkpoints\/step-(\d+)\/COMPLETE$/.exec(k)).filter(Boolean).map((m) => Number(m![1])));
    const emptyWorkdir = mkdtempSync(path.join(tmpdir(), 'bsft-wb-'));
    const b = startWorkerProc('ok', { ...env, FIXTURE_STEP_MS: '20' }, ['--workdir', emptyWorkdir, '--name', 'gpu-b']);
    workers.push(b);
    const done = await waitForRun(env, runId, (v) => ['completed', 'failed'].includes(v.state), 90_000);
    expect(done.state, done.failedReason).toBe('completed');
    const logs = (await bsft(['logs', runId], { env })).stdout;
    expect(logs).toMatch(/"event":"pulled","what":"dataset"/);
    expect(logs).toContain(`"event":"pulled","what":"checkpoint","step":${newest}`);
    expect(logs).toMatch(new RegExp(`"event":"start","total_steps":24,"resumed_from_step":${newest}`));
    expect(existsSync(path.join(emptyWorkdir, runId, 'final', 'COMPLETE'))).toBe(true);
    expect(hub.files(repo).has(`${runId}/final/COMPLETE`)).toBe(true);
    expect(hub.files(repo).has(`${runId}/score/COMPLETE`)).toBe(true);
    // The metrics history is kept in the store too (meta/), every step once, across the two machines.
    const history = String(hub.files(repo).get(`${runId}/meta/metrics.jsonl`) ?? '');
    expect(history.trim().split('\n').map((l) => JSON.parse(l).step)).toEqual(Array.from({ length: 24 }, (_, i) => i + 1));
    const remote = [...hub.files(repo).keys()].filter((k) => k.endsWith('/COMPLETE') && k.includes('/checkpoints/'));
    expect(remote.length).toBeLessThanOrEqual(2);

    const elsewhere = mkdtempSync(path.join(tmpdir(), 'bsft-pullfinal-'));
    const pulled = await bsft(['pull', runId, '--final', '--repo', repo, '--hub-url', hub.url, '--runs', elsewhere], { env: { HF_TOKEN: hub.readToken } });
    expect(pulled.code, pulled.stderr).toBe(0);
    const card = readFileSync(path.join(elsewhere, runId, 'final', 'README.md'), 'utf8');
    expect(card).toContain('`<|behavior:proactive|>`');
    expect(card).toMatch(/\| test \| \d+\.\d/);
  }, limit(180_000));
});

describe('a sweep kept on the Hub', () => {
  it('bsft report --sweep brings back each point\'s dataset and predictions from the store and ranks them', async () => {
    const repo = 'lab/sweep';
    const env = queueEnv({ HF_TOKEN: hub.writeToken, HF_ENDPOINT: hub.url });
    const { args, runs } = testRecipeArgs(['store.kind=hub', `store.repo=${repo}`, `store.hub_url=${hub.url}`]);
    const sub = await bsft(['sweep', ...args, '--grid', 'train.lr=1e-3,2e-3', '--name', 'on-hub'], { env });
    expect(sub.code, sub.stderr).toBe(0);
    const ids: string[] = JSON.parse(readFileSync(path.join(runs, '_sweeps', 'on-hub.json'), 'utf8')).points.map((p: { run_id: string }) => p.run_id);
    const w = startWorkerProc('ok', env, ['--workdir', mkdtempSync(path.join(tmpdir(), 'bsft-hub-sweep-'))]);
    try {
      await w.ready;
      for (const id of ids) expect((await waitForRun(env, id, (v) => ['completed', 'failed'].includes(v.state), 90_000)).state).toBe('completed');
    } finally {
      await stop(w, 'SIGKILL');
    }
    // The submitting machine has the record but none of the points' files: they are on the Hub.
    for (const id of ids) expect(existsSync(path.join(runs, id, 'predictions'))).toBe(false);
    const out = path.join(runs, 'rep');
    const rep = await bsft(['report', '--sweep', 'on-hub', '--runs-dir', runs, '--out', out, '--bootstrap', '50'], { env: { HF_TOKEN: hub.readToken } });
    expect(rep.code, rep.stderr).toBe(0);
    const report = JSON.parse(readFileSync(path.join(out, 'report.json'), 'utf8'));
    expect(report.points.map((p: { rank: number | null }) => p.rank)).toEqual([1, 2]);
    expect(report.points.every((p: { val: { n_tasks: number } }) => p.val.n_tasks > 0)).toBe(true);
    expect(report.best.test).not.toBeNull();
    for (const id of ids) expect(existsSync(path.join(runs, id, 'predictions', 'val.jsonl'))).toBe(true);
  }, limit(120_000));
});

describe('COMPLETE: one procedure on both sides', () => {
  const py = pythonWith(['numpy']);
  it.skipIf(!py)('a folder completed by the trainer verifies here, one completed here verifies in the trainer; an unlisted file fails both', async () => {
    const root = mkdtempSync(path.join(tmpdir(), 'bsft-complete-'));
    const script = `
import sys, pathlib
sys.path.insert(0, ${JSON.stringify(path.join(ROOT, 'trainer-python', 'src'))})
from bsft_trainer.checkpoints import checkpoint as ckpt
from bsft_trainer.process.fence import NoFence
root = pathlib.Path(sys.argv[2])
if sys.argv[1] == "write":
    def files(d):
        (d / "a.bin").write_bytes(b"a" * 100)
        (d / "sub").mkdir()
        (d / "sub" / "b.json").write_text("{}")
    ckpt.save_atomic(root / "py", files, NoFence(), {"run_id": "r"})
else:
    print(ckpt.verify(root / sys.argv[3]))
`;
    const run = (...args: string[]) => execFileSync(py!, ['-c', script, ...args], { encoding: 'utf8' }).trim();
    run('write', root);
    expect(await verifyFolder(path.join(root, 'py'))).toBeUndefined();

    const ts = path.join(root, 'ts');
    mkdirSync(path.join(ts, 'sub'), { recursive: true });
    writeFileSync(path.join(ts, 'a.bin'), 'a');
    writeFileSync(path.join(ts, 'sub', 'b.json'), '{}');
    await completeForPush(ts, 'dataset');
    expect(run('verify', root, 'ts')).toBe('None');

    for (const dir of ['py', 'ts']) writeFileSync(path.join(root, dir, 'sub', 'extra.txt'), 'sneaked in');
    expect(await verifyFolder(path.join(root, 'py'))).toBe('sub/extra.txt is not listed in COMPLETE');
    expect(run('verify', root, 'ts')).toBe('sub/extra.txt is not listed in COMPLETE');
  });
});
