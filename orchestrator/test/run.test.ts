import { createHash } from 'node:crypto';
import { existsSync, mkdtempSync, readFileSync, readdirSync, statSync } from 'node:fs';
import { tmpdir } from 'node:os';
import path from 'node:path';
import { execFileSync } from 'node:child_process';
import { describe, expect, it } from 'vitest';
import { bsft, FIXTURES, ROOT } from './helpers/cli.js';
import { pythonThatRuns, torchPython } from './helpers/python.js';
import { queueEnv, startWorkerProc, stop, waitForRun } from './helpers/queue.js';
import { limit } from './helpers/time-scale.js';

const py = torchPython();
const TOY = path.join(FIXTURES, 'recipes', 'toy-run.yaml');

/** A Python whose torch has FSDP2 (sharded training on several ranks); not Debian's torch 1.13. */
const shardedPy = pythonThatRuns('from torch.distributed.fsdp import fully_shard');

/**
 * One pipeline: submits the recipe a `bsft run` ran into `local` (same args, other store path) to the queue, drains
 * it with a worker running the real trainer, and expects the same run folder: every file equal by content except
 * run.json's times and the run path inside recipe.json and train.json, and the same step records.
 */
async function expectQueuedRunLike(local: string, runId: string, args: (runs: string) => string[], env: Record<string, string>): Promise<void> {
  const queued = mkdtempSync(path.join(tmpdir(), 'bsft-queued-'));
  const qenv = { ...queueEnv(), ...env };
  const sub = await bsft(['submit', ...args(queued)], { env: qenv });
  expect(sub.stdout).toContain(`submitted run ${runId}`);
  const worker = startWorkerProc('', qenv);
  try {
    await worker.ready;
    const done = await waitForRun(qenv, runId, (v) => ['completed', 'failed'].includes(v.state), 240_000);
    expect(done.state, JSON.stringify(done)).toBe('completed');
  } finally {
    await stop(worker, 'SIGKILL');
  }
  const tree = (dir: string) => {
    const out: Record<string, string> = {};
    const walk = (rel: string) => {
      for (const name of readdirSync(path.join(dir, rel)).sort()) {
        const r = rel ? `${rel}/${name}` : name;
        if (statSync(path.join(dir, r)).isDirectory()) walk(r);
        else if (r === 'run.json') out[r] = '(times)';
        else if (r === 'recipe.json' || r === 'train.json') out[r] = readFileSync(path.join(dir, r), 'utf8').replaceAll(path.dirname(dir), '<runs>');
        else if (r.endsWith('/COMPLETE') && r.startsWith('checkpoints/')) {
          // a checkpoint's copy of the history differs in its times: compare its other files' hashes
          const c = JSON.parse(readFileSync(path.join(dir, r), 'utf8'));
          out[r] = JSON.stringify({ ...c, files: { ...c.files, 'metrics.jsonl': c.files['metrics.jsonl'] ? '(history)' : undefined } });
        }
        else if (r === 'predictions/predict.json') {
          // the engine and what it made; its seconds and tokens/s are the machine's
          const rec = JSON.parse(readFileSync(path.join(dir, r), 'utf8')) as Record<string, Record<string, unknown>>;
          out[r] = JSON.stringify(Object.fromEntries(Object.entries(rec).map(([f, { seconds: _s, tokens_per_s: _t, ...rest }]) => [f, rest])));
        }
        else if (r === 'predictions/COMPLETE') {
          const c = JSON.parse(readFileSync(path.join(dir, r), 'utf8'));
          out[r] = JSON.stringify({ ...c, files: { ...c.files, 'predict.json': '(times)' } });
        }
        else if (r.endsWith('metrics.jsonl')) {
          // the same steps and values; times, rates and memory are the machine's
          const lines = readFileSync(path.join(dir, r), 'utf8').trim().split('\n').map((l) => JSON.parse(l));
          out[r] = JSON.stringify(lines.map(({ kind, step, loss, lr, grad_norm }) => ({ kind, step, loss, lr, grad_norm })));
        }
        else out[r] = createHash('sha256').update(readFileSync(path.join(dir, r))).digest('hex');
      }
    };
    walk('');
    return out;
  };
  const a = tree(path.join(local, runId));
  const b = tree(path.join(queued, runId));
  expect(Object.keys(a)).toContain('metrics.jsonl');
  expect(Object.keys(b)).toEqual(Object.keys(a));
  expect(Object.keys(a).filter((k) => a[k] !== b[k])).toEqual([]);
  const steps = (dir: string) => JSON.parse(readFileSync(path.join(dir, runId, 'run.json'), 'utf8')).steps.map((s: { step: string; state: string }) => `${s.step}:${s.state}`);
  expect(steps(queued)).toEqual(steps(local));
  expect(existsSync(path.join(queued, runId, 'final', 'README.md'))).toBe(true); // the model card, as bsft run writes it
}

