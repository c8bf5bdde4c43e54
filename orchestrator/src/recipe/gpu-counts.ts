import type { ResolvedRecipe } from './resolve.js';
import { divisors } from './schema.js';

/**
 * The GPU counts a run may train on. A fixed run: `resources.gpus`. An elastic run (`resources.min_gpus`): every
 * count from min_gpus to gpus that divides the step's batches, so that the global batch is the same on each (the
 * trainer takes `step_batches / ranks` batches per rank and step). Ascending.
 */
export function gpuCounts(recipe: ResolvedRecipe): number[] {
  const { gpus, min_gpus: min } = recipe.resources;
  if (min === undefined || min >= gpus) return [gpus];
  return divisors(stepBatches(recipe)).filter((n) => n >= min && n <= gpus);
}

/** Batches of one optimizer step over all ranks: train.grad_accum on each of resources.gpus (Contract 4 `step_batches`). */
export function stepBatches(recipe: ResolvedRecipe): number {
  return recipe.train.grad_accum * Math.max(1, recipe.resources.gpus);
}

/** "2-8 GPUs (2, 4, 8)" or "4 GPUs": what a run asks of a worker, for messages. */
export function gpuCountsText(counts: number[]): string {
  const [min, max] = [counts[0]!, counts[counts.length - 1]!];
  return min === max ? `${max} GPU${max > 1 ? 's' : ''}` : `${min}-${max} GPUs (${counts.join(', ')})`;
}
