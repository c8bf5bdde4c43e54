import { canonicalJson } from '../util/canonical-json.js';
import type { DataProblem } from './data-error.js';
import { readJsonl } from './jsonl.js';
import { taskSchema, type SourcedTask } from './task.js';

export interface ImportOptions {
  behaviors: string[];
  categories: Record<string, string>;
  onLine?: () => void;
}

export interface ImportResult {
  tasks: SourcedTask[];
  problems: DataProblem[];
  /** Identical records seen more than once (kept once). */
  duplicates: number;
}

/** Streams task records from JSONL files (`.gz` too), validating every line; problems name file, line and field. */
export async function importTasks(files: string[], opts: ImportOptions): Promise<ImportResult> {
  const tasks: SourcedTask[] = [];
  const problems: DataProblem[] = [];
  const byId = new Map<string, { canonical: string; file: string; line: number }>();
  let duplicates = 0;

  for (const file of files) {
    for await (const { value: t, line, file: shown, problem } of readJsonl(file, taskSchema, problems, opts.onLine)) {
      const behavior = t.behavior ?? opts.categories[t.category];
      if (!behavior) {
        problem('behavior', `missing, and category "${t.category}" is not in the recipe's data.categories`);
        continue;
      }
      if (!opts.behaviors.includes(behavior)) {
        problem(t.behavior ? 'behavior' : 'category', `unknown behavior "${behavior}" (recipe behaviors: ${opts.behaviors.join(', ')})`);
        continue;
      }
      const canonical = canonicalJson(t);
      const seen = byId.get(t.id);
      if (seen) {
        if (seen.canonical === canonical) duplicates++;
        else problem('id', `duplicate id "${t.id}" with different content (first seen at ${seen.file}:${seen.line})`);
        continue;
      }
      byId.set(t.id, { canonical, file: shown, line });
      tasks.push({ ...t, target: t.target.trim(), behavior, file: shown, line });
    }
  }
  return { tasks, problems, duplicates };
}
