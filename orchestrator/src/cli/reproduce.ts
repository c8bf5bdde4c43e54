import { UsageError } from '../errors.js';
import { existsSync, mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import path from 'node:path';
import { stringify } from 'yaml';
import { buildDataset } from '../dataset/build.js';
import type { Manifest } from '../dataset/manifest.js';
import { shardPromptTokens } from '../dataset/shard-prompts.js';
import { submitRun } from '../queue/submit.js';
import type { RunView } from '../queue/runs.js';
import type { ResolvedRecipe } from '../recipe/resolve.js';
import { PACKAGE_ROOT } from '../run/python-env.js';
import { datasetDir } from '../run/trainer-config.js';
import { table } from '../util/table.js';
import { PLAN_COLUMNS, PLAN_LEGEND, planRow, USABLE_SHARE } from '../recipe/memory-plan.js';
import { compare, formatComparison, writeReport } from '../score/report.js';
import { scoreRun } from '../score/run-scores.js';
import { pullMeta } from '../store/meta.js';
import { openStore } from '../store/store.js';
import { MEASURED_LORA_TOK_S, PRESETS } from './presets.js';
import { ESTIMATED_DECODE_TOK_S, predictPlan } from '../recipe/predict-plan.js';
import { EXIT, recipeOptionHelp, recipeOptions, type CommandImpl } from './command.js';
import { withQueues } from './queue-args.js';
import { resolveFromArgs } from './recipe-args.js';
import { RUN_COLUMNS, RUN_TEXT_COLUMNS, runRow } from './status.js';

const sleep = (ms: number) => new Promise((r) => setTimeout(r, ms));

function trainTokens(recipe: ResolvedRecipe, tokensPerEpoch: number): number {
  if (recipe.train.epochs !== undefined) return tokensPerEpoch * recipe.train.epochs;
  return recipe.train.max_steps! * recipe.train.batch_tokens * recipe.train.grad_accum;
}

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
    const recipes = preset.recipes.map((f) => resolveFromArgs(f, { ...values, set: [...((values.set as string[] | undefined) ?? []), ...tasks] }));
    const rate = values['tokens-per-s'] !== undefined ? Number(values['tokens-per-s']) : undefined;
    if (rate !== undefined && !(rate > 0)) throw new UsageError('--tokens-per-s must be a positive number');
    const decodeRate = values['predict-tokens-per-s'] !== undefined ? Number(values['predict-tokens-per-s']) : undefined;
    if (decodeRate !== undefined && !(decodeRate > 0)) throw new UsageError('--predict-tokens-per-s must be a positive number');

    // One dataset build for the set: runs with the same data section (LoRA and full) share it by dataset hash, and
    // the queued build jobs find it done. A dry run builds in a temporary folder, only to count tokens, and removes it.
    const dryRun = values['dry-run'] === true;
    const scratch = dryRun ? mkdtempSync(path.join(tmpdir(), 'bsft-dry-run-')) : undefined;
    try {
      const manifests = [];
      for (const r of recipes) {
        const runsDir = scratch ?? r.runs_dir;
        const res = await buildDataset(r, datasetDir(path.join(runsDir, r.run_id)), log, path.join(runsDir, '_datasets'));
        manifests.push(res.manifest);
        out(`dataset of ${r.run_id}: ${res.manifest.dataset_hash.slice(0, 12)}${res.built ? ' (built)' : ' (shared build)'}`);
      }
      if (dryRun) return dryRunPlan(recipes, manifests, { presetName, rate, decodeRate, json, showRecipes: values['show-recipes'] === true, out, print, runsDir: () => scratch! });
    } finally {
      if (scratch) rmSync(scratch, { recursive: true, force: true });
    }
    return submitAndWatch(recipes, presetName, values.out as string | undefined, out);
  },
};

interface PlanOptions {
  presetName: string;
  rate: number | undefined;
  /** Generated tokens/s of predict, when given (--predict-tokens-per-s). */
  decodeRate: number | undefined;
  json: boolean;
  showRecipes: boolean;
  out: (line: string) => void;
  print: (line: string) => void;
  /** Where each run's dataset was built (its shards give the exact prompt tokens). */
  runsDir: (r: ResolvedRecipe) => string;
}

