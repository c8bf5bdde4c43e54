import { InputError } from '../errors.js';
import path from 'node:path';
import { z } from 'zod';
import type { ResolvedRecipe } from '../recipe/resolve.js';
import { recipeSchema } from '../recipe/schema.js';

/**
 * The data of every job of a run. Secrets never go here: workers read HF_TOKEN and Redis credentials from their
 * own environment (a test checks that no secret reaches Redis).
 */
export interface RunJobData {
  run_id: string;
  recipe: ResolvedRecipe;
  /** Folder of the run (runs/<run-id>) on a shared or local store path. */
  run_dir: string;
  submitted_at: string;
  /** How many times this job was preempted (exit 75) and put back; capped. */
  preemptions?: number;
  /** How many times this job was put back because a worker's disk was full (not the run's fault); capped. */
  disk_full?: number;
  /** The figures behind the job's numeric progress (written by the worker running it). */
  progress?: JobProgress;
  /** Why a train job is delayed without running: the GPUs it waits for (written by a worker, for bsft status). */
  waiting_for?: string;
  /** A member job of a run across machines (gang.ts): the machine it trains as (1 .. resources.nodes - 1). */
  node?: number;
  /** ... and the gang it belongs to (the run's fencing epoch when its first machine formed it). */
  gang_epoch?: number;
}

/** What `resolveRecipe` adds to a recipe. */
const resolvedExtras = z.strictObject({
  run_id: z.string().regex(/^[A-Za-z0-9][A-Za-z0-9._-]{0,63}-[0-9a-f]{8}$/, 'expected <name>-<8 hex digits>'),
  recipe_file: z.string().min(1),
  task_files: z.array(z.string().min(1)).min(1),
  tokenizer: z.string().min(1),
  runs_dir: z.string().min(1),
});

const envelope = z.strictObject({
  run_id: z.string(),
  recipe: z.record(z.string(), z.unknown()),
  run_dir: z.string(),
  submitted_at: z.iso.datetime(),
  preemptions: z.number().int().nonnegative().optional(),
  disk_full: z.number().int().nonnegative().optional(),
  // Written by workers for people to read; no worker acts on it.
  progress: z.custom<JobProgress>((v) => typeof v === 'object' && v !== null && !Array.isArray(v)).optional(),
  waiting_for: z.string().optional(),
  node: z.number().int().positive().optional(),
  gang_epoch: z.number().int().positive().optional(),
});

/** A job whose data a worker refuses to act on (never retried). */
export class JobDataError extends InputError {
  constructor(readonly problems: string[]) {
    super(`job data refused: ${problems.join('; ')}`);
  }
}

/**
 * Parses job data read from Redis with the same schemas `bsft submit` used: anyone who can write to Redis can write
 * a job, so a worker trusts nothing in it. Throws JobDataError listing every problem with its path.
 */
export function parseRunJobData(data: unknown): RunJobData {
  const problems: string[] = [];
  const collect = (prefix: string, error: z.ZodError) => {
    for (const i of error.issues) problems.push(`${[prefix, ...i.path.map(String)].filter(Boolean).join('.') || '(job data)'}: ${i.message}`);
  };
  const top = envelope.safeParse(data);
  if (!top.success) {
    collect('', top.error);
    throw new JobDataError(problems);
  }
  const { run_id: runId, recipe_file: recipeFile, task_files: taskFiles, tokenizer, runs_dir: runsDir, ...recipe } = top.data.recipe;
  const extras = resolvedExtras.safeParse({ run_id: runId, recipe_file: recipeFile, task_files: taskFiles, tokenizer, runs_dir: runsDir });
  if (!extras.success) collect('recipe', extras.error);
  const parsed = recipeSchema.safeParse(recipe);
  if (!parsed.success) collect('recipe', parsed.error);
  if (!extras.success || !parsed.success) throw new JobDataError(problems);
  const job = { ...top.data, recipe: { ...parsed.data, ...extras.data } };
  if (job.run_id !== job.recipe.run_id) problems.push(`run_id: "${job.run_id}" is not the recipe's run id "${job.recipe.run_id}"`);
  if (job.run_dir !== path.join(job.recipe.runs_dir, job.recipe.run_id)) problems.push(`run_dir: expected <recipe.runs_dir>/<run_id>`);
  if ((job.node === undefined) !== (job.gang_epoch === undefined)) problems.push('node, gang_epoch: a member job of a run across machines has both');
  if (job.node !== undefined && job.node >= job.recipe.resources.nodes) problems.push(`node: ${job.node} is not a machine of the run (resources.nodes ${job.recipe.resources.nodes})`);
  if (problems.length) throw new JobDataError(problems);
  return job;
}

/**
 * Contract 5: a job's progress (`job.progress`) is a number, the percent done of the stage it is running, so that
 * Bull Board draws a bar; the figures behind it are in the job's data under `progress`.
 */
export interface JobProgress {
  stage: 'build' | 'train' | 'predict' | 'judge' | 'score';
  phase: 'starting' | 'running' | 'done';
  /** Steps (train) or tasks (predict) done, of total. */
  done: number;
  total: number;
  loss?: number;
  lr?: number;
  tokens_per_s?: number;
  mem_gib?: number;
  /** Device memory in use at the newest step (GiB), beside `mem_gib`, the peak. */
  mem_alloc_gib?: number;
  eval_loss?: number;
  /** The checkpoint step this attempt resumed from. */
  resumed_from?: number;
  /** From the recent rate of this attempt. */
  rate_per_s?: number;
  eta_s?: number;
  /** Epoch milliseconds. */
  updated_at: number;
}

/** The percent a JobProgress stands for, to one decimal. */
export function percentOf(p: Pick<JobProgress, 'done' | 'total' | 'phase'>): number {
  if (p.phase === 'done') return 100;
  return p.total > 0 ? Math.min(100, Math.round((1000 * p.done) / p.total) / 10) : 0;
}

export const MAX_PREEMPTIONS = 100;
/** A job put back this many times for full disks fails: no worker has room for it. */
export const MAX_DISK_FULL = 20;
