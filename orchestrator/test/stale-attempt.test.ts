import { mkdirSync, mkdtempSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import path from 'node:path';
import { Queue } from 'bullmq';
import { Redis } from 'ioredis';
import { pino } from 'pino';
import { describe, expect, it } from 'vitest';
import { resolveRecipe } from '../src/recipe/resolve.js';
import { openStore } from '../src/store/store.js';
import { OffloadPool } from '../src/worker/offload.js';
import { QueueHost } from '../src/worker/queue-host.js';
import { ROOT } from './helpers/cli.js';
import { REDIS_URL } from './helpers/queue.js';

describe("a stale attempt's trainer (a newer attempt owns the run)", () => {
  it("its error goes to its worker's log, not to the job's log, which is the newer attempt's", async () => {
    const dir = mkdtempSync(path.join(tmpdir(), 'bsft-stale-'));
    // A trainer that finds a newer epoch, as fence.py's Fenced error does: an error event, then exit 76.
    const trainer = path.join(dir, 'stale-trainer.mjs');
    writeFileSync(trainer, `process.stdout.write(JSON.stringify({ event: 'error', kind: 'internal', message: 'attempt epoch 1 is stale: epoch 2 owns this run now; stopping without writing' }) + '\\n');\nprocess.exit(76);\n`);
    const runs = path.join(dir, 'runs');
    const recipe = resolveRecipe(path.join(ROOT, 'recipes', 'smoke.yaml'), { policy: { workspace: ROOT, allow: [runs] }, set: [`store.path=${runs}`] });
    const runDir = path.join(runs, recipe.run_id);
    mkdirSync(runDir, { recursive: true });
    writeFileSync(path.join(runDir, 'train.json'), '{}');
    const connection = new Redis(REDIS_URL, { maxRetriesPerRequest: null });
    const queue = new Queue(`bsft-stale-${process.pid}-${Date.now()}`, { connection });
    const lines: string[] = [];
    const log = pino({ level: 'info' }, { write: (l: string) => lines.push(l) });
    const offload = new OffloadPool(0);
    try {
      const job = await queue.add('train', { run_id: recipe.run_id } as never, { jobId: recipe.run_id });
      const host = new QueueHost(job as never, {
        log, store: await openStore(recipe), trainer: [process.execPath, trainer], silenceMs: 60_000, onActive: () => undefined,
        shuttingDown: () => false, ownsRun: async () => false, offload, epoch: 1,
      });
      const ctx = { recipe, runDir, log, signal: new AbortController().signal, host };
      const res = await host.trainer(ctx, 'predict', path.join(runDir, 'train.json'), []);
      expect(res.outcome).toBe('lease-lost');
      const { logs } = await queue.getJobLogs(job.id!);
      expect(logs.join('\n')).not.toMatch(/"event":"error"/);
      expect(lines.join('')).toMatch(/a stale attempt's trainer error, kept out of the job's log/);
    } finally {
      offload.close();
      await queue.obliterate({ force: true });
      await queue.close();
      connection.disconnect();
    }
  });
});
