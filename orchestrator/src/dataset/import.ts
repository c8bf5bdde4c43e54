import { createReadStream } from 'node:fs';
import path from 'node:path';
import { createInterface } from 'node:readline';
import { createGunzip } from 'node:zlib';
import { canonicalJson } from '../util/canonical-json.js';
import type { DataProblem } from './data-error.js';
import { taskSchema, type SourcedTask } from './task.js';

export interface ImportOptions {
  behaviors: string[];
  categories: Record<string, string>;
  /** How files are named in problems (default: relative to cwd). */
  display?: (file: string) => string;
  onLine?: () => void;
}

export interface ImportResult {
  tasks: SourcedTask[];
  problems: DataProblem[];
  /** Identical records seen more than once (kept once). */
  duplicates: number;
}

function fieldPath(p: readonly PropertyKey[]): string {
  return p.map((x, i) => (typeof x === 'number' ? `[${x}]` : `${i ? '.' : ''}${String(x)}`)).join('');
}

/** Streams task records from JSONL files (`.gz` too), validating every line; problems name file, line and field. */
export async function importTasks(files: string[], opts: ImportOptions): Promise<ImportResult> {
  const show = opts.display ?? ((f: string) => path.relative(process.cwd(), f) || f);
  const tasks: SourcedTask[] = [];
  const problems: DataProblem[] = [];
  const byId = new Map<string, { canonical: string; file: string; line: number }>();
  let duplicates = 0;

  for (const file of files) {
    const shown = show(file);
    const raw = createReadStream(file);
    const input = file.endsWith('.gz') ? raw.pipe(createGunzip()) : raw;
    const lines = createInterface({ input, crlfDelay: Infinity });
    let n = 0;
    try {
      for await (const text of lines) {
        n++;
        opts.onLine?.();
        if (!text.trim()) continue;
        const problem = (field: string, message: string) => problems.push({ file: shown, line: n, field, message });
        let json: unknown;
        try {
          json = JSON.parse(text);
        } catch (e) {
          problem('', `invalid JSON: ${(e as Error).message}`);
          continue;
        }
        const parsed = taskSchema.safeParse(json);
        if (!parsed.success) {
          for (const issue of parsed.error.issues) problem(fieldPath(issue.path), issue.message.replace(/^Invalid input: /, ''));
          continue;
        }
        const t = parsed.data;
        const behavior = t.behavior ?? opts.categories[t.category];
        if (!behavior) {
          problem('behavior', `missing, and category "${t.category}" is not in the recipe's data.categories`);
          continue;
        }
        if (!opts.behaviors.includes(behavior)) {
          problem(t.behavior ? 'behavior' : 'category', `unknown behavior "${behavior}" (recipe behaviors: ${opts.behaviors.join(', ')})`);
          continue;
        }
        const task: SourcedTask = { ...t, target: t.target.trim(), behavior, file: shown, line: n };
        const canonical = canonicalJson(t);
        const seen = byId.get(t.id);
        if (seen) {
          if (seen.canonical === canonical) duplicates++;
          else problem('id', `duplicate id "${t.id}" with different content (first seen at ${seen.file}:${seen.line})`);
          continue;
        }
        byId.set(t.id, { canonical, file: shown, line: n });
        tasks.push(task);
      }
    } catch (e) {
      problems.push({ file: shown, line: n + 1, field: '', message: `cannot read: ${(e as Error).message}` });
    }
  }
  return { tasks, problems, duplicates };
}
