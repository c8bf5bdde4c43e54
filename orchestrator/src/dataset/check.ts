import { readFileSync, statSync } from 'node:fs';
import path from 'node:path';
import type { ResolvedRecipe } from '../recipe/resolve.js';
import type { DataProblem } from './data-error.js';
import { readTasks, recipeImportOptions } from './import.js';
import { VALIDATE_DATA_MAX_BYTES } from './limits.js';

export { VALIDATE_DATA_MAX_BYTES };


export interface DataCheck {
  tasks: number;
  files: number;
  bytes: number;
  problems: DataProblem[];
}

/**
 * The special tokens of a tokenizer folder, read from tokenizer.json as text (no tokenizer is built): with the
 * behavior tokens, the control text task data must not contain.
 */
function specialTokens(tokenizerDir: string): string[] {
  try {
    const json = JSON.parse(readFileSync(path.join(tokenizerDir, 'tokenizer.json'), 'utf8')) as { added_tokens?: { content: string; special: boolean }[] };
    return (json.added_tokens ?? []).filter((t) => t.special).map((t) => t.content);
  } catch {
    return [];
  }
}

export function taskBytes(recipe: ResolvedRecipe): number {
  return recipe.task_files.reduce((sum, f) => sum + statSync(f).size, 0);
}

/** The dataset import checks of `bsft dataset build` (every line: JSON, schema, text rules, limits), without building. */
export async function checkTaskData(recipe: ResolvedRecipe): Promise<DataCheck> {
  const problems: DataProblem[] = [];
  let tasks = 0;
  for await (const _ of readTasks(recipe.task_files, recipeImportOptions(recipe.data, specialTokens(recipe.tokenizer)), problems)) tasks++;
  return { tasks, files: recipe.task_files.length, bytes: taskBytes(recipe), problems };
}
