import { rmSync } from 'node:fs';
import path from 'node:path';
import { createInterface } from 'node:readline/promises';
import { UsageError } from '../errors.js';
import { producerConnection } from '../queue/connection.js';
import { RunQueues } from '../queue/runs.js';
import { describeRun, processesUsing, type LocalRun } from '../run/local-runs.js';
import { findRunDir } from '../run/run-dir.js';
import { formatBytes } from '../util/format-bytes.js';
import { EXIT, type CommandImpl } from './command.js';

const ENDED = ['completed', 'failed', 'cancelled'];

/** Why a run folder must stay: a live process of this machine works in it, or its queued job has not ended. */
async function inUse(run: LocalRun, queue: RunQueues | undefined): Promise<string | undefined> {
  const procs = processesUsing(run.dir);
  if (procs.length) return `in use by ${procs.map((p) => `pid ${p.pid} (${p.command})`).join(', ')}`;
  const view = queue ? await queue.view(run.run_id) : undefined;
  if (view && !ENDED.includes(view.state)) return `its queued job is ${view.state} (bsft cancel ${run.run_id} first)`;
  return undefined;
}

/** `bsft rm <run…>`: removes run folders (asks first unless --yes), never one that a process or a queued job uses. */
export const rm: CommandImpl = {
  async run(args, values, { out }) {
    const runsDir = path.resolve((values.dir as string | undefined) ?? 'runs');
    const targets = args.map((a) => {
      const run = describeRun(findRunDir(a, runsDir));
      if (!run) throw new UsageError(`${a}: not a run folder`);
      return run;
    });
    // The queue is asked where it answers; without Redis, local runs are still removed (and we say so).
    let redis: Awaited<ReturnType<typeof producerConnection>> | undefined;
    try {
      redis = await producerConnection(undefined, 1500);
    } catch {
      out('queue not checked: Redis does not answer (a run queued elsewhere may still use its folder)');
    }
    const queue = redis ? new RunQueues(redis) : undefined;
    try {
      const refused: string[] = [];
      const removable: LocalRun[] = [];
      for (const run of targets) {
        const why = await inUse(run, queue);
        if (why) refused.push(`${run.run_id}: not removed, ${why}`);
        else removable.push(run);
      }
      for (const line of refused) out(line);
      if (!removable.length) return refused.length ? EXIT.failure : EXIT.ok;
      const total = removable.reduce((a, r) => a + r.bytes, 0);
      for (const r of removable) out(`${r.run_id}  ${r.progress}  ${formatBytes(r.bytes)}  ${r.dir}`);
      if (values.yes !== true) {
        if (!process.stdin.isTTY) throw new UsageError('not a terminal: add --yes to remove without asking');
        const rl = createInterface({ input: process.stdin, output: process.stdout });
        const answer = await rl.question(`remove ${removable.length} run folder(s), ${formatBytes(total)}? [y/N] `);
        rl.close();
        if (!/^y(es)?$/i.test(answer.trim())) {
          out('nothing removed');
          return EXIT.failure;
        }
      }
      for (const r of removable) rmSync(r.dir, { recursive: true, force: true });
      out(`removed ${removable.length} run folder(s), freed ${formatBytes(total)}`);
      return refused.length ? EXIT.failure : EXIT.ok;
    } finally {
      await queue?.close();
      redis?.disconnect();
    }
  },
};
