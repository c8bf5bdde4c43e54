import { createHash } from 'node:crypto';
import type { ResolvedRecipe } from '../recipe/resolve.js';
import { canonicalJson } from '../util/canonical-json.js';
import type { DataProblem } from './data-error.js';
import { displayPath, readJsonl, type JsonlLimits } from './jsonl.js';
import { pyStrip } from './strip.js';
import { taskSchema, type SourcedTask, type Task } from './task.js';

export interface ImportOptions {
  behaviors: string[];
  categories: Record<string, string>;
  limits?: JsonlLimits;
  /** Strings that must not appear in task text (the tokenizer's special tokens and the behavior tokens). */
  controlText?: string[];
  onLine?: () => void;
}

export interface ImportResult {
  tasks: SourcedTask[];
  problems: DataProblem[];
  /** Identical records seen more than once (kept once). */
  duplicates: number;
}

/**
 * The import options of a recipe's data section: behaviors, categories, limits, and the control text task data must
 * not contain (the tokenizer's special tokens and the behavior tokens, unless data.allow_control_text). One
 * definition for the dataset build and `bsft validate`.
 */
export function recipeImportOptions(data: ResolvedRecipe['data'], specialTokens: string[]): ImportOptions {
  return {
    behaviors: Object.keys(data.behaviors),
    categories: data.categories,
    limits: { maxLineBytes: data.max_line_bytes, maxFieldBytes: data.max_field_bytes },
    controlText: data.allow_control_text ? [] : [...new Set([...specialTokens, ...Object.values(data.behaviors).map((b) => b.token)])],
  };
}

/** What a pass over task files found besides its tasks. */
export interface TaskReading {
  /** Identical records seen again (kept once). */
  duplicates: number;
  /** Where they are, as `<file index>:<line>`: a second pass skips them without remembering every id. */
  duplicateLines: Set<string>;
}

export const newReading = (): TaskReading => ({ duplicates: 0, duplicateLines: new Set() });

/**
 * The tasks of JSONL files (`.gz` too), one at a time in file order, each validated (problems naming file, line
 * and field go to `problems`; such a line yields nothing) and each id once: an identical record seen again is
 * counted in `reading` and skipped, a different one under the same id is a problem. Holds no task, only each id's
 * digest and first place, so that files of any number of tasks stream through. With `skip` (a first pass's
 * `duplicateLines`), ids are not tracked at all: the lines of `skip` are left out.
 */
export async function* readTasks(files: string[], opts: ImportOptions, problems: DataProblem[], reading = newReading(),
  skip?: Set<string>): AsyncGenerator<SourcedTask> {
  const byId = new Map<string, string>(); // id -> "<sha256 of the canonical record> <file index>:<line>"
  for (const [fileIndex, file] of files.entries()) {
    for await (const { value: t, line, file: shown, problem } of readJsonl(file, taskSchema, problems, opts.onLine, opts.limits)) {
      const at = `${fileIndex}:${line}`;
      if (skip?.has(at)) continue;
      const control = controlTextProblems(t, opts.controlText ?? []);
      for (const [field, message] of control) problem(field, message);
      if (control.length) continue;
      const behavior = t.behavior ?? opts.categories[t.category];
      if (!behavior) {
        problem('behavior', `missing, and category "${t.category}" is not in the recipe's data.categories`);
        continue;
      }
      if (!opts.behaviors.includes(behavior)) {
        problem(t.behavior ? 'behavior' : 'category', `unknown behavior "${behavior}" (recipe behaviors: ${opts.behaviors.join(', ')})`);
        continue;
      }
      if (!skip) {
        const digest = createHash('sha256').update(canonicalJson(t)).digest('base64');
        const seen = byId.get(t.id);
        if (seen) {
          if (seen.startsWith(`${digest} `)) {
            reading.duplicates++;
            reading.duplicateLines.add(at);
          } else {
            const [first, firstLine] = seen.slice(digest.length + 1).split(':').map(Number);
            problem('id', `duplicate id "${t.id}" with different content (first seen at ${displayPath(files[first!]!)}:${firstLine})`);
          }
          continue;
        }
        byId.set(t.id, `${digest} ${at}`);
      }
      yield { ...t, target: pyStrip(t.target), behavior, file: shown, line };
    }
  }
}

/** Every task of the files in memory (readTasks): for small inputs and tests. */
export async function importTasks(files: string[], opts: ImportOptions): Promise<ImportResult> {
  const tasks: SourcedTask[] = [];
  const problems: DataProblem[] = [];
  const reading = newReading();
  for await (const t of readTasks(files, opts, problems, reading)) tasks.push(t);
  return { tasks, problems, duplicates: reading.duplicates };
}

/**
 * Control strings inside task text would become the real control tokens (`<|im_end|>` ending the turn early, a
 * behavior token mislabelling the reply): each is a problem naming its field, unless data.allow_control_text.
 */
function controlTextProblems(t: Task, control: string[]): [string, string][] {
  if (!control.length) return [];
  const fields: [string, string][] = [
    ...t.context.flatMap((turn, i): [string, string][] => [
      [`context[${i}].content`, turn.content],
      ...(turn.name ? [[`context[${i}].name`, turn.name] as [string, string]] : []),
    ]),
    ['target', t.target],
  ];
  const out: [string, string][] = [];
  for (const [field, text] of fields) {
    const found = control.find((c) => text.includes(c));
    if (found) out.push([field, `contains the control text "${found}", which would become that token (set data.allow_control_text: true to accept it)`]);
  }
  return out;
}
