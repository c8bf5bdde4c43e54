import { existsSync, mkdirSync, readdirSync, writeFileSync } from 'node:fs';
import path from 'node:path';
import type { ResolvedRecipe } from '../recipe/resolve.js';
import { z } from 'zod';
import { stepBatches } from '../recipe/gpu-counts.js';
import { trainerMemoryPlan } from '../recipe/memory-plan.js';
import { evalSchema, modelSchema, SPLITS, trackingSchema, trainSchema } from '../recipe/schema.js';

const splitPaths = z.strictObject({ train: z.string(), val: z.string(), test: z.string() });

/**
 * Contract 4: train.json, the trainer's whole input, with every value filled in (the trainer has no defaults of its
 * own) and absolute paths. Its JSON Schema (docs/schema/train.schema.json, shipped in the trainer package) is what
 * the trainer validates train.json against.
 */
export const trainerConfigSchema = z.strictObject({
  run_id: z.string().min(1),
  model: modelSchema,
  /** Absolute tokenizer directory, or a Hub id. */
  tokenizer: z.string().min(1),
  train: trainSchema,
  eval: evalSchema,
  conditioning: z.enum(['token', 'none', 'instruction']),
  max_seq_len: z.number().int().positive(),
  /** Behavior name -> token string (IDs are in the manifest). */
  behaviors: z.record(z.string(), z.string().min(1)),
  dataset: z.strictObject({
    manifest: z.string(),
    /** split -> tokens.safetensors */
    shards: splitPaths,
    /** split -> messages.jsonl (predict builds prompts from these) */
    messages: splitPaths,
  }),
  /** Checkpoints go to <output_dir>/checkpoints/, the final model to <output_dir>/final/. */
  output_dir: z.string().min(1),
  /** predict writes <predictions_dir>/<split>[.forced-<behavior>].jsonl */
  predictions_dir: z.string().min(1),
  /** Experiment trackers the trainer writes to, besides <output_dir>/metrics.jsonl (always). */
  tracking: trackingSchema,
  /**
   * Batches of one optimizer step over all ranks (train.grad_accum x resources.gpus): each of N ranks takes
   * step_batches / N of them, so that a run started or resumed on another GPU count (an elastic run,
   * resources.min_gpus) trains the same global batch. Absent: train.grad_accum batches per rank.
   */
  step_batches: z.number().int().positive().optional(),
  /**
   * The recipe's GPU memory plan (recipe/memory-plan.ts) on `gpus` GPUs: its total bytes per GPU with 0, 1, ... all
   * decoder layers recomputed. `activation_checkpointing: auto` recomputes the fewest layers whose total fits the
   * GPU before step 1. Absent when the model's shape is unknown.
   */
  memory_plan: z.strictObject({
    gpus: z.number().int().positive(),
    peak_bytes: z.array(z.number().nonnegative()).min(1),
  }).optional(),
});
export type TrainerConfig = z.infer<typeof trainerConfigSchema>;

export function datasetDir(runDir: string): string {
  return path.join(runDir, 'dataset');
}

export function trainerConfig(recipe: ResolvedRecipe, runDir: string): TrainerConfig {
  const ds = datasetDir(runDir);
  const plan = trainerMemoryPlan(recipe);
  return {
    run_id: recipe.run_id,
    model: recipe.model,
    tokenizer: recipe.tokenizer,
    train: recipe.train,
    eval: recipe.eval,
    conditioning: recipe.data.conditioning,
    max_seq_len: recipe.data.max_seq_len,
    behaviors: Object.fromEntries(Object.entries(recipe.data.behaviors).map(([k, v]) => [k, v.token])),
    dataset: {
      manifest: path.join(ds, 'manifest.json'),
      shards: Object.fromEntries(SPLITS.map((s) => [s, path.join(ds, `${s}.tokens.safetensors`)])) as TrainerConfig['dataset']['shards'],
      messages: Object.fromEntries(SPLITS.map((s) => [s, path.join(ds, `${s}.messages.jsonl`)])) as TrainerConfig['dataset']['messages'],
    },
    output_dir: runDir,
    predictions_dir: path.join(runDir, 'predictions'),
    tracking: recipe.tracking,
    step_batches: stepBatches(recipe),
    ...(plan ? { memory_plan: plan } : {}),
  };
}

/** Writes <runDir>/train.json (and makes the predictions folder); returns its path. */
export function writeTrainerConfig(recipe: ResolvedRecipe, runDir: string): string {
  const config = trainerConfig(recipe, runDir);
  mkdirSync(config.predictions_dir, { recursive: true });
  const file = path.join(runDir, 'train.json');
  writeFileSync(file, `${JSON.stringify(config, null, 2)}\n`);
  return file;
}

/**
 * The predict runs of a recipe, as trainer arguments: the model's own choice, then one run per forced behavior
 * (steering). Both `bsft run` and the queued train job run exactly these.
 */
export function predictArgs(recipe: ResolvedRecipe): string[][] {
  return [[], ...recipe.eval.force.map((b) => ['--force', b])];
}

/** The forced-token predictions files of a split that a run folder holds (`<split>.forced-<behavior>.jsonl`), sorted. */
export function forcedPredictionsFiles(runDir: string, split: string): string[] {
  const dir = path.join(runDir, 'predictions');
  if (!existsSync(dir)) return [];
  return readdirSync(dir)
    .filter((f) => f.startsWith(`${split}.forced-`) && f.endsWith('.jsonl'))
    .sort()
    .map((f) => path.join(dir, f));
}

/** The predictions file a predict run writes for a split (`<split>.jsonl` or `<split>.forced-<behavior>.jsonl`). */
export function predictionsFile(runDir: string, split: string, args: string[]): string {
  const forced = args[0] === '--force' ? `.forced-${args[1]}` : '';
  return path.join(runDir, 'predictions', `${split}${forced}.jsonl`);
}