describe.skipIf(!shardedPy)('bsft run on two ranks (resources.gpus: 2; torchrun and gloo on the CPU)', () => {
  it('trains sharded, writes sharded checkpoints and a consolidated final model, and predicts from it', async () => {
    const runs = mkdtempSync(path.join(tmpdir(), 'bsft-ranks-'));
    const env = { BSFT_PYTHON: shardedPy!, BSFT_LOG_LEVEL: 'info' };
    const res = await bsft(['run', TOY, '--allow', runs, '--set', `store.path=${runs}`, '--set', 'resources.gpus=2'], { env });
    expect(res.code, res.stderr).toBe(0);
    const logs = res.stderr.split('\n').filter((l) => l.startsWith('{')).map((l) => JSON.parse(l));
    expect(logs.find((l) => l.event === 'start')).toMatchObject({ total_steps: 3, world_size: 2 });
    expect(logs.filter((l) => l.event === 'step').map((l) => l.step)).toEqual([1, 2, 3]);
    const runDir = path.join(runs, readdirSync(runs)[0]!);
    const newest = path.join(runDir, 'checkpoints', 'step-000003');
    expect(JSON.parse(readFileSync(path.join(newest, 'COMPLETE'), 'utf8'))).toMatchObject({ world_size: 2, format: 'dcp' });
    expect(readdirSync(path.join(newest, 'dcp')).sort()).toEqual(['.metadata', '__0_0.distcp', '__1_0.distcp']);
    expect(readdirSync(path.join(runDir, 'final'))).toContain('toy_model.pt');
    const predictions = readFileSync(path.join(runDir, 'predictions', 'test.jsonl'), 'utf8').trim().split('\n');
    const manifest = JSON.parse(readFileSync(path.join(runDir, 'dataset', 'manifest.json'), 'utf8'));
    expect(predictions.length).toBe(manifest.documents.test.length);
    expect(res.stdout).toMatch(/behavior macro-F1/);
  }, limit(300_000));
});

