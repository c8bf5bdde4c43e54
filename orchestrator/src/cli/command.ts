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

/**
 * What the CLI knows of a command before loading it (cli/commands.ts): name, help, options with their defaults
 * (each written once, here, and shown in --help), how many arguments it takes, and `load` for its code.
 */
export interface CommandSpec {
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
  /** Options that take every value up to the next option (`--runs A B C`); given again, they add to it. */
  variadic?: string[];
  /** With no argument, the recipe is ./bsft.yaml (what `bsft init` writes) when it exists. */
  defaultRecipe?: boolean;
  load(): Promise<CommandImpl>;
}

/** A command's code: one file per command under cli/, loaded only when the command runs. */
export interface CommandImpl {
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
