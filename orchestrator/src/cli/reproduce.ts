import { UsageError } from '../errors.js';
import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import path from 'node:path';
import { submitRun } from '../queue/submit.js';
import type { RunView } from '../queue/runs.js';
import type { ResolvedRecipe } from '../recipe/resolve.js';
import { table } from '../util/table.js';
import { compare, formatComparison, writeReport } from '../score/report.js';
import { scoreRun } from '../score/run-scores.js';
import { pullForScoring } from '../store/meta.js';
import { PRESETS } from './presets.js';
import { buildDatasets, dryRunPlan } from './run-plan.js';
import { EXIT, recipeOptionHelp, recipeOptions, type CommandImpl, type OptionValues } from './command.js';
import { withQueues } from './queue-args.js';
import { resolveFromArgs } from './recipe-args.js';
import { RUN_COLUMNS, RUN_TEXT_COLUMNS, runRow } from './status.js';

const sleep = (ms: number) => new Promise((r) => setTimeout(r, ms));

export const reproduce: CommandImpl = {
  async run(_args, values, { log, out: print }) {
    const json = values.json === true && values['dry-run'] === true;
    const out = (line: string) => !json && print(line);
    const presetName = values.preset as string;
    const preset = PRESETS[presetName];
    if (!preset) throw new UsageError(`--preset: unknown preset "${presetName}" (${Object.keys(PRESETS).join(', ')})`);
    const data = values.data as string[] | undefined;
    if (!data === !values.sample) {
      throw new UsageError(
        data
          ? '--data and --sample exclude each other'
          : "name the BehaviorBench task files with --data 'path/to/behaviorbench/*.jsonl', or pass --sample to run the set on the " +
              "bundled 630-task sample (its scores are not comparable with the paper's 97.3)",
      );
    }
    const tasks = data ? [`data.tasks=${JSON.stringify(data.map((f) => path.resolve(f)))}`] : [];
    const sets = [...((values.set as string[] | undefined) ?? []), ...tasks];
    const recipes = preset.recipes.map((f) => resolveFromArgs(f, { ...values, set: sets }));
    // The base model as it ships, zero-shot and instructed, as the paper compares it: evaluated through its endpoint.
    if (values['with-base'] !== undefined) recipes.push(...baseRecipes(recipes, values['with-base'] as string, (values['base-model'] as string | undefined), sets, values));
    const rate = values['tokens-per-s'] !== undefined ? Number(values['tokens-per-s']) : undefined;
    if (rate !== undefined && !(rate > 0)) throw new UsageError('--tokens-per-s must be a positive number');
    const decodeRate = values['predict-tokens-per-s'] !== undefined ? Number(values['predict-tokens-per-s']) : undefined;
    if (decodeRate !== undefined && !(decodeRate > 0)) throw new UsageError('--predict-tokens-per-s must be a positive number');

    // One dataset build for the set: runs with the same data section (LoRA and full) share it by dataset hash, and
    // the queued build jobs find it done. A dry run builds in a temporary folder, only to count tokens, and removes it.
    const dryRun = values['dry-run'] === true;
    const scratch = dryRun ? mkdtempSync(path.join(tmpdir(), 'bsft-dry-run-')) : undefined;
    try {
      const manifests = await buildDatasets(recipes, log, out, scratch);
      if (dryRun) return dryRunPlan(recipes, manifests, { title: preset.label, jsonHead: { preset: presetName, label: preset.label }, rate, decodeRate, json, showRecipes: values['show-recipes'] === true, out, print, runsDir: () => scratch! });
    } finally {
      if (scratch) rmSync(scratch, { recursive: true, force: true });
    }
    return submitAndWatch(recipes, presetName, values.out as string | undefined, out);
  },
};

/**
 * The preset's base model untrained (train.method none), zero-shot (conditioning none, as the standard-SFT run's
 * data) and instructed (as the instructed run's), each predicting through the chat endpoint `url` serving it under
 * `model` (default: the preset's model id). Their replies are labelled by the recipes' judge (--set judge=...).
 */
function baseRecipes(preset: ResolvedRecipe[], url: string, model: string | undefined, sets: string[], values: OptionValues): ResolvedRecipe[] {
  if (!URL.canParse(url)) throw new UsageError(`--with-base: the chat endpoint serving the base model, e.g. http://gpu-host:8000/v1; got "${url}"`);
  const like = (conditioning: string) => preset.find((r) => r.data.conditioning === conditioning && r.train.method !== 'none');
  const out: ResolvedRecipe[] = [];
  for (const [conditioning, name] of [['none', 'zero-shot'], ['instruction', 'instructed']] as const) {
    const from = like(conditioning);
    if (!from) continue;
    const served = model ?? from.model.name_or_path;
    out.push(resolveFromArgs(from.recipe_file, { ...values, set: [...sets, `name=base-${name}`, 'train.method=none', 'eval.engine=openai-chat', 'eval.force=[]',
      `eval.endpoint=${JSON.stringify({ base_url: url, model: served })}`] }));
  }
  if (!out.length) throw new UsageError('--with-base: the preset has no zero-shot or instructed run to take the data from');
  return out;
}

/** Submits the set, follows it until every run ends, scores them and writes the comparison report. */
async function submitAndWatch(recipes: ResolvedRecipe[], presetName: string, outDir: string | undefined, out: (line: string) => void): Promise<number> {
  return withQueues(async (q) => {
    for (const r of recipes) {
      const res = await submitRun(r, q.connection);
      out(`${res.created ? 'submitted' : 'already submitted'}: ${r.run_id}`);
    }
    const ids = recipes.map((r) => r.run_id);
    const tty = process.stdout.isTTY === true;
    let lastPrint = 0;
    let views: RunView[] = [];
    for (;;) {
      views = (await Promise.all(ids.map((id) => q.view(id)))).filter((v): v is RunView => !!v);
      const done = views.length === ids.length && views.every((v) => ['completed', 'failed', 'cancelled'].includes(v.state));
      const lines = table([RUN_COLUMNS, ...views.map((v) => runRow(v))], RUN_TEXT_COLUMNS);
      if (tty) process.stdout.write(`\x1b[${lines.length}A\x1b[0J`.repeat(lastPrint ? 1 : 0) + `${lines.join('\n')}\n`);
      else if (done || Date.now() - lastPrint > 10_000) out(lines.join('\n'));
      lastPrint = Date.now();
      if (done) break;
      await sleep(1000);
    }
    const failed = views.filter((v) => v.state !== 'completed');
    if (failed.length) {
      for (const v of failed) out(`run ${v.runId}: ${v.state}${v.failedReason ? ` (${v.failedReason})` : ''}`);
      return EXIT.failure;
    }
    const scored = [];
    for (const r of recipes) {
      const runDir = path.join(r.runs_dir, r.run_id);
      await pullForScoring(r, r.run_id, runDir);
      scored.push(await scoreRun(runDir, r.eval.splits[0]!));
    }
    const resamples = recipes[0]!.eval.bootstrap;
    const comparison = compare(scored, resamples, recipes[0]!.train.seed);
    const dir = path.resolve(outDir ?? path.join(recipes[0]!.runs_dir, `reproduce-${presetName}`));
    writeReport(dir, comparison);
    out('');
    out(formatComparison(comparison).join('\n'));
    out(`\nreport: ${path.join(dir, 'report.html')}`);
    return EXIT.ok;
  });
}
