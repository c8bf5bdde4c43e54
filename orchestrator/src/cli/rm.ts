import { existsSync, rmSync } from 'node:fs';
import path from 'node:path';
import { createInterface } from 'node:readline/promises';
import { RunNotFoundError, UsageError } from '../errors.js';
import { producerConnection } from '../queue/connection.js';
import { ENDED_STATES, RunQueues, type RunView } from '../queue/runs.js';
import { describeRun, processesUsing, type LocalRun } from '../run/local-runs.js';
import { findRunDir } from '../run/run-dir.js';
import { findQueuedSweep, forgetQueuedSweep, readSweep, sweepFile } from '../sweep/sweep-files.js';
import { formatBytes } from '../util/format-bytes.js';
import { EXIT, type CommandImpl } from './command.js';

/** What `bsft rm` was given: a local run folder, a run in the queue, or both. */
interface Target {
  runId: string;
  run?: LocalRun;
  queued?: RunView;
}

/** Why a run must stay: a live process of this machine works in its folder, or its queued job has not ended. */
function inUse(t: Target): string | undefined {
  const procs = t.run ? processesUsing(t.run.dir) : [];
  if (procs.length) return `in use by ${procs.map((p) => `pid ${p.pid} (${p.command})`).join(', ')}`;
  if (t.queued && !ENDED_STATES.includes(t.queued.state)) return `its queued job is ${t.queued.state} (bsft cancel ${t.runId} first)`;
  return undefined;
}

/**
 * `bsft rm <run…>`: removes run folders and the ended runs' jobs in the queue (a cancelled or failed run's later
 * stages wait there for `bsft retry`; once removed, the same run can be submitted afresh). Asks first unless --yes;
 * never touches a run that a process or a worker is working on.
 */
export const rm: CommandImpl = {
  async run(given, values, { out }) {
    const runsDir = path.resolve((values.dir as string | undefined) ?? 'runs');
    const sweepName = values.sweep as string | undefined;
    if (!given.length === !sweepName) throw new UsageError('name the runs to remove, or --sweep NAME (its points and its record)');
    // The queue is asked where it answers; without Redis, local runs are still removed (and we say so).
    let redis: Awaited<ReturnType<typeof producerConnection>> | undefined;
    try {
      redis = await producerConnection(undefined, 1500);
    } catch {
      out('queue not checked: Redis does not answer (a run queued elsewhere may still use its folder)');
    }
    const queue = redis ? new RunQueues(redis) : undefined;
    try {
      // A sweep's points: its record here, else the queue's.
      const local = sweepName && (existsSync(sweepFile(runsDir, sweepName)) || !redis);
      const sweep = !sweepName ? undefined : local ? readSweep(runsDir, sweepName) : await findQueuedSweep(redis!, sweepName);
      const args = sweep ? sweep.points.map((p) => p.run_id).filter((id) => existsSync(path.join(runsDir, id))) : given;
      if (sweep && queue) for (const p of sweep.points) if (!args.includes(p.run_id) && (await queue.view(p.run_id))) args.push(p.run_id);
      const targets: Target[] = [];
      for (const a of args) {
        let run: LocalRun | undefined;
        try {
          run = describeRun(findRunDir(a, runsDir));
        } catch (e) {
          if (!(e instanceof RunNotFoundError)) throw e;
        }
        const runId = run?.run_id ?? a;
        const queued = queue ? await queue.view(runId) : undefined;
        if (!run && !queued) throw new UsageError(`${a}: not a run folder${queue ? ', nor a run in the queue' : ''}`);
        targets.push({ runId, ...(run ? { run } : {}), ...(queued ? { queued } : {}) });
      }
      const refused: string[] = [];
      const removable: Target[] = [];
      for (const t of targets) {
        const why = inUse(t);
        if (why) refused.push(`${t.runId}: not removed, ${why}`);
        else removable.push(t);
      }
      for (const line of refused) out(line);
      /** The sweep's record goes once none of its points is left behind. */
      const forgetSweep = async () => {
        if (!sweep || refused.length) return;
        rmSync(sweepFile(runsDir, sweep.name), { force: true });
        if (redis) await forgetQueuedSweep(redis, sweep.name);
        out(`sweep ${sweep.name}: record removed`);
      };
      if (!removable.length) {
        await forgetSweep();
        return refused.length ? EXIT.failure : EXIT.ok;
      }
      const folders = removable.filter((t) => t.run).map((t) => t.run!);
      const queued = removable.filter((t) => t.queued);
      const total = folders.reduce((a, r) => a + r.bytes, 0);
      for (const t of removable) {
        const where = t.run ? `${t.run.progress}  ${formatBytes(t.run.bytes)}  ${t.run.dir}` : 'no local folder';
        out(`${t.runId}  ${where}${t.queued ? `  (queued: ${t.queued.state})` : ''}`);
      }
      if (values.yes !== true) {
        if (!process.stdin.isTTY) throw new UsageError('not a terminal: add --yes to remove without asking');
        const what = [
          ...(folders.length ? [`${folders.length} run folder(s), ${formatBytes(total)}`] : []),
          ...(queued.length ? [`the queued jobs of ${queued.length} run(s)`] : []),
        ].join(' and ');
        const rl = createInterface({ input: process.stdin, output: process.stdout });
        const answer = await rl.question(`remove ${what}? [y/N] `);
        rl.close();
        if (!/^y(es)?$/i.test(answer.trim())) {
          out('nothing removed');
          return EXIT.failure;
        }
      }
      for (const r of folders) rmSync(r.dir, { recursive: true, force: true });
      if (folders.length) out(`removed ${folders.length} run folder(s), freed ${formatBytes(total)}`);
      for (const t of queued) {
        const stages = await queue!.remove(t.runId);
        out(`${t.runId}: removed its queued jobs (${stages.join(', ')}); submitting it again starts it afresh`);
      }
      await forgetSweep();
      return refused.length ? EXIT.failure : EXIT.ok;
    } finally {
      await queue?.close();
      redis?.disconnect();
    }
  },
};
