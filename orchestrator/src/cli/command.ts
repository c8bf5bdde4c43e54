import { UsageError } from '../errors.js';
import type { ParseArgsConfig } from 'node:util';
import type { Logger } from '../log.js';

export type OptionSpec = NonNullable<ParseArgsConfig['options']>;
export type OptionValues = Record<string, string | boolean | string[] | boolean[] | undefined>;

export interface CommandContext {
  log: Logger;
  /** Writes a line of command output to stdout. */
  out: (line: string) => void;
}

/** One `bsft` command; each lives in its own file under cli/. */
export interface Command {
  name: string;
  summary: string;
  usage: string;
  /** Extra help text printed after the options. */
  details?: string;
  options: OptionSpec;
  /** Help lines for options, by option name. */
  optionHelp: Record<string, string>;
  /** Minimum and maximum positional arguments. */
  positionals: [number, number];
  run(positionals: string[], values: OptionValues, ctx: CommandContext): Promise<number>;
}

export const EXIT = { ok: 0, failure: 1, usage: 2 } as const;

/** A non-negative integer option, or undefined when not given. */
export function intOption(values: Record<string, unknown>, name: string): number | undefined {
  const v = values[name] as string | undefined;
  if (v === undefined) return undefined;
  const n = Number(v);
  if (!Number.isInteger(n) || n < 0) throw new UsageError(`--${name} must be a non-negative integer`);
  return n;
}

/** Options every recipe-reading command takes. */
export const recipeOptions: OptionSpec = {
  set: { type: 'string', multiple: true },
  allow: { type: 'string', multiple: true },
};
export const recipeOptionHelp: Record<string, string> = {
  set: 'override a recipe value, e.g. --set train.lr=2e-5 (repeatable)',
  allow: 'also allow recipe paths inside DIR (repeatable; default: only the current directory)',
};
