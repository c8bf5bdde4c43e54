import path from 'node:path';
import { STEPS } from '../run/all-steps.js';
import { runPipeline } from '../run/pipeline.js';
import { EXIT, recipeOptionHelp, recipeOptions, type Command } from './command.js';
import { resolveFromArgs } from './recipe-args.js';

export const run: Command = {
  name: 'run',
  summary: 'run a recipe end to end in this process (build -> train -> predict -> score), no Redis',
  usage: 'bsft run <recipe> [--set path=value] [--allow DIR]',
  details:
    'Results go to runs/<run-id>/ (store.path when set). Steps already done for the same run id are skipped,\n' +
    'so running the same command again continues where it stopped. Ctrl-C stops the trainer after a checkpoint.',
  options: { ...recipeOptions },
  optionHelp: { ...recipeOptionHelp },
  positionals: [1, 1],
  async run([file], values, { log, out }) {
    const recipe = resolveFromArgs(file!, values);
    const runDir = path.join(recipe.runs_dir, recipe.run_id);
    const controller = new AbortController();
    const stop = () => controller.abort();
    process.once('SIGINT', stop);
    process.once('SIGTERM', stop);
    out(`run ${recipe.run_id} -> ${path.relative(process.cwd(), runDir) || runDir}`);
    try {
      const records = await runPipeline(STEPS, { recipe, runDir, log, signal: controller.signal });
      for (const r of records) out(`  ${r.step.padEnd(8)} ${r.state}${r.seconds !== undefined ? ` (${r.seconds}s)` : ''}`);
      out(`run ${recipe.run_id}: finished`);
      return EXIT.ok;
    } finally {
      process.off('SIGINT', stop);
      process.off('SIGTERM', stop);
    }
  },
};
