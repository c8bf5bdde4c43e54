import { existsSync, mkdtempSync, readdirSync, readFileSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import path from 'node:path';
import { STEPS } from '../run/all-steps.js';
import { LocalHost } from '../run/local-host.js';
import { runSteps } from '../run/pipeline.js';
import { predictsViaEndpoint } from '../run/steps.js';
import { localCheckpoints } from '../store/sync.js';
import { BsftError, UsageError } from '../errors.js';
import { buildDatasets, dryRunPlan, endpointPlan } from './run-plan.js';
import type { ResolvedRecipe } from '../recipe/resolve.js';
import { pointText } from '../sweep/points.js';
import { isSweep } from '../sweep/spec.js';
import { readSweep, sameSweep, sweepFile, writeSweep } from '../sweep/sweep-files.js';
import { formatSweepReport, sweepReport } from '../sweep/sweep-report.js';
import { EXIT, type CommandContext, type CommandImpl, type OptionValues } from './command.js';
import { prepareSweep } from '../sweep/prepare.js';
import { sweepTitle } from '../sweep/sweep-view.js';
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

/**
 * Ctrl-C and SIGTERM while runs go on in this process: the first asks the trainer to finish its step and write a
 * checkpoint (or predict the chunk in hand), the second stops at once.
 */
class Stopper {
  readonly graceful = new AbortController();
  readonly atOnce = new AbortController();
  stoppedBy: keyof typeof SIGNAL_EXIT | undefined;
  /** The grace of the run going on now. */
  grace = 0;
  private readonly onInt = () => this.onSignal('SIGINT');
  private readonly onTerm = () => this.onSignal('SIGTERM');

  constructor() {
    // `on`, not `once`: a listener must stay in place, or execa's exit handler would end the process at once.
    process.on('SIGINT', this.onInt);
    process.on('SIGTERM', this.onTerm);
  }

  private onSignal(signal: keyof typeof SIGNAL_EXIT) {
    if (!this.stoppedBy) {
      this.stoppedBy = signal;
      say(`${signal}: stopping. The trainer finishes its step and writes a checkpoint, or predict the chunk in hand (up to ${this.grace}s); press Ctrl-C again to stop at once.`);
      this.graceful.abort(`stopped by ${signal === 'SIGINT' ? 'Ctrl-C' : 'SIGTERM'}`); // the run's record says so (run.json, bsft runs)
    } else if (!this.atOnce.signal.aborted) {
      say('stopping at once.');
      this.atOnce.abort();
    }
  }

  close() {
    process.off('SIGINT', this.onInt);
    process.off('SIGTERM', this.onTerm);
  }
}

/** Runs one recipe's steps; after a stop, says what was kept and returns the signal's exit code. */
async function runOne(recipe: ResolvedRecipe, stopper: Stopper, { log, out }: CommandContext): Promise<number> {
  const runDir = path.join(recipe.runs_dir, recipe.run_id);
  stopper.grace = recipe.train.preempt_grace_s;
  out(`run ${recipe.run_id} -> ${path.relative(process.cwd(), runDir) || runDir}`);
  try {
    const records = await runSteps(STEPS, { recipe, runDir, log, signal: stopper.graceful.signal, kill: stopper.atOnce.signal, host: new LocalHost(log, out) });
    for (const r of records) out(`  ${r.step.padEnd(8)} ${r.state}${r.seconds !== undefined ? ` (${r.seconds}s)` : ''}`);
    out(`run ${recipe.run_id}: finished`);
    return EXIT.ok;
  } catch (e) {
    if (!stopper.stoppedBy) throw e;
    const kept = await keptCheckpoint(runDir);
    if (stopper.atOnce.signal.aborted) say(`stopped at once: the training since the last checkpoint is lost (kept: ${kept}).`);
    else say(`stopped (kept: ${kept}).`);
    say(`run the same command again to continue: ${thisCommand()}`);
    return SIGNAL_EXIT[stopper.stoppedBy];
  }
}

/**
 * A sweep in this process: its points one after another, each a normal run (steps already done are skipped, so
 * points trained before are reused); a point that fails does not stop the others. Then the points ranked on the
 * validation split.
 */
async function runSweep(file: string, values: OptionValues, ctx: CommandContext, stopper: Stopper): Promise<number> {
  const { record: asked, recipes, dropped } = prepareSweep(file, values);
  const existing = existsSync(sweepFile(asked.runs_dir, asked.name)) ? readSweep(asked.runs_dir, asked.name) : undefined;
  const record = sameSweep(existing, asked);
  writeSweep(record);
  ctx.out(`sweep ${record.name}: ${sweepTitle(record)}${dropped ? ` (${dropped} drawn twice, kept once)` : ''}, one after another in this process`);
  const failed: string[] = [];
  for (const [i, recipe] of recipes.entries()) {
    const point = record.points[i]!;
    ctx.out(`\npoint ${point.index}/${record.points.length}: ${pointText(point.values)}`);
    try {
      const code = await runOne(recipe, stopper, ctx);
      if (code !== EXIT.ok) {
        say(`sweep ${record.name} stopped at point ${point.index}; the same command goes on where it stopped`);
        return code;
      }
    } catch (e) {
      if (!(e instanceof BsftError)) throw e;
      failed.push(`point ${point.index} (${recipe.run_id}): ${e.message.split('\n')[0]}`);
      ctx.out(`point ${point.index} failed: ${e.message.split('\n')[0]}; going on with the next point`);
    }
  }
  ctx.out('');
  const report = await sweepReport(record, {});
  for (const l of formatSweepReport(report)) ctx.out(l);
  if (failed.length) {
    ctx.out(`\n${failed.length} point(s) failed:`);
    for (const f of failed) ctx.out(`  ${f}`);
    return EXIT.failure;
  }
  return EXIT.ok;
}

/**
 * `bsft run --dry-run`: the run's dataset built in a temporary folder (to count its tokens), then its plan: the
 * requests, tokens and cost of an evaluation through an endpoint, or the training and prediction plan.
 */
async function dryRun(recipe: ResolvedRecipe, values: OptionValues, { log, out }: CommandContext): Promise<number> {
  const price = (name: string) => {
    if (values[name] === undefined) return undefined;
    const v = Number(values[name]);
    if (!(v >= 0)) throw new UsageError(`--${name} must be a number of US dollars per million tokens, e.g. 0.15`);
    return v;
  };
  const scratch = mkdtempSync(path.join(tmpdir(), 'bsft-dry-run-'));
  try {
    const [manifest] = await buildDatasets([recipe], log, () => undefined, scratch);
    const runDir = path.join(scratch, recipe.run_id);
    if (predictsViaEndpoint(recipe)) endpointPlan(recipe, manifest!, runDir, { input: price('price-in'), output: price('price-out') }, out);
    else dryRunPlan([recipe], [manifest!], { title: recipe.run_id, jsonHead: {}, rate: undefined, decodeRate: undefined, json: false, showRecipes: false, out, print: out, runsDir: () => scratch });
  } finally {
    rmSync(scratch, { recursive: true, force: true });
  }
  out('nothing was written: the dataset was built in a temporary folder to count its tokens, then removed');
  return EXIT.ok;
}

export const run: CommandImpl = {
  async run([file], values, ctx) {
    const sweeping = isSweep(file!, values);
    if (sweeping && values['dry-run']) throw new UsageError('a sweep\'s plan: bsft sweep ... --dry-run');
    if (!sweeping && values['dry-run']) {
      const recipe = resolveFromArgs(file!, values);
      checkFits(recipe);
      return dryRun(recipe, values, ctx);
    }
    const recipe = sweeping ? undefined : resolveFromArgs(file!, values);
    if (recipe) checkFits(recipe);
    const stopper = new Stopper();
    try {
      return recipe ? await runOne(recipe, stopper, ctx) : await runSweep(file!, values, ctx, stopper);
    } finally {
      stopper.close();
    }
  },
};
