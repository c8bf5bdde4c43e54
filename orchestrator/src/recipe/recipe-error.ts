import { InputError } from '../errors.js';
/** One problem of a recipe, with the place it came from. */
export interface Problem {
  /** Dotted path inside the recipe (`train.lr`), or '' for the file as a whole. */
  path: string;
  message: string;
  file?: string;
  line?: number;
}

export function formatProblem(p: Problem): string {
  const where = p.file ? `${p.file}${p.line ? `:${p.line}` : ''} ` : '';
  return `${where}${p.path ? `${p.path}: ` : ''}${p.message}`;
}

/** A recipe that cannot be used; `problems` lists every problem found, not only the first. */
export class RecipeError extends InputError {
  readonly problems: Problem[];

  constructor(problems: Problem[]) {
    super(`invalid recipe:\n${problems.map((p) => `  ${formatProblem(p)}`).join('\n')}`);
    this.problems = problems;
  }
}
