import path from 'node:path';
import { findRunDir, readRunRecipe } from '../run/run-dir.js';
import { LocalHost } from '../run/local-host.js';
import { runSteps } from '../run/pipeline.js';
import { predictStep } from '../run/steps.js';
import { predictArgs, predictionsFile } from '../run/trainer-config.js';
import { EXIT, type CommandImpl } from './command.js';
import { UsageError } from '../errors.js';
import { offsetsText, readOperatingPoint } from '../score/balance.js';
import { SPLITS, type SplitName } from '../recipe/schema.js';

export const predict: CommandImpl = {
  async run([target], values, { log, out }) {
    const runDir = findRunDir(target!);
    const saved = readRunRecipe(runDir)!;
    // --split: other splits than the recipe's eval.splits (val for bsft balance); the run's recipe is not changed.
    const splits = values.split as SplitName[] | undefined;
    for (const s of splits ?? []) if (!SPLITS.includes(s)) throw new UsageError(`--split ${s}: the splits are ${SPLITS.join(', ')}`);
    let recipe = splits ? { ...saved, eval: { ...saved.eval, splits } } : saved;
    if (values.balanced) {
      // The run's operating point (bsft balance) on the behavior tokens' logits; the run's recipe is not changed.
      const point = readOperatingPoint(runDir);
      if (!point) throw new UsageError(`run ${path.basename(runDir)} has no operating point yet (balance.json): choose one with bsft balance ${target}`);
      const offsets = Object.fromEntries(Object.entries(point.offsets).filter(([, v]) => v !== 0));
      out(`applying the operating point of bsft balance (${point.rule.text}, chosen on ${point.split} ${point.date.slice(0, 10)}): ` +
        `${offsetsText(offsets) || 'no offsets (the default)'}`);
      recipe = { ...recipe, eval: { ...recipe.eval, behavior_offsets: offsets } };
    }
    const controller = new AbortController();
    const stop = () => controller.abort();
    process.on('SIGINT', stop);
    process.on('SIGTERM', stop);
    try {
      await runSteps([predictStep], { recipe, runDir, log, signal: controller.signal, host: new LocalHost(log) }, { force: true });
    } finally {
      process.off('SIGINT', stop);
      process.off('SIGTERM', stop);
    }
    for (const args of predictArgs(recipe)) {
      for (const split of recipe.eval.splits) out(`wrote ${path.relative(process.cwd(), predictionsFile(runDir, split, args))}`);
    }
    out(`score them with: bsft score ${target}`);
    return EXIT.ok;
  },
};
