import { parse as parseYaml } from 'yaml';
import { copyFileSync, existsSync, mkdirSync, readFileSync, renameSync, statSync, writeFileSync } from 'node:fs';
import path from 'node:path';
import { UsageError } from '../errors.js';
import { readJudgments } from '../judge/judgments.js';
import type { Logger } from '../log.js';
import type { ResolvedRecipe } from '../recipe/resolve.js';
import { writeRunRecipe } from '../run/pipeline.js';
import { formatScore } from '../score/format.js';
import { scoreRun } from '../score/run-scores.js';
import { judgeStep } from '../judge/judge-step.js';
import { DEFAULT_BEHAVIORS, judgeSchema } from '../recipe/schema.js';
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

/**
 * A loose predictions file: judged as the `test` split of a working run folder beside it
 * (`<file>.judge/`: the tasks, the predictions, the cache), so that the same step, cache and scoring serve it.
 * Writes `<file minus .jsonl>.judged.jsonl`: each prediction with `judged_behavior`, and prints the score.
 */
async function judgeFile(file: string, tasks: string, sets: string[], log: Logger, out: (line: string) => void): Promise<number> {
  const work = `${file}.judge`;
  mkdirSync(path.join(work, 'dataset'), { recursive: true });
  mkdirSync(path.join(work, 'predictions'), { recursive: true });
  copyFileSync(tasks, path.join(work, 'dataset', 'test.messages.jsonl'));
  copyFileSync(file, path.join(work, 'predictions', 'test.jsonl'));
  const recipe = {
    name: 'judged', run_id: 'judged-00000000', model: { name_or_path: '-' }, description: `judged ${path.basename(file)}`,
    data: { behaviors: DEFAULT_BEHAVIORS, categories: {}, conditioning: 'none' },
    train: { method: '-', seed: 42 }, eval: { splits: ['test'], bootstrap: 1000, force: [] },
    judge: judgeSettings(undefined, sets),
  } as unknown as ResolvedRecipe;
  writeRunRecipe(work, recipe);
  const ctx = { recipe, runDir: work, log, signal: new AbortController().signal, host: new LocalHost(log, out) };
  if (!(await judgeStep.done(ctx))) await judgeStep.run(ctx);
  const labels = await readJudgments(work, 'test.jsonl');
  const rows = readFileSync(file, 'utf8').split('\n').filter((l) => l.trim()).map((l) => JSON.parse(l) as { id: string });
  const target = file.replace(/\.jsonl$/, '') + '.judged.jsonl';
  writeFileSync(`${target}.tmp`, rows.map((r) => `${JSON.stringify({ ...r, judged_behavior: labels?.get(r.id)?.judged_behavior ?? null })}\n`).join(''));
  renameSync(`${target}.tmp`, target);
  const scored = await scoreRun(work, 'test');
  out(formatScore(path.basename(file), scored.report).join('\n'));
  out(`written: ${path.relative(process.cwd(), target)} (labels and cache in ${path.relative(process.cwd(), work)}/judge)`);
  return EXIT.ok;
}

export const judgeCommand: CommandImpl = {
  async run([target], values, { log, out }) {
    const sets = (values.set as string[] | undefined) ?? [];
    if (existsSync(target!) && statSync(target!).isFile()) {
      const tasks = values.tasks as string | undefined;
      if (!tasks) throw new UsageError('a predictions file needs --tasks <split>.messages.jsonl (a dataset split: the conversations and gold behaviors)');
      return judgeFile(path.resolve(target!), path.resolve(tasks), sets, log, out);
    }
    const runDir = findRunDir(target!);
    const recipe = readRunRecipe(runDir)!;
    if (!recipe.judge && sets.length === 0) throw new UsageError(`run ${recipe.run_id} has no judge section: give one with --set kind=openai --set base_url=… --set model=…`);
    const splits = ((values.split as string[] | undefined) ?? recipe.eval.splits) as ResolvedRecipe['eval']['splits'];
    for (const s of splits) {
      if (!existsSync(path.join(runDir, 'dataset', `${s}.messages.jsonl`))) throw new UsageError(`--split ${s}: run ${recipe.run_id} has no dataset split "${s}"`);
    }
    const withJudge = { ...recipe, eval: { ...recipe.eval, splits }, judge: judgeSettings(recipe.judge, sets) };
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
