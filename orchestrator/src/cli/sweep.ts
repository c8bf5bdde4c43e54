import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import path from 'node:path';
import { submitRun } from '../queue/submit.js';
import { prepareSweep } from '../sweep/prepare.js';
import { queuedSweep, sameSweep, saveQueuedSweep, sweepFile, writeSweep } from '../sweep/sweep-files.js';
import { pointRows, sweepTitle } from '../sweep/sweep-view.js';
import { shellQuote } from '../util/shell-quote.js';
import { EXIT, intOption, type CommandImpl } from './command.js';
import { withQueues } from './queue-args.js';
import { buildDatasets, dryRunPlan } from './run-plan.js';

const rel = (p: string) => path.relative(process.cwd(), p) || p;

export const sweep: CommandImpl = {
  async run([file], values, { log, out }) {
    const resolved = prepareSweep(file!, values);
    const { recipes } = resolved;
    let { record } = resolved;
    // One priority for every point: --priority, else the recipe's queue.priority.
    const priority = intOption(values, 'priority') ?? recipes[0]!.queue.priority;
    record.priority = priority;
    out(`sweep ${record.name}: ${sweepTitle(record)}; points compared on the validation split${resolved.dropped ? ` (${resolved.dropped} drawn twice, kept once)` : ''}`);
    if (values['dry-run']) {
      for (const l of pointRows(record)) out(`  ${l}`);
      const scratch = mkdtempSync(path.join(tmpdir(), 'bsft-dry-run-'));
      try {
        const manifests = await buildDatasets(recipes, log, () => undefined, scratch);
        dryRunPlan(recipes, manifests, { title: 'its points as runs', jsonHead: { sweep: record.name }, rate: undefined, decodeRate: undefined, json: false,
          showRecipes: false, out, print: out, runsDir: () => scratch });
      } finally {
        rmSync(scratch, { recursive: true, force: true });
      }
      return EXIT.ok;
    }
    return withQueues(async (q, redis) => {
      record = sameSweep(await queuedSweep(redis, record.name), record);
      // The record first: a submit stopped half-way is finished by the same command, and bsft status shows it meanwhile.
      await saveQueuedSweep(redis, record);
      writeSweep(record);
      const states = new Map<string, string>();
      for (const r of recipes) {
        const res = await submitRun(r, q.connection, { priority });
        states.set(r.run_id, res.created ? 'submitted' : `already submitted (${res.existingState})`);
      }
      for (const l of pointRows(record, { head: ['queued'], cells: (id) => [states.get(id)!] })) out(`  ${l}`);
      out(`record: ${rel(sweepFile(record.runs_dir, record.name))}`);
      out(`  follow:   bsft status --sweep ${record.name}`);
      out(`  compare:  bsft report --sweep ${record.name}${record.runs_dir !== path.resolve('runs') ? ` --runs-dir ${shellQuote(rel(record.runs_dir))}` : ''}`);
      out(`  cancel:   bsft cancel --sweep ${record.name}`);
      return EXIT.ok;
    });
  },
};

