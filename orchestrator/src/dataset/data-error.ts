import { InputError } from '../errors.js';
/** One bad input line: file, line number and field path. */
export interface DataProblem {
  file: string;
  line: number;
  field: string;
  message: string;
}

export function formatDataProblem(p: DataProblem): string {
  return `${p.file}${p.line ? `:${p.line}` : ''}${p.field ? ` ${p.field}` : ''}: ${p.message}`;
}

const SHOWN = 50;

/** Bad task data; nothing was written. Exit code 2 (invalid input). */
export class DataError extends InputError {

  constructor(readonly problems: DataProblem[]) {
    const lines = problems.slice(0, SHOWN).map((p) => `  ${formatDataProblem(p)}`);
    if (problems.length > SHOWN) lines.push(`  ... and ${problems.length - SHOWN} more`);
    super(`${problems.length} problem(s) in the task data; nothing was written:\n${lines.join('\n')}`);
  }
}
