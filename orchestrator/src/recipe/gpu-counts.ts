import type { ResolvedRecipe } from './resolve.js';

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

/** Batches of one optimizer step over all ranks: train.grad_accum on each of resources.gpus of each of resources.nodes
 * machines (Contract 4 `step_batches`). */
export function stepBatches(recipe: { train: Pick<ResolvedRecipe['train'], 'grad_accum'>; resources: Pick<ResolvedRecipe['resources'], 'gpus' | 'nodes'> }): number {
  return recipe.train.grad_accum * worldGpus(recipe);
}

/** The ranks of a run at its full size: resources.gpus (at least 1: the CPU) on each of resources.nodes machines. */
export function worldGpus(recipe: { resources: Pick<ResolvedRecipe['resources'], 'gpus' | 'nodes'> }): number {
  return Math.max(1, recipe.resources.gpus) * (recipe.resources.nodes ?? 1);
}

/** The divisors of `n`, ascending. */
export function divisors(n: number): number[] {
  const out: number[] = [];
  for (let d = 1; d <= n; d++) if (n % d === 0) out.push(d);
  return out;
}
