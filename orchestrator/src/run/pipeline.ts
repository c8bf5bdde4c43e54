import { existsSync, mkdirSync, rmSync, writeFileSync } from 'node:fs';
import path from 'node:path';
import { StepUnavailableError, type RunContext, type Step, type StepName } from './step.js';

export interface StepRecord {
  step: StepName;
  state: 'skipped' | 'done' | 'unavailable' | 'failed';
  seconds?: number;
  message?: string;
}

/** Writes runs/<id>/run.json after every step, so an interrupted run shows how far it got. */
function record(ctx: RunContext, steps: StepRecord[]): void {
  const status = { run_id: ctx.recipe.run_id, updated_at: new Date().toISOString(), steps };
  writeFileSync(path.join(ctx.runDir, 'run.json'), `${JSON.stringify(status, null, 2)}\n`);
}

/** Writes runs/<id>/recipe.json, the resolved recipe every later step and command reads. */
export function writeRunRecipe(runDir: string, recipe: RunContext['recipe']): void {
  mkdirSync(runDir, { recursive: true });
  writeFileSync(path.join(runDir, 'recipe.json'), `${JSON.stringify(recipe, null, 2)}\n`);
}

/**
 * Runs the steps in order; a step whose output exists already is skipped. Stops at the first unavailable step.
 * A new run whose first step fails (bad task data, say) leaves nothing behind: its folder is removed.
 */
export async function runPipeline(steps: Step[], ctx: RunContext): Promise<StepRecord[]> {
  // The outermost folder this run creates (runs/ itself on a first run): removed again if the first step fails.
  let created: string | undefined;
  for (let dir = ctx.runDir; !existsSync(dir); dir = path.dirname(dir)) created = dir;
  writeRunRecipe(ctx.runDir, ctx.recipe);
  const records: StepRecord[] = [];
  ctx.log.info({ run_id: ctx.recipe.run_id, run_dir: ctx.runDir }, 'run started');
  for (const step of steps) {
    if (ctx.signal.aborted) throw new Error('interrupted');
    if (await step.done(ctx)) {
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
    ctx.log.info({ step: step.name }, `step ${step.name}: ${step.summary}`);
    const started = performance.now();
    try {
      await step.run(ctx);
    } catch (e) {
      if (created && records.length === 0) {
        rmSync(created, { recursive: true, force: true });
        throw e;
      }
      records.push({ step: step.name, state: 'failed', message: (e as Error).message });
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
