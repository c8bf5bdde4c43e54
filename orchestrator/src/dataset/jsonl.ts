import { createReadStream } from 'node:fs';
import path from 'node:path';
import { createInterface } from 'node:readline';
import { createGunzip } from 'node:zlib';
import type { z } from 'zod';
import type { DataProblem } from './data-error.js';

/** How files are named in problems: relative to the current directory. */
export const displayPath = (file: string) => path.relative(process.cwd(), file) || file;

function fieldPath(p: readonly PropertyKey[]): string {
  return p.map((x, i) => (typeof x === 'number' ? `[${x}]` : `${i ? '.' : ''}${String(x)}`)).join('');
}

export interface JsonlRecord<T> {
  value: T;
  line: number;
  /** The file as problems name it. */
  file: string;
  /** Records a problem of this line (field path, message). */
  problem(field: string, message: string): void;
}

/**
 * Streams a JSONL file (`.gz` too) and yields the lines that parse and match `schema`. Bad JSON and schema issues
 * are added to `problems`, each with file, line and field path; blank lines are skipped.
 */
export async function* readJsonl<S extends z.ZodType>(
  file: string,
  schema: S,
  problems: DataProblem[],
  onLine?: () => void,
): AsyncGenerator<JsonlRecord<z.infer<S>>> {
  const shown = displayPath(file);
  const raw = createReadStream(file);
  const input = file.endsWith('.gz') ? raw.pipe(createGunzip()) : raw;
  let line = 0;
  try {
    for await (const text of createInterface({ input, crlfDelay: Infinity })) {
      line++;
      onLine?.();
      if (!text.trim()) continue;
      const n = line;
      const problem = (field: string, message: string) => problems.push({ file: shown, line: n, field, message });
      let json: unknown;
      try {
        json = JSON.parse(text);
      } catch (e) {
        problem('', `invalid JSON: ${(e as Error).message}`);
        continue;
      }
      const parsed = schema.safeParse(json);
      if (!parsed.success) {
        for (const issue of parsed.error.issues) problem(fieldPath(issue.path), issue.message.replace(/^Invalid input: /, ''));
        continue;
      }
      yield { value: parsed.data, line: n, file: shown, problem };
    }
  } catch (e) {
    problems.push({ file: shown, line: line + 1, field: '', message: `cannot read: ${(e as Error).message}` });
  }
}
