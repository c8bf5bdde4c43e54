import { existsSync, mkdtempSync, readFileSync } from 'node:fs';
import path from 'node:path';
import { afterEach, describe, expect, it } from 'vitest';
import { tmpdir } from 'node:os';
import { openPage } from './helpers/browser.js';
import { bsft } from './helpers/cli.js';
import { queueEnv, startWorkerProc, stop, submitRun, testRecipeArgs, trainStep, waitForRun, withRunQueues, type WorkerProc } from './helpers/queue.js';
import { limit } from './helpers/time-scale.js';

const workers: WorkerProc[] = [];
function worker(...args: Parameters<typeof startWorkerProc>): WorkerProc {
  const w = startWorkerProc(...args);
  workers.push(w);
  return w;
}
afterEach(async () => {
  await Promise.all(workers.splice(0).map((w) => stop(w, 'SIGKILL')));
});

const trainJob = (env: Record<string, string>, runId: string) => withRunQueues(env, async (q) => (await q.jobs(runId)).train!);

describe('queue: submit, work, exit-code mapping (fixture trainers, real Redis)', () => {
  it('runs a submitted flow build -> train -> score; a second submit is a no-op', async () => {
    const env = queueEnv();
    const { runId, runs } = await submitRun(env);
    const again = await bsft(['submit', 'recipes/smoke.yaml', '--allow', runs, '--set', `store.path=${runs}`, '--set', 'train.max_steps=6', '--set', 'train.checkpoint_every=2',
      '--set', 'queue.attempts=2', '--set', 'queue.backoff_ms=200', '--set', 'eval.bootstrap=20'], { env });
    expect(again.stdout).toMatch(new RegExp(`run ${runId} is already in the queue \\((waiting|building)\\); nothing to do`));
    const w = worker('ok', env);
    await w.ready;
    const done = await waitForRun(env, runId, (v) => ['completed', 'failed'].includes(v.state));
    expect(done.state).toBe('completed');
    expect(done.progress).toMatchObject({ phase: 'done' });
    expect(await trainJob(env, runId).then((j) => j.progress)).toBe(100); // numeric: Bull Board draws it as a bar
    const runDir = path.join(runs, runId);
    expect(existsSync(path.join(runDir, 'score', 'test.json'))).toBe(true);
    const logs = await bsft(['logs', runId], { env });
    expect(logs.stdout).toMatch(/\[build\] .*"event":"dataset"/);
    expect(logs.stdout).toMatch(/\[train\] .*"event":"checkpoint"/);
    expect(logs.stdout).toMatch(/\[score\] .*"event":"score"/);
    // Step losses: in the job log (about 50 an attempt; all 6 here) and, read from the run folder, a table.
    expect([...logs.stdout.matchAll(/\[train\] .*"event":"step","step":(\d+)/g)].map((m) => Number(m[1]))).toEqual([1, 2, 3, 4, 5, 6]);
    expect(logs.stdout).toMatch(/metrics \(.*metrics\.jsonl, 6 steps\):\n +step +loss +lr +val loss\n +1 +2\.0000 +1\.00e-4/);
    const status = await bsft(['status'], { env });
    expect(status.stdout).toMatch(/bsft-train\s+0\s+0\s+0\s+0\s+1\s+0/); // waiting (prioritized included), active, delayed, waiting-children, completed, failed
    expect(status.stdout).toMatch(new RegExp(`run\\s+state\\s+progress\\s+loss\\s+tok/s\\s+ETA\\s+mem \\(peak\\)\\s+worker\\s+age\\s+reason`));
    expect(status.stdout).toMatch(new RegExp(`${runId}\\s+completed\\s+score\\s+\\[#{10}\\]\\s+100%\\s+1/1\\s+-\\s+-\\s+-\\s+-\\s+\\S+\\s+\\d+s`));
  });

  it('bsft worker --log-level warn: the build and score children it starts log at its level too', async () => {
    const env = queueEnv(); // BSFT_LOG_LEVEL: info there; the flag wins, also in the worker's children
    const { runId } = await submitRun(env);
    const w = worker('ok', env, ['--log-level', 'warn']);
    expect((await waitForRun(env, runId, (v) => ['completed', 'failed'].includes(v.state))).state).toBe('completed');
    const logs = await bsft(['logs', runId], { env });
    expect(logs.stdout).toMatch(/\[build\] .*"event":"dataset"/); // the build ran in a child of this worker
    const levels = w.stderr.filter((l) => l.startsWith('{')).map((l) => JSON.parse(l).level as number);
    expect(w.stderr.join('\n')).not.toMatch(/dataset built|worker ready/);
    expect(levels.every((n) => n >= 40), w.stderr.join('\n')).toBe(true);
  });

  it('a crashing trainer is retried with backoff, then fails after its attempts', async () => {
    const env = queueEnv();
    const { runId } = await submitRun(env);
    worker('crash', env);
    const v = await waitForRun(env, runId, (x) => x.state === 'failed');
    expect(v.failedReason).toMatch(/trainer train failed \(exit 1\)/);
    const job = await trainJob(env, runId);
    expect(job.attemptsMade).toBe(2);
    const status = await bsft(['status'], { env });
    expect(status.stdout).toMatch(/\breason\b/);
    expect(status.stdout).toMatch(new RegExp(`${runId}\\s+failed\\s.*trainer train failed \\(exit 1\\)`));
  });

  it('a config error (exit 2) fails at once, never retried', async () => {
    const env = queueEnv();
    const { runId } = await submitRun(env);
    worker('bad-config', env);
    const v = await waitForRun(env, runId, (x) => x.state === 'failed');
    expect(v.failedReason).toBe('trainer train: config error: train.lr: expected a number');
    const job = await trainJob(env, runId);
    expect(job.attemptsMade, JSON.stringify({ started: job.attemptsStarted, stalled: job.stalledCounter, logs: (await bsft(['logs', runId], { env })).stdout })).toBe(1);
    const logs = (await bsft(['logs', runId], { env })).stdout;
    expect(logs).toContain('[train] failed: trainer train: config error: train.lr: expected a number');
    expect(logs).toContain(`-- run ${runId}: failed`);
  });

  it('a preempted trainer (exit 75) goes back to waiting without using an attempt, and resumes', async () => {
    const env = queueEnv();
    const { runId, runs } = await submitRun(env);
    worker('preempted', env);
    const v = await waitForRun(env, runId, (x) => ['completed', 'failed'].includes(x.state));
    expect(v.state).toBe('completed');
    const job = await trainJob(env, runId);
    expect(job.attemptsMade).toBe(1);
    expect(job.data.preemptions).toBe(1);
    const logs = await bsft(['logs', runId], { env });
    expect(logs.stdout).toMatch(/"event":"requeued","reason":"preempted"/);
    expect(logs.stdout).toMatch(/"event":"start","total_steps":6,"resumed_from_step":3/);
    expect(existsSync(path.join(runs, runId, 'final', 'COMPLETE'))).toBe(true);
  });

  it('a full disk on a worker (exit 74) puts the job back without using an attempt; that worker pauses and another finishes it', async () => {
    const env = queueEnv({ BSFT_DISK_FULL_PAUSE_MS: '600000' });
    const { runId, runs } = await submitRun(env);
    const full = worker('disk-full', env, ['--name', 'full-disk']);
    await full.ready;
    const paused = () => full.stderr.some((l) => l.includes("this machine's disk is full: taking no new job for 600 s"));
    for (let i = 0; i < 600 && !paused(); i++) await new Promise((r) => setTimeout(r, 100));
    expect(paused()).toBe(true);
    // The worker's own log says how the trainer ended.
    expect(full.stderr.join('\n')).toMatch(/"exit":74.*"msg":"trainer train ended: exit 74 \(disk-full/);
    worker('ok', env, ['--name', 'roomy']);
    const v = await waitForRun(env, runId, (x) => ['completed', 'failed'].includes(x.state));
    expect(v.state, v.failedReason).toBe('completed');
    const job = await trainJob(env, runId);
    expect(job.attemptsMade).toBe(1);
    expect(job.data.disk_full).toBe(1);
    expect(job.processedBy).toBe('roomy');
    const logs = (await bsft(['logs', runId], { env })).stdout;
    expect(logs).toMatch(/"event":"requeued","reason":"disk full","message":"trainer train: no space left on the disk of \S+ \(0\.0 MiB free there\)/);
    expect(logs).toMatch(/"event":"start","total_steps":6,"resumed_from_step":0[^\n]*\n[\s\S]*"resumed_from_step":0/); // step 2 had no checkpoint
    expect(existsSync(path.join(runs, runId, 'final', 'COMPLETE'))).toBe(true);
  });

  it('a trainer that never emits events is stopped by the watchdog and retried', async () => {
    const env = queueEnv({ BSFT_TRAINER_SILENCE_MS: '1500' });
    const { runId } = await submitRun(env);
    worker('silent', env);
    const v = await waitForRun(env, runId, (x) => x.state === 'failed', 30_000);
    expect(v.failedReason).toMatch(/emitted no event for 2 s and was stopped/);
    expect((await trainJob(env, runId)).attemptsMade).toBe(2);
  });
});

describe('worker shutdown, cancel and retry', () => {
  it('SIGTERM to the worker: the trainer checkpoints, the job returns to waiting, the next worker resumes', async () => {
    const env = queueEnv({ FIXTURE_STEP_MS: '300' });
    const { runId } = await submitRun(env, ['train.max_steps=20', 'train.checkpoint_every=100']);
    const w1 = worker('ok', env);
    await waitForRun(env, runId, (v) => v.state === 'training' && trainStep(v) >= 2);
    expect(await stop(w1)).toBe(0);
    const back = await waitForRun(env, runId, () => true);
    expect(back.stages.train).toBe('waiting');
    expect((await trainJob(env, runId)).attemptsMade).toBe(0);
    expect(w1.stderr.join('\n')).toMatch(/shutting down: stopping trainers after a checkpoint/);
    const w2 = worker('ok', { ...env, FIXTURE_STEP_MS: '20' });
    await w2.ready;
    const done = await waitForRun(env, runId, (v) => v.state === 'completed');
    expect(done.state).toBe('completed');
    const logs = (await bsft(['logs', runId], { env })).stdout;
    expect(logs).toMatch(/"event":"requeued","reason":"worker shutdown"/);
    expect(Number(/"resumed_from_step":(\d+)/.exec(logs.split('"event":"requeued"')[1]!)![1])).toBeGreaterThanOrEqual(2);
  });

  it('a trainer that ignores SIGTERM is killed after the grace period and its job returns to waiting', async () => {
    const env = queueEnv({ FIXTURE_STEP_MS: '200' });
    const { runId } = await submitRun(env, ['train.max_steps=200', 'train.preempt_grace_s=1']);
    const w = worker('hang-on-sigterm', env);
    await waitForRun(env, runId, (v) => trainStep(v) >= 1);
    const started = Date.now();
    expect(await stop(w)).toBe(0);
    expect(Date.now() - started).toBeLessThan(8000);
    const v = await waitForRun(env, runId, () => true);
    expect(v.stages.train).toBe('waiting');
  });

  it('cancel stops the trainer with a checkpoint and marks the run cancelled; retry resumes it', async () => {
    const env = queueEnv({ FIXTURE_STEP_MS: '200' });
    const { runId, runs } = await submitRun(env, ['train.max_steps=15', 'train.checkpoint_every=100']);
    worker('ok', env);
    await waitForRun(env, runId, (v) => trainStep(v) >= 2);
    const res = await bsft(['cancel', runId], { env });
    expect(res.stdout).toMatch(/cancel sent for run .* \(1 worker\(s\) listening\)/);
    expect(res.stdout).toMatch(new RegExp(`run ${runId}: cancelled\n  bsft retry ${runId} resumes it; bsft rm ${runId} removes it \\(folder and queued jobs\\)`));
    expect(res.code).toBe(0);
    // The score job waits on the cancelled train job (BullMQ's waiting-children), for bsft retry.
    expect((await waitForRun(env, runId, () => true)).stages).toMatchObject({ train: 'failed', score: 'waiting-children' });
    const ck = path.join(runs, runId, 'checkpoints');
    expect(existsSync(ck)).toBe(true);
    const status = await bsft(['status'], { env });
    expect(status.stdout).toMatch(new RegExp(`${runId}\\s+cancelled`));
    const retried = await bsft(['retry', runId], { env });
    expect(retried.stdout).toMatch(new RegExp(`run ${runId}: train back in the queue; training resumes from its newest checkpoint`));
    const done = await waitForRun(env, runId, (v) => v.state === 'completed', 60_000);
    expect(done.state).toBe('completed');
  });

  it('rm of a cancelled run removes its queued jobs (a run only in the queue too): the same run can be submitted afresh', async () => {
    const env = queueEnv();
    const { args, runs } = testRecipeArgs();
    const submit = async () => /submitted run (\S+)/.exec((await bsft(['submit', ...args], { env })).stdout)?.[1];
    const runId = (await submit())!;
    const cancelled = await bsft(['cancel', runId, '--no-wait'], { env });
    expect(cancelled.code).toBe(0);
    expect((await waitForRun(env, runId, () => true)).state).toBe('cancelled');
    // Another run, running: refused, untouched.
    const other = await submitRun(env, ['train.seed=7']);
    const refused = await bsft(['rm', other.runId, '--yes', '--dir', runs], { env });
    expect(refused.code).toBe(1);
    expect(refused.stdout).toMatch(new RegExp(`${other.runId}: not removed, its queued job is waiting \\(bsft cancel ${other.runId} first\\)`));
    // No folder yet (no worker built it): the run is only in the queue.
    const res = await bsft(['rm', runId, '--yes', '--dir', runs], { env });
    expect(res.code, res.stdout + res.stderr).toBe(0);
    expect(res.stdout).toMatch(new RegExp(`${runId}  no local folder  \\(queued: cancelled\\)`));
    expect(res.stdout).toMatch(new RegExp(`${runId}: removed its queued jobs \\(build, train, score\\); submitting it again starts it afresh`));
    expect(await withRunQueues(env, async (q) => Object.keys(await q.jobs(runId)))).toEqual([]);
    expect(await withRunQueues(env, (q) => q.view(other.runId))).toMatchObject({ state: 'waiting' });
    expect(await submit()).toBe(runId);
    // The cancel mark went with it: the fresh run is waiting, not cancelled (a worker would fail it at once).
    expect(await withRunQueues(env, (q) => q.view(runId))).toMatchObject({ state: 'waiting', stages: { build: 'waiting', score: 'waiting-children' } });
    const gone = await bsft(['rm', 'no-such-run', '--yes', '--dir', runs], { env });
    expect(gone.code).toBe(2);
    expect(gone.stderr).toMatch(/no-such-run: not a run folder, nor a run in the queue/);
  });

  it('watch follows the run live and ends with its outcome', async () => {
    const env = queueEnv({ FIXTURE_STEP_MS: '100' });
    const { runId } = await submitRun(env, ['train.max_steps=10']);
    const watching = bsft(['watch', runId], { env });
    worker('ok', env);
    const res = await watching;
    expect(res.code, `${res.stdout}\n${res.stderr}\n${(await bsft(['logs', runId], { env })).stdout}`).toBe(0);
    // not a terminal: a progress line every tenth of the way, rate and ETA from the recent steps
    expect(res.stdout).toMatch(/train +\[[#-]+\] +\d+\/10 +\d+% +[\d.]+ step\/s +ETA \d+s +loss \d\.\d{4} +tok\/s 1,000 +mem 0\.0 GiB +peak 0\.1 GiB/);
    expect(res.stdout).toMatch(/\npredict +\[#+\] +(\d+)\/\1 +100%/); // predict is a stage of its own, not a frozen train bar
    expect(res.stdout).toMatch(new RegExp(`run ${runId}: completed`));
    expect(res.stdout).toMatch(/split +behavior macro-F1 \[95% CI\] +accuracy \[95% CI\]\ntest +\d+\.\d \[\d+\.\d, \d+\.\d\] +\d+\.\d \[/);
    const final = JSON.parse((await bsft(['watch', runId, '--json'], { env })).stdout);
    expect(final).toMatchObject({ run_id: runId, outcome: 'completed', view: { state: 'completed' }, scores: { test: { macro_f1: expect.any(Object) } } });
  });
});

describe('Redis connection and secrets', () => {
  it('producers fail fast with a clear message when Redis is unreachable, without printing the password', async () => {
    const started = Date.now();
    const res = await bsft(['status'], { env: { REDIS_URL: 'redis://:s3cret-pass@127.0.0.1:1' } });
    expect(Date.now() - started).toBeLessThan(8000);
    expect(res.code).toBe(1);
    expect(res.stderr).toMatch(/cannot reach Redis at 127\.0\.0\.1:1 \(password hidden\)/);
    expect(res.stderr).not.toContain('s3cret-pass');
  });

  it('no secret ever enters job data, job logs or worker logs', async () => {
    const secret = 'hf_SECRETtokenABCDEFGHIJKLMNOPQRSTUV';
    const envDump = path.join(mkdtempSync(path.join(tmpdir(), 'bsft-env-')), 'env.json');
    const env = queueEnv({ HF_TOKEN: secret, BSFT_JUDGE_API_KEY: 'sk-judge-secret', FIXTURE_ENV_DUMP: envDump });
    const { runId } = await submitRun(env);
    const w = worker('ok', env);
    await waitForRun(env, runId, (v) => v.state === 'completed');
    const dump = await withRunQueues(env, async (q) => {
      const keys = await q.connection.keys(`${env.BSFT_QUEUE_PREFIX}:*`);
      const parts: string[] = [];
      for (const k of keys) {
        const type = await q.connection.type(k);
        if (type === 'hash') parts.push(JSON.stringify(await q.connection.hgetall(k)));
        else if (type === 'list') parts.push(JSON.stringify(await q.connection.lrange(k, 0, -1)));
        else if (type === 'string') parts.push(String(await q.connection.get(k)));
        else if (type === 'zset') parts.push(JSON.stringify(await q.connection.zrange(k, 0, -1)));
        else if (type === 'stream') parts.push(JSON.stringify(await q.connection.xrange(k, '-', '+')));
      }
      return parts.join('\n');
    });
    expect(dump).toContain(runId);
    expect(dump).not.toContain(secret);
    expect(w.stderr.join('\n')).not.toContain(secret);
    // The trainer gets the Hub token it uses, never the judge's key nor the queue's Redis URL (with its password).
    const given = JSON.parse(readFileSync(envDump, 'utf8')) as string[];
    expect(given).toContain('HF_TOKEN');
    expect(given).not.toContain('BSFT_JUDGE_API_KEY');
    expect(given).not.toContain('REDIS_URL');
  });
});

describe('submit without Redis', () => {
  it('exits 1 naming REDIS_URL', async () => {
    const res = await bsft(['submit', 'recipes/smoke.yaml'], { env: { REDIS_URL: 'redis://127.0.0.1:1' } });
    expect(res.code).toBe(1);
    expect(res.stderr).toContain('set REDIS_URL=');
    expect(readFileSync).toBeTypeOf('function');
  });
});

describe('bsft dashboard', () => {
  /** `bsft dashboard --port 0` in a subprocess; resolves to its URL. */
  async function dashboard(env: Record<string, string>, args: string[] = []) {
    const { spawn } = await import('node:child_process');
    const { BSFT, ROOT } = await import('./helpers/cli.js');
    const proc = spawn(process.execPath, [BSFT, 'dashboard', '--port', '0', ...args], { cwd: ROOT, env: { ...process.env, ...env }, stdio: ['ignore', 'pipe', 'pipe'] });
    const url = await new Promise<string>((resolve, reject) => {
      proc.stdout!.on('data', (d: Buffer) => {
        const m = /(http:\/\/127\.0\.0\.1:\d+\/)/.exec(d.toString());
        if (m) resolve(m[1]!);
      });
      proc.once('exit', (c) => reject(new Error(`dashboard exited ${c}`)));
    });
    return { url, stop: () => proc.kill('SIGTERM') };
  }

  it('Bull Board in headless Chromium: queues in pipeline order, a live progress bar, read-only, a cancelled run says so', async () => {
    const env = queueEnv({ FIXTURE_STEP_MS: '150' });
    const { runId } = await submitRun(env, ['train.max_steps=400', 'train.checkpoint_every=50']);
    const w = worker('ok', env);
    await waitForRun(env, runId, (v) => trainStep(v) >= 5, 60_000);
    // bsft status: the stage as a bar, with loss, tok/s, the ETA from the recent rate and the trainer's memory in use (and its peak).
    const status = await bsft(['status'], { env });
    expect(status.stdout).toMatch(new RegExp(`${runId}\\s+training\\s+train\\s+\\[[#-]{10}\\]\\s+\\d+%\\s+\\d+/400\\s+\\d\\.\\d{4}\\s+1,000\\s+(\\d+m)?\\d+s\\s+0\\.0 \\(0\\.1 GiB\\)\\s`));
    // The worker's own output, not a terminal here: sparse progress records naming the run and the stage.
    const records = w.stderr.filter((l) => l.includes('"msg":"progress"')).map((l) => JSON.parse(l));
    expect(records[0]).toMatchObject({ stage: `${runId} train`, total: 400, run_id: runId });
    const board = await dashboard(env);
    const { page, errors, close } = await openPage(`${board.url}queue/bsft-train?status=active`);
    try {
      // The menu lists the three queues in the order a run goes through them.
      await page.getByText('bsft-score', { exact: true }).first().waitFor({ timeout: limit(20_000) });
      const menu = await page.getByText(/^bsft-(build|train|score)$/).allTextContents();
      expect(menu).toEqual(['bsft-build', 'bsft-train', 'bsft-score']);
      await page.getByText('2 train', { exact: true }).waitFor(); // the queue's title: its place in the pipeline
      // The active train job draws a bar from its numeric progress.
      const bar = page.locator('[role="progressbar"]').first();
      await bar.waitFor({ timeout: limit(20_000) });
      expect(Number(await bar.getAttribute('aria-valuenow'))).toBeGreaterThan(0);
      // Read-only by default: no buttons that retry, clean or delete jobs.
      expect(await page.getByRole('button', { name: /^(retry|clean|delete|promote|remove)/i }).count()).toBe(0);
      const api = await (await fetch(`${board.url}api/queues?activeQueue=bsft-train&status=active&page=1`)).json() as { queues: { name: string; readOnlyMode: boolean }[] };
      expect(api.queues.map((q) => q.readOnlyMode)).toEqual([true, true, true]);
      await page.screenshot({ path: path.join(tmpdir(), `bsft-dashboard-${runId}.png`), fullPage: true });

      // A cancelled run: the failed list shows why, in the list itself.
      expect((await bsft(['cancel', runId], { env })).code).toBe(0);
      await page.goto(`${board.url}queue/bsft-train?status=failed`);
      await page.getByText(/cancelled by bsft cancel/).first().waitFor({ timeout: limit(20_000) });
      // in the user's words: no error class, no stack trace, and not the internal priority of a run without one
      expect(await page.getByText(/UnrecoverableError|at \S+\.js:\d+/).count()).toBe(0);
      expect(await page.getByText(/2097151/).count()).toBe(0);
      const failed = await (await fetch(`${board.url}api/queues?activeQueue=bsft-train&status=failed&page=1`)).json() as { queues: { name: string; jobs: { id: string; failedReason: string; stacktrace: string[]; priority?: number; opts: Record<string, unknown> }[] }[] };
      const job = failed.queues.find((q) => q.name === 'bsft-train')!.jobs.find((j) => j.id === runId)!;
      expect(job).toMatchObject({ failedReason: 'cancelled by bsft cancel', stacktrace: [] });
      expect(job.priority).toBeUndefined();
      expect(job.opts.priority).toBeUndefined();
      expect(errors).toEqual([]);
    } finally {
      await close();
      board.stop();
    }
  }, limit(150_000));

  it('--allow-actions turns the actions on', async () => {
    const env = queueEnv();
    await submitRun(env);
    const board = await dashboard(env, ['--allow-actions']);
    try {
      const api = await (await fetch(`${board.url}api/queues?activeQueue=bsft-build&status=latest&page=1`)).json() as { queues: { readOnlyMode: boolean; allowRetries: boolean }[] };
      expect(api.queues.map((q) => [q.readOnlyMode, q.allowRetries])).toEqual([[false, true], [false, true], [false, true]]);
    } finally {
      board.stop();
    }
  }, limit(60_000));
});
