import { existsSync, mkdirSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import path from 'node:path';
import { StepUnavailableError, type RunContext, type Step, type StepName } from './step.js';

export interface StepRecord {
  step: StepName;
  /** stopped: the user stopped it (Ctrl-C, SIGTERM to `bsft run`); the message says how. */
  state: 'skipped' | 'done' | 'unavailable' | 'failed' | 'stopped';
  seconds?: number;
  message?: string;
}

const STEP_ORDER: StepName[] = ['build', 'train', 'predict', 'judge', 'score'];

/**
 * Writes runs/<id>/run.json after every step, so an interrupted run shows how far it got. Steps run elsewhere
 * (the other jobs of a queued run) keep their records: each step's newest record is kept, in run order.
 */
function record(ctx: RunContext, steps: StepRecord[]): void {
  const file = path.join(ctx.runDir, 'run.json');
  let earlier: StepRecord[] = [];
  try {
    earlier = (JSON.parse(readFileSync(file, 'utf8')) as { steps: StepRecord[] }).steps ?? [];
  } catch {
    // first record of this run
  }
  const mine = new Set(steps.map((s) => s.step));
  const all = [...earlier.filter((s) => !mine.has(s.step)), ...steps].sort((a, b) => STEP_ORDER.indexOf(a.step) - STEP_ORDER.indexOf(b.step));
  const status = { run_id: ctx.recipe.run_id, updated_at: new Date().toISOString(), steps: all };
  writeFileSync(file, `${JSON.stringify(status, null, 2)}\n`);
}

/** Writes runs/<id>/recipe.json, the resolved recipe every later step and command reads. */
export function writeRunRecipe(runDir: string, recipe: RunContext['recipe']): void {
  mkdirSync(runDir, { recursive: true });
  writeFileSync(path.join(runDir, 'recipe.json'), `${JSON.stringify(recipe, null, 2)}\n`);
}

/**
 * Runs steps in order, the one runner of `bsft run` (all steps) and of queue workers (the steps of a job): a step
 * whose output exists already is skipped (unless `force`); its inputs are pulled from the store where missing, its
 * outputs pushed after it. Stops at the first unavailable step. A new run whose first step fails (bad task data,
 * say) leaves nothing behind: its folder is removed.
 */
export async function runSteps(steps: Step[], ctx: RunContext, opts: { force?: boolean } = {}): Promise<StepRecord[]> {
  // The outermost folder this run creates (runs/ itself on a first run): removed again if the first step fails.
  let created: string | undefined;
  for (let dir = ctx.runDir; !existsSync(dir); dir = path.dirname(dir)) created = dir;
  writeRunRecipe(ctx.runDir, ctx.recipe);
  const records: StepRecord[] = [];
  ctx.log.info({ run_id: ctx.recipe.run_id, run_dir: ctx.runDir }, 'run started');
  for (const step of steps) {
    if (ctx.signal.aborted) throw new Error('interrupted');
    if (!opts.force && (await step.done(ctx))) {
      ctx.log.info({ step: step.name }, `step ${step.name}: already done, skipped`);
      records.push({ step: step.name, state: 'skipped' });
      record(ctx, records);
      continue;
    }
    const reason = await step.unavailable(ctx);
    if (reason) {
      records.push({ step: step.name, state: 'unavailable', message: reason });
      record(ctx, records);
      throw new StepUnavailableError(step.name, reason);
    }
    ctx.log.info({ step: step.name }, `step ${step.name}: ${typeof step.summary === 'string' ? step.summary : step.summary(ctx.recipe)}`);
    const started = performance.now();
    try {
      await ctx.host.pull(ctx, step.inputs);
      await step.run(ctx);
      await ctx.host.push(ctx, step.outputs);
    } catch (e) {
      if (created && records.length === 0) {
        rmSync(created, { recursive: true, force: true });
        throw e;
      }
      // A stop the caller asked for, with its words (`bsft run`: "stopped by Ctrl-C"), is not a failure.
      const asked = ctx.signal.aborted && typeof ctx.signal.reason === 'string' ? ctx.signal.reason : undefined;
      records.push(asked ? { step: step.name, state: 'stopped', message: asked } : { step: step.name, state: 'failed', message: (e as Error).message });
      record(ctx, records);
      throw e;
    }
    const seconds = +((performance.now() - started) / 1000).toFixed(2);
    records.push({ step: step.name, state: 'done', seconds });
    record(ctx, records);
    ctx.log.info({ step: step.name, seconds }, `step ${step.name}: done in ${seconds}s`);
  }
  return records;
}