describe.skipIf(!py)('bsft run with the real trainer on the bsft-toy model (CPU)', () => {
  it('runs build -> train -> predict -> score, and a second run skips the steps already done', async () => {
    const runs = mkdtempSync(path.join(tmpdir(), 'bsft-e2e-'));
    const env = { BSFT_PYTHON: py!, BSFT_LOG_LEVEL: 'info' };
    const args = ['run', TOY, '--allow', runs, '--set', `store.path=${runs}`, '--set', 'eval.force=[proactive]'];
    const first = await bsft(args, { env });
    const runDir = path.join(runs, readdirSync(runs)[0]!);
    const logs = first.stderr.split('\n').filter((l) => l.startsWith('{')).map((l) => JSON.parse(l));
    expect(logs.filter((l) => l.event === 'step').map((l) => l.step)).toEqual([1, 2, 3]);
    expect(logs.find((l) => l.event === 'start')).toMatchObject({ total_steps: 3, resumed_from_step: 0 });
    expect(existsSync(path.join(runDir, 'final', 'COMPLETE'))).toBe(true);
    const predictions = readFileSync(path.join(runDir, 'predictions', 'test.jsonl'), 'utf8').trim().split('\n').map((l) => JSON.parse(l));
    const manifest = JSON.parse(readFileSync(path.join(runDir, 'dataset', 'manifest.json'), 'utf8'));
    expect(predictions.map((p) => p.id)).toEqual(manifest.documents.test);
    const status = JSON.parse(readFileSync(path.join(runDir, 'run.json'), 'utf8'));
    expect(status.steps.map((s: { step: string; state: string }) => `${s.step}:${s.state}`)).toEqual(['build:done', 'train:done', 'predict:done', 'judge:skipped', 'score:done']); // no judge section: nothing to judge
    expect(first.code).toBe(0);
    expect(first.stdout).toMatch(/run toy-run-[0-9a-f]{8}: finished/);
    // The score table is command output (stdout), with the majority baseline of the same split beside the result.
    expect(first.stdout).toMatch(/behavior macro-F1 \d+\.\d \[[\d.]+, [\d.]+\] +accuracy/);
    expect(first.stdout).toMatch(/majority baseline \(always (reactive|proactive|restraint)\): macro-F1 \d+\.\d +accuracy \d+\.\d +-> (\d+\.\d points above it|not above it)/);
    expect(first.stderr).not.toMatch(/behavior macro-F1/);
    const scored = JSON.parse(readFileSync(path.join(runDir, 'score', 'test.json'), 'utf8'));
    expect(scored.n_tasks).toBe(manifest.documents.test.length);
    // Forced-token (steering) predictions, as the queued train job makes them too.
    const forced = readFileSync(path.join(runDir, 'predictions', 'test.forced-proactive.jsonl'), 'utf8').trim().split('\n').map((l) => JSON.parse(l));
    expect(forced.every((p) => p.forced === true && p.predicted_behavior === 'proactive')).toBe(true);
    expect(scored.forced.proactive.n).toBe(manifest.documents.test.length);

    // The same recipe through the queue (bsft submit + bsft worker, the real trainer) ends with the same folder.
    await expectQueuedRunLike(runs, path.basename(runDir), (dir) => [TOY, '--allow', dir, '--set', `store.path=${dir}`, '--set', 'eval.force=[proactive]'], env);

    const second = await bsft(args, { env });
    const again = JSON.parse(readFileSync(path.join(runDir, 'run.json'), 'utf8'));
    // Every step, the build included, is reported as skipped (not "build done") when its output is up to date.
    expect(again.steps.map((s: { state: string }) => s.state)).toEqual(['skipped', 'skipped', 'skipped', 'skipped', 'skipped']);
    expect(second.stdout).toMatch(/build +skipped/);
    expect(second.code).toBe(0);
    expect(second.stderr).not.toContain('"event":"step"');

    // Per-run settings keep the run id and the training; the steps that depend on them run again.
    const states = async (set: string[]) => {
      const res = await bsft([...args, ...set.flatMap((s) => ['--set', s])], { env });
      expect(res.code, res.stderr).toBe(0);
      expect(readdirSync(runs)).toEqual([path.basename(runDir)]);
      return JSON.parse(readFileSync(path.join(runDir, 'run.json'), 'utf8')).steps.map((s: { step: string; state: string }) => `${s.step}:${s.state}`);
    };
    expect(await states(['eval.bootstrap=50'])).toEqual(['build:skipped', 'train:skipped', 'predict:skipped', 'judge:skipped', 'score:done']);
    expect(JSON.parse(readFileSync(path.join(runDir, 'score', 'settings.json'), 'utf8')).bootstrap).toBe(50);
    expect(await states(['eval.bootstrap=50', 'eval.max_new_tokens=3'])).toEqual(['build:skipped', 'train:skipped', 'predict:done', 'judge:skipped', 'score:done']);

    // bsft predict makes a run's predictions again on request (what bsft score asks for when they are missing).
    const predicted = await bsft(['predict', runDir], { env });
    expect(predicted.code, predicted.stderr).toBe(0);
    expect(predicted.stdout).toContain(`wrote ${path.relative(ROOT, path.join(runDir, 'predictions', 'test.forced-proactive.jsonl'))}`);
    expect(predicted.stdout).toContain(`score them with: bsft score ${runDir}`);
  }, limit(500_000));

  it('shards written by the orchestrator read back in the trainer: same documents, labels from the loss mask', async () => {
    const runs = mkdtempSync(path.join(tmpdir(), 'bsft-shard-'));
    const res = await bsft(['dataset', 'build', 'recipes/smoke.yaml', '--allow', runs, '--set', `store.path=${runs}`]);
    expect(res.code).toBe(0);
    const dir = path.join(runs, readdirSync(runs)[0]!, 'dataset');
    const script = [
      'import json, sys',
      'from bsft_trainer.data.shards import Shard',
      'from bsft_trainer.training.packing import make_batch, IGNORE',
      'm = json.load(open(sys.argv[1] + "/manifest.json"))',
      'out = {}',
      'for split in ("train", "val", "test"):',
      '    s = Shard(sys.argv[1] + f"/{split}.tokens.safetensors")',
      '    b = make_batch(s, list(range(len(s))))',
      '    first = [int(s.doc(d)[1].argmax()) for d in range(len(s))]',
      '    starts = [int(s.doc(d)[0][f]) for d, f in enumerate(first)]',
      '    out[split] = {"docs": len(s), "tokens": b.n_tokens, "loss": b.n_loss_tokens, "first_reply_tokens": sorted(set(starts))}',
      'print(json.dumps(out))',
    ].join('\n');
    const out = JSON.parse(execFileSync(py!, ['-c', script, dir], { env: { ...process.env, PYTHONPATH: path.join(ROOT, 'trainer-python', 'src') } }).toString());
    const manifest = JSON.parse(readFileSync(path.join(dir, 'manifest.json'), 'utf8'));
    for (const split of ['train', 'val', 'test']) {
      expect(out[split].docs).toBe(manifest.documents[split].length);
      expect(out[split].tokens).toBe(manifest.lengths[split].tokens);
      // each document's first predicted token is its behavior token; the trainer predicts every loss token but the first
      expect(out[split].loss).toBe(manifest.lengths[split].loss_tokens);
      expect(out[split].first_reply_tokens).toEqual([151665, 151666, 151667]);
    }
  });
});
