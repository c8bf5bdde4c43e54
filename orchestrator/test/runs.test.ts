import { spawn } from 'node:child_process';
import { existsSync, mkdirSync, mkdtempSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import path from 'node:path';
import { describe, expect, it, onTestFinished } from 'vitest';
import { bsft } from './helpers/cli.js';
import { queueEnv, submitRun } from './helpers/queue.js';

/** Issue 32: `bsft runs` lists local run folders without Redis; `bsft rm` removes them, never one in use. */

const resolved = async () => JSON.parse((await bsft(['show', 'recipes/smoke.yaml', '--json'])).stdout);

/** A run folder as the steps leave it, up to `stage`. */
async function runFolder(runs: string, runId: string, stage: 'built' | 'stopped' | 'ctrl-c' | 'scored'): Promise<string> {
  const dir = path.join(runs, runId);
  mkdirSync(path.join(dir, 'dataset'), { recursive: true });
  writeFileSync(path.join(dir, 'recipe.json'), JSON.stringify({ ...(await resolved()), run_id: runId, name: runId.split('-')[0] }));
  writeFileSync(path.join(dir, 'dataset', 'manifest.json'), '{}');
  writeFileSync(path.join(dir, 'dataset', 'train.safetensors'), Buffer.alloc(3 * 1024 * 1024));
  if (stage === 'stopped') {
    mkdirSync(path.join(dir, 'checkpoints', 'step-000040'), { recursive: true });
    writeFileSync(path.join(dir, 'checkpoints', 'step-000040', 'COMPLETE'), '{}');
    writeFileSync(path.join(dir, 'metrics.jsonl'), [41, 42].map((step) => JSON.stringify({ kind: 'step', step, loss: 1, lr: 1e-4 })).join('\n') + '\n');
    writeFileSync(path.join(dir, 'run.json'), JSON.stringify({ steps: [{ step: 'build', state: 'done' }, { step: 'train', state: 'failed', message: 'interrupted\nmore' }] }));
  }
  if (stage === 'ctrl-c') { // bsft run stopped by its user during train: an empty predictions/ is not a prediction
    mkdirSync(path.join(dir, 'checkpoints', 'step-000056'), { recursive: true });
    writeFileSync(path.join(dir, 'checkpoints', 'step-000056', 'COMPLETE'), '{}');
    mkdirSync(path.join(dir, 'predictions'));
    writeFileSync(path.join(dir, 'run.json'), JSON.stringify({ steps: [{ step: 'build', state: 'done' }, { step: 'train', state: 'stopped', message: 'stopped by Ctrl-C' }] }));
  }
  if (stage === 'scored') {
    mkdirSync(path.join(dir, 'score'), { recursive: true });
    writeFileSync(path.join(dir, 'score', 'test.json'), JSON.stringify({ overall: { macro_f1: { value: 0.919 }, accuracy: { value: 0.95 } } }));
  }
  return dir;
}

describe('bsft runs and bsft rm', () => {
  it('runs lists each run folder with how far it got, its macro-F1 and size; --json', async () => {
    const runs = mkdtempSync(path.join(tmpdir(), 'bsft-runs-'));
    await runFolder(runs, 'a-11111111', 'built');
    await runFolder(runs, 'b-22222222', 'stopped');
    await runFolder(runs, 'c-33333333', 'scored');
    await runFolder(runs, 'd-44444444', 'ctrl-c');
    mkdirSync(path.join(runs, '_datasets')); // shared builds are not runs
    const res = await bsft(['runs', '--dir', runs], { env: { REDIS_URL: 'redis://127.0.0.1:1' } }); // no Redis needed
    expect(res.code, res.stderr).toBe(0);
    expect(res.stdout).toMatch(/run +method +conditioning +progress +macro-F1 +size +changed \(UTC\) +reason/);
    expect(res.stdout).toMatch(/a-11111111 +full +token +built +- +3\.0 MiB/);
    expect(res.stdout).toMatch(/b-22222222 +full +token +stopped at train \(trained 42 of \d+ steps \(checkpoint 40\)\) +- +3\.0 MiB .* interrupted$/m);
    expect(res.stdout).toMatch(/c-33333333 +full +token +scored +91\.9 +3\.0 MiB/);
    expect(res.stdout).toMatch(/d-44444444 +full +token +trained 56 of \d+ steps \(checkpoint 56\), stopped by Ctrl-C +- +3\.0 MiB +\S+ \S+ *$/m);
    expect(res.stdout).not.toContain('_datasets');
    const json = JSON.parse((await bsft(['runs', '--dir', runs, '--json'])).stdout);
    expect(json.map((r: { run_id: string }) => r.run_id).sort()).toEqual(['a-11111111', 'b-22222222', 'c-33333333', 'd-44444444']);
    expect(json.find((r: { run_id: string }) => r.run_id === 'c-33333333')).toMatchObject({ progress: 'scored', macro_f1: 0.919, bytes: expect.any(Number) });
  });

  it('rm asks (or takes --yes), says what it freed, and refuses a folder a process works in or a queued job uses', async () => {
    const runs = mkdtempSync(path.join(tmpdir(), 'bsft-rm-'));
    const env = queueEnv();
    const done = await runFolder(runs, 'done-44444444', 'scored');
    const busy = await runFolder(runs, 'busy-55555555', 'stopped');
    // A live process working in the folder (as a trainer does).
    const sleeper = spawn('sleep', ['60'], { cwd: busy, stdio: 'ignore' });
    onTestFinished(() => void sleeper.kill());
    // A queued job of a run whose folder is here too.
    const { runId: queued } = await submitRun(env);
    await runFolder(runs, queued, 'built');

    const noTty = await bsft(['rm', 'done-44444444', '--dir', runs], { env });
    expect(noTty.code).toBe(2);
    expect(noTty.stderr).toContain('add --yes');
    expect(existsSync(done)).toBe(true);

    const res = await bsft(['rm', 'done-44444444', 'busy-55555555', queued, '--dir', runs, '--yes'], { env });
    expect(res.stdout).toMatch(new RegExp(`busy-55555555: not removed, in use by pid ${sleeper.pid} \\(sleep 60\\)`));
    expect(res.stdout).toMatch(new RegExp(`${queued}: not removed, its queued job is waiting \\(bsft cancel ${queued} first\\)`));
    expect(res.stdout).toMatch(/removed 1 run folder\(s\), freed 3\.0 MiB/);
    expect(res.code).toBe(1); // some were refused
    expect(existsSync(done)).toBe(false);
    expect(existsSync(busy)).toBe(true);
    expect(existsSync(path.join(runs, queued))).toBe(true);

    // Without Redis: the local check still holds, and it says the queue was not checked.
    sleeper.kill();
    await new Promise((r) => sleeper.once('exit', r));
    const offline = await bsft(['rm', path.join(runs, 'busy-55555555'), '--yes'], { env: { REDIS_URL: 'redis://127.0.0.1:1' } });
    expect(offline.stdout).toContain('queue not checked: Redis does not answer');
    expect(offline.stdout).toMatch(/removed 1 run folder\(s\), freed 3\.0 MiB/);
    expect(offline.code).toBe(0);
  });
});
