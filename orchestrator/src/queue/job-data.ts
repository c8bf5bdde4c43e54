import type { ResolvedRecipe } from '../recipe/resolve.js';

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
}

/** What the train job reports through job.updateProgress. */
export interface TrainProgress {
  step: number;
  total_steps: number;
  loss?: number;
  lr?: number;
  tokens_per_s?: number;
  mem_gib?: number;
  resumed_from_step?: number;
  eval_loss?: number;
  phase: 'starting' | 'training' | 'checkpoint' | 'done';
}

export const MAX_PREEMPTIONS = 100;
