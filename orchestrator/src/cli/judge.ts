import { parse as parseYaml } from 'yaml';
import { UsageError } from '../errors.js';
import { judgeStep } from '../judge/judge-step.js';
import { judgeSchema } from '../recipe/schema.js';
import { LocalHost } from '../run/local-host.js';
import { findRunDir, readRunRecipe } from '../run/run-dir.js';
import { EXIT, type CommandImpl } from './command.js';

/** `--set key=value` on the judge section (`base_url=…`, `judge.model=…`), checked as a recipe's would be. */
function judgeSettings(base: unknown, sets: string[]) {
  const judge = { ...(typeof base === 'object' && base ? base : {}) } as Record<string, unknown>;
  for (const s of sets) {
    const eq = s.indexOf('=');
    if (eq < 1) throw new UsageError(`--set ${s}: expected key=value`);
    judge[s.slice(0, eq).replace(/^judge\./, '')] = parseYaml(s.slice(eq + 1));
  }
  const parsed = judgeSchema.safeParse(judge);
  if (!parsed.success) throw new UsageError(`judge settings: ${parsed.error.issues.map((i) => `judge.${i.path.join('.')}: ${i.message}`).join('; ')}`);
  return parsed.data;
}

export const judgeCommand: CommandImpl = {
  async run([target], values, { log, out }) {
    const runDir = findRunDir(target!);
    const recipe = readRunRecipe(runDir)!;
    const sets = (values.set as string[] | undefined) ?? [];
    if (!recipe.judge && sets.length === 0) throw new UsageError(`run ${recipe.run_id} has no judge section: give one with --set kind=openai --set base_url=… --set model=…`);
    const withJudge = { ...recipe, judge: judgeSettings(recipe.judge, sets) };
    const ctx = { recipe: withJudge, runDir, log, signal: new AbortController().signal, host: new LocalHost(log, out) };
    if (await judgeStep.done(ctx)) {
      out(`run ${recipe.run_id}: already judged with these settings (judge/summary.json)`);
      return EXIT.ok;
    }
    await judgeStep.run(ctx);
    out(`judged: ${runDir}/judge (score it with: bsft score ${runDir})`);
    return EXIT.ok;
  },
};
