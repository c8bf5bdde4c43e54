import { existsSync } from 'node:fs';
import path from 'node:path';
import { z } from 'zod';
import { DataError, type DataProblem } from '../dataset/data-error.js';
import { readJsonl } from '../dataset/jsonl.js';

/** One line of a judge output file (`judge/<name>.jsonl`, the same name as the predictions file it labels). */
export const judgmentSchema = z.object({
  id: z.string().min(1),
  judged_behavior: z.string().nullable(),
  status: z.enum(['ok', 'unparseable']),
  raw: z.string(),
  prompt_version: z.string(),
});
export type JudgmentRow = z.infer<typeof judgmentSchema>;

/** The judge labels of the gold replies of a split: how far the judge can be trusted (judge/<split>.gold.jsonl). */
export const goldFileName = (split: string) => `${split}.gold.jsonl`;

/** Rows of one of our own JSONL files, checked against its schema (a bad line names file, line and field). */
export async function readRows<S extends z.ZodType>(file: string, schema: S): Promise<z.infer<S>[]> {
  const problems: DataProblem[] = [];
  const out: z.infer<S>[] = [];
  for await (const { value } of readJsonl(file, schema, problems)) out.push(value);
  if (problems.length) throw new DataError(problems);
  return out;
}

/** A run's judge labels of one predictions file (by file name), or undefined when it was not judged. */
export async function readJudgments(runDir: string, name: string): Promise<Map<string, JudgmentRow> | undefined> {
  const file = path.join(runDir, 'judge', name);
  if (!existsSync(file)) return undefined;
  return new Map((await readRows(file, judgmentSchema)).map((r) => [r.id, r]));
}