/** The dry run's plan: the runs, their training tokens and GPU hours, the memory plan; resolved recipes on request. */
function dryRunPlan(recipes: ResolvedRecipe[], manifests: Manifest[], { presetName, rate, decodeRate, json, showRecipes, out, print, runsDir }: PlanOptions): number {
  const preset = PRESETS[presetName]!;
  out(`\n${preset.label}: ${recipes.length} runs\n`);
  const rows = [['run', 'method', 'conditioning', 'train tokens/epoch', 'train tokens', 'tok/s', 'GPU hours']];
  const predictRows = [['run', 'prediction files', 'prompts', 'prompt tokens', 'generated tokens (at most)', 'model judge: replies', 'predict GPU hours', 'judge GPU hours']];
  const decode = decodeRate ?? ESTIMATED_DECODE_TOK_S;
  let train = 0;
  let predict = 0;
  for (const [i, r] of recipes.entries()) {
    const manifest = manifests[i]!;
    const tokens = trainTokens(r, manifest.lengths.train.tokens);
    const tokS = rate ?? (r.train.method === 'lora' ? MEASURED_LORA_TOK_S : Math.round((MEASURED_LORA_TOK_S * 4) / 6));
    // The rates are per GPU: a run on N GPUs goes N times faster for the same GPU hours.
    const hours = tokens / tokS / 3600;
    train += hours;
    rows.push([r.run_id, r.train.method, r.data.conditioning, manifest.lengths.train.tokens.toLocaleString('en'), tokens.toLocaleString('en'), tokS.toLocaleString('en'), hours.toFixed(2)]);
    const shard = (split: string) => path.join(datasetDir(path.join(runsDir(r), r.run_id)), `${split}.tokens.safetensors`);
    const p = predictPlan(r, manifest, { trainTokS: tokS, decodeTokS: decode }, (split) => (existsSync(shard(split)) ? shardPromptTokens(shard(split)) : undefined));
    predict += p.hours.predict + p.hours.judge;
    predictRows.push([r.run_id, String(p.files), p.prompts.toLocaleString('en'), Math.round(p.promptTokens).toLocaleString('en'), p.maxGenerated.toLocaleString('en'),
      r.judge?.kind === 'model' ? p.judged.toLocaleString('en') : '-', p.hours.predict.toFixed(2), r.judge?.kind === 'model' ? p.hours.judge.toFixed(2) : '-']);
  }
  const total = train + predict;
  const decodeNote = decodeRate === undefined
    ? `predict at ${ESTIMATED_DECODE_TOK_S.toLocaleString('en')} generated tok/s per GPU: an ESTIMATE, not measured here (measure yours: python trainer-python/bench/predict.py on the GPU, or a run's predictions/predict.json; then --predict-tokens-per-s)`
    : `predict at ${decodeRate.toLocaleString('en')} generated tok/s as given`;
  if (json) {
    const [head, ...body] = rows;
    const [phead, ...pbody] = predictRows;
    const memory = recipes.map(planRow).map((row) => Object.fromEntries(PLAN_COLUMNS.map((h, i) => [h, row[i]])));
    print(JSON.stringify({ preset: presetName, label: preset.label, runs: body.map((row) => Object.fromEntries(head!.map((h, i) => [h, row[i]]))),
      predict: pbody.map((row) => Object.fromEntries(phead!.map((h, i) => [h, row[i]]))), predict_rate: { tokens_per_s: decode, measured: false, given: decodeRate !== undefined },
      memory, gpu_hours: +total.toFixed(2), gpu_hours_train: +train.toFixed(2), gpu_hours_predict: +predict.toFixed(2), recipes }, null, 2));
    return EXIT.ok;
  }
  out(table(rows).join('\n'));
  out('\nprediction (every eval split, chosen and forced; replies up to eval.max_new_tokens) and a model judge:');
  out(table(predictRows).join('\n'));
  out(`\ntotal: ${total.toFixed(2)} GPU hours (training ${train.toFixed(2)}, prediction and judging ${predict.toFixed(2)}; scoring runs on a CPU)`);
  out(decodeNote);
  out(`\nGPU memory per recipe (estimate at each recipe's batch_tokens; GiB as the trainer logs them; GPUs@80GiB/141GiB: the fewest that fit ${USABLE_SHARE * 100}% of such cards)`);
  out(table([PLAN_COLUMNS, ...recipes.map(planRow)]).join('\n'));
  for (const line of PLAN_LEGEND) out(line);
  out(rate === undefined ? `rates: LoRA ${MEASURED_LORA_TOK_S.toLocaleString('en')} tok/s measured on one H200 (packed 8k); full fine-tuning estimated at 4/6 of it. Override with --tokens-per-s.` : `rate: ${rate} tok/s as given`);
  if (showRecipes) for (const r of recipes) out(`\n# ${r.run_id} (${path.relative(process.cwd(), r.recipe_file)})\n${stringify(r, { lineWidth: 0 }).trimEnd()}`);
  else out('\nthe resolved recipes: add --show-recipes (or --json)');
  out('nothing was written: the datasets were built in a temporary folder to count their tokens, then removed');
  return EXIT.ok;
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
      const store = await openStore(r);
      if (store.kind === 'hub') {
        // The runs trained elsewhere: bring back what scoring needs (small files, sha256-checked).
        await pullMeta(store, r.run_id, runDir);
        for (const rel of ['dataset', 'predictions']) await store.pull(r.run_id, rel, path.join(runDir, rel));
      }
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
