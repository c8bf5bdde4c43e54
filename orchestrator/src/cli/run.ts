import { existsSync, readdirSync, readFileSync } from 'node:fs';
import path from 'node:path';
import { STEPS } from '../run/all-steps.js';
import { LocalHost } from '../run/local-host.js';
import { runSteps } from '../run/pipeline.js';
import { localCheckpoints } from '../store/sync.js';
import { EXIT, recipeOptionHelp, recipeOptions, type CommandImpl } from './command.js';
import { checkFits } from '../recipe/memory-plan.js';
import { resolveFromArgs } from './recipe-args.js';
import { thisCommand } from '../util/shell-quote.js';

/** Exit codes of a run stopped by a signal: 128 + the signal's number, as shells report it. */
const SIGNAL_EXIT = { SIGINT: 130, SIGTERM: 143 } as const;

const say = (line: string) => process.stderr.write(`bsft run: ${line}\n`);

/** What a stopped run keeps: its newest complete checkpoint, if any. */
async function keptCheckpoint(runDir: string): Promise<string> {
  const [newest] = await localCheckpoints(path.join(runDir, 'checkpoints'));
  const kept = [newest === undefined ? 'no checkpoint yet' : `checkpoint step ${newest}`];
  // A predict stopped mid-way keeps its finished chunks (trainer-python predict.py, predict-progress/).
  const progress = path.join(runDir, 'predict-progress');
  for (const f of existsSync(progress) ? readdirSync(progress).filter((x) => x.endsWith('.jsonl.json')).sort() : []) {
    try {
      const r = JSON.parse(readFileSync(path.join(progress, f), 'utf8')) as { chunks: number; sha256?: string };
      if (!r.sha256 && r.chunks > 0) kept.push(`${r.chunks} chunk(s) of ${f.slice(0, -'.json'.length)}`);
    } catch {
      // being written: not worth a word
    }
  }
  return kept.join(', ');
}

export const run: CommandImpl = {
  async run([file], values, { log, out }) {
    const recipe = resolveFromArgs(file!, values);
    checkFits(recipe);
    const runDir = path.join(recipe.runs_dir, recipe.run_id);
    const graceful = new AbortController();
    const atOnce = new AbortController();
    let stoppedBy: keyof typeof SIGNAL_EXIT | undefined;
    // `on`, not `once`: a listener must stay in place, or execa's exit handler would end the process at once.
    const onSignal = (signal: keyof typeof SIGNAL_EXIT) => {
      if (!stoppedBy) {
        stoppedBy = signal;
        say(`${signal}: stopping. The trainer finishes its step and writes a checkpoint, or predict the chunk in hand (up to ${recipe.train.preempt_grace_s}s); press Ctrl-C again to stop at once.`);
        graceful.abort(`stopped by ${signal === 'SIGINT' ? 'Ctrl-C' : 'SIGTERM'}`); // the run's record says so (run.json, bsft runs)
      } else if (!atOnce.signal.aborted) {
        say('stopping at once.');
        atOnce.abort();
      }
    };
    const onInt = () => onSignal('SIGINT');
    const onTerm = () => onSignal('SIGTERM');
    process.on('SIGINT', onInt);
    process.on('SIGTERM', onTerm);
    out(`run ${recipe.run_id} -> ${path.relative(process.cwd(), runDir) || runDir}`);
    try {
      const records = await runSteps(STEPS, { recipe, runDir, log, signal: graceful.signal, kill: atOnce.signal, host: new LocalHost(log, out) });
      for (const r of records) out(`  ${r.step.padEnd(8)} ${r.state}${r.seconds !== undefined ? ` (${r.seconds}s)` : ''}`);
      out(`run ${recipe.run_id}: finished`);
      return EXIT.ok;
    } catch (e) {
      if (!stoppedBy) throw e;
      const kept = await keptCheckpoint(runDir);
      if (atOnce.signal.aborted) say(`stopped at once: the training since the last checkpoint is lost (kept: ${kept}).`);
      else say(`stopped (kept: ${kept}).`);
      say(`run the same command again to continue: ${thisCommand()}`);
      return SIGNAL_EXIT[stoppedBy];
    } finally {
      process.off('SIGINT', onInt);
      process.off('SIGTERM', onTerm);
    }
  },
};
