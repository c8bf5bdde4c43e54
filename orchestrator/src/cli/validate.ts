import { RecipeError, formatProblem } from '../recipe/recipe-error.js';
import { EXIT, recipeOptionHelp, recipeOptions, type Command } from './command.js';
import { resolveFromArgs } from './recipe-args.js';

export const validate: Command = {
  name: 'validate',
  summary: 'check recipes and list every problem with its path, file and line',
  usage: 'bsft validate <recipe...> [--set path=value] [--allow DIR]',
  options: { ...recipeOptions, quiet: { type: 'boolean', short: 'q' } },
  optionHelp: { ...recipeOptionHelp, quiet: 'print problems only' },
  positionals: [1, Infinity],
  async run(files, values, { out }) {
    let bad = 0;
    for (const file of files) {
      try {
        const r = resolveFromArgs(file, values);
        if (!values.quiet) out(`ok  ${file}  (run id ${r.run_id}, ${r.task_files.length} task file(s))`);
      } catch (e) {
        if (!(e instanceof RecipeError)) throw e;
        bad++;
        out(`bad ${file}: ${e.problems.length} problem(s)`);
        for (const p of e.problems) out(`  ${formatProblem(p)}`);
      }
    }
    return bad > 0 ? EXIT.usage : EXIT.ok;
  },
};
