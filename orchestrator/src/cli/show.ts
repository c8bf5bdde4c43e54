import { stringify } from 'yaml';
import { EXIT, recipeOptionHelp, recipeOptions, type Command } from './command.js';
import { resolveFromArgs } from './recipe-args.js';

export const show: Command = {
  name: 'show',
  summary: 'print the fully resolved recipe (extends merged, defaults filled in, paths absolute)',
  usage: 'bsft show <recipe> [--json] [--set path=value] [--allow DIR]',
  options: { ...recipeOptions, json: { type: 'boolean' } },
  optionHelp: { ...recipeOptionHelp, json: 'print JSON instead of YAML' },
  positionals: [1, 1],
  async run([file], values, { out }) {
    const resolved = resolveFromArgs(file!, values);
    out(values.json ? JSON.stringify(resolved, null, 2) : stringify(resolved, { lineWidth: 0 }).trimEnd());
    return EXIT.ok;
  },
};
