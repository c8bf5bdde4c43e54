import { existsSync } from 'node:fs';
import path from 'node:path';
import { stringify } from 'yaml';
import { buildDataset } from '../dataset/build.js';
import type { Manifest } from '../dataset/manifest.js';
import type { Logger } from '../log.js';
import { shardPromptTokens } from '../dataset/shard-prompts.js';
import { fits, gib, memoryPlan, modelShape, PLAN_COLUMNS, PLAN_LEGEND, planRow, USABLE_SHARE } from '../recipe/memory-plan.js';
import { gpuCounts, stepBatches } from '../recipe/gpu-counts.js';
import { ESTIMATED_DECODE_TOK_S, predictPlan } from '../recipe/predict-plan.js';
import type { ResolvedRecipe } from '../recipe/resolve.js';
import { datasetDir } from '../run/trainer-config.js';
import { redactUrl } from '../recipe/secrets.js';
import { table } from '../util/table.js';
import { EXIT } from './command.js';
import { MEASURED_LORA_TOK_S } from './presets.js';

/** The plan of a set of runs before anything is queued (bsft reproduce --dry-run, bsft sweep --dry-run). */

/**
 * Builds the datasets of a set of runs, in their runs folders or in `scratch` (a dry run, only to count tokens): runs
 * with the same data section share one build by dataset hash, and their queued build jobs find it done.
 */
export async function buildDatasets(recipes: ResolvedRecipe[], log: Logger, out: (line: string) => void, scratch?: string): Promise<Manifest[]> {
  const manifests = [];
  for (const r of recipes) {
    const runsDir = scratch ?? r.runs_dir;
    const res = await buildDataset(r, datasetDir(path.join(runsDir, r.run_id)), log, path.join(runsDir, '_datasets'));
    manifests.push(res.manifest);
    out(`dataset of ${r.run_id}: ${res.manifest.dataset_hash.slice(0, 12)}${res.built ? ' (built)' : ' (shared build)'}`);
  }
  return manifests;
}

export function trainTokens(recipe: ResolvedRecipe, tokensPerEpoch: number): number {
  if (recipe.train.method === 'none') return 0;
  if (recipe.train.epochs !== undefined) return tokensPerEpoch * recipe.train.epochs;
  return recipe.train.max_steps! * recipe.train.batch_tokens * recipe.train.grad_accum;
}

/** Training tokens/s per GPU: the given rate, or the measured LoRA rate (full fine-tuning at 4/6 of it). */
function rateOf(r: ResolvedRecipe, rate: number | undefined): number {
  return rate ?? (r.train.method === 'lora' ? MEASURED_LORA_TOK_S : Math.round((MEASURED_LORA_TOK_S * 4) / 6));
}

const ELASTIC_COLUMNS = ['run', 'GPUs', 'batches per GPU and step', 'per GPU', 'fits', 'step', 'training (wall)'];

/** An elastic run on each of its GPU counts: memory per GPU (the plan), a step's and the whole training's time. */
function elasticRows(r: ResolvedRecipe, tokS: number, tokens: number): string[][] {
  const shape = modelShape(r);
  const batches = stepBatches(r);
  const stepTokens = r.train.batch_tokens * batches;
  return gpuCounts(r).map((n) => {
    const plan = shape ? memoryPlan(r, shape, n) : undefined;
    return [r.run_id, String(n), String(batches / n), plan ? gib(plan.total) : 'unknown shape',
      plan ? (fits(plan, r.resources.gpu_memory_gb) ? `yes (${r.resources.gpu_memory_gb} GiB)` : 'no') : '',
      `${(stepTokens / (tokS * n)).toPrecision(3)} s`, `${(tokens / (tokS * n) / 3600).toPrecision(3)} h`];
  });
}

export interface PlanOptions {
  /** What the plan is of (a preset's label, a sweep's name). */
  title: string;
  /** What the JSON form says first about it. */
  jsonHead: Record<string, unknown>;
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
export function dryRunPlan(recipes: ResolvedRecipe[], manifests: Manifest[], { title, jsonHead, rate, decodeRate, json, showRecipes, out, print, runsDir }: PlanOptions): number {
  out(`\n${title}: ${recipes.length} runs\n`);
  const rows = [['run', 'method', 'conditioning', 'train tokens/epoch', 'train tokens', 'tok/s', 'GPU hours']];
  const predictRows = [['run', 'prediction files', 'prompts', 'prompt tokens', 'generated tokens (at most)', 'model judge: replies', 'predict GPU hours', 'judge GPU hours']];
  const decode = decodeRate ?? ESTIMATED_DECODE_TOK_S;
  let train = 0;
  let predict = 0;
  for (const [i, r] of recipes.entries()) {
    const manifest = manifests[i]!;
    const tokens = trainTokens(r, manifest.lengths.train.tokens);
    const tokS = rateOf(r, rate);
    // The rates are per GPU: a run on N GPUs goes N times faster for the same GPU hours.
    const hours = tokens / tokS / 3600;
    train += hours;
    rows.push([r.run_id, r.train.method, r.data.conditioning, manifest.lengths.train.tokens.toLocaleString('en'), tokens.toLocaleString('en'), tokS.toLocaleString('en'), hours.toFixed(2)]);
    const shard = (split: string) => path.join(datasetDir(path.join(runsDir(r), r.run_id)), `${split}.tokens.safetensors`);
    const p = predictPlan(r, manifest, { trainTokS: tokS, decodeTokS: decode }, (split) => (existsSync(shard(split)) ? shardPromptTokens(shard(split)) : undefined));
    // A model asked through a chat endpoint is served elsewhere: its predictions take no GPU hours of this plan (an
    // untrained model loaded by the trainer's engines takes them as a trained one does).
    const served = r.eval.engine === 'openai-chat';
    if (served) p.hours.predict = 0;
    predict += p.hours.predict + p.hours.judge;
    predictRows.push([r.run_id, String(p.files), p.prompts.toLocaleString('en'), Math.round(p.promptTokens).toLocaleString('en'), p.maxGenerated.toLocaleString('en'),
      r.judge?.kind === 'model' ? p.judged.toLocaleString('en') : '-', served ? `endpoint ${redactUrl(r.eval.endpoint!.base_url)}` : p.hours.predict.toFixed(2), r.judge?.kind === 'model' ? p.hours.judge.toFixed(2) : '-']);
  }
  const total = train + predict;
  const elasticAll = () => recipes.flatMap((r, i) => (r.train.method !== 'none' && gpuCounts(r).length > 1
    ? elasticRows(r, rateOf(r, rate), trainTokens(r, manifests[i]!.lengths.train.tokens)) : []));
  const decodeNote = decodeRate === undefined
    ? `predict at ${ESTIMATED_DECODE_TOK_S.toLocaleString('en')} generated tok/s per GPU: an ESTIMATE, not measured here (measure yours: python trainer-python/bench/predict.py on the GPU, or a run's predictions/predict.json; then --predict-tokens-per-s)`
    : `predict at ${decodeRate.toLocaleString('en')} generated tok/s as given`;
  if (json) {
    const [head, ...body] = rows;
    const [phead, ...pbody] = predictRows;
    const memory = recipes.filter((r) => r.train.method !== 'none').map(planRow).map((row) => Object.fromEntries(PLAN_COLUMNS.map((h, i) => [h, row[i]])));
    print(JSON.stringify({ ...jsonHead, runs: body.map((row) => Object.fromEntries(head!.map((h, i) => [h, row[i]]))),
      predict: pbody.map((row) => Object.fromEntries(phead!.map((h, i) => [h, row[i]]))), predict_rate: { tokens_per_s: decode, measured: false, given: decodeRate !== undefined },
      memory, elastic: elasticAll().map((row) => Object.fromEntries(ELASTIC_COLUMNS.map((h, i) => [h, row[i]]))), gpu_hours: +total.toFixed(2), gpu_hours_train: +train.toFixed(2), gpu_hours_predict: +predict.toFixed(2), recipes }, null, 2));
    return EXIT.ok;
  }
  out(table(rows).join('\n'));
  out('\nprediction (every eval split, chosen and forced; replies up to eval.max_new_tokens) and a model judge:');
  out(table(predictRows).join('\n'));
  out(`\ntotal: ${total.toFixed(2)} GPU hours (training ${train.toFixed(2)}, prediction and judging ${predict.toFixed(2)}; scoring runs on a CPU)`);
  out(decodeNote);
  out(`\nGPU memory per recipe (estimate at each recipe's batch_tokens; GiB as the trainer logs them; GPUs@80GiB/141GiB: the fewest that fit ${USABLE_SHARE * 100}% of such cards)`);
  out(table([PLAN_COLUMNS, ...recipes.filter((r) => r.train.method !== 'none').map(planRow)]).join('\n'));
  for (const line of PLAN_LEGEND) out(line);
  const elastic = elasticAll();
  if (elastic.length) {
    out('\nelastic runs (resources.min_gpus): each GPU count a worker may start or resume them on, the same global batch on each;');
    out('a step and the whole training at the rate below (packed batches of batch_tokens; as good as that rate)');
    out(table([ELASTIC_COLUMNS, ...elastic]).join('\n'));
  }
  out(rate === undefined ? `rates: LoRA ${MEASURED_LORA_TOK_S.toLocaleString('en')} tok/s measured on one H200 (packed 8k); full fine-tuning estimated at 4/6 of it. Override with --tokens-per-s.` : `rate: ${rate} tok/s as given`);
  if (showRecipes) for (const r of recipes) out(`\n# ${r.run_id} (${path.relative(process.cwd(), r.recipe_file)})\n${stringify(r, { lineWidth: 0 }).trimEnd()}`);
  else out('\nthe resolved recipes: add --show-recipes (or --json)');
  out('nothing was written: the datasets were built in a temporary folder to count their tokens, then removed');
  return EXIT.ok;
}

/**
 * What evaluating a run through its endpoint asks (train.method none / eval.engine openai-chat): requests per eval
 * split, their prompt tokens (the dataset's own, counted with the recipe's tokenizer and chat template) and completion
 * tokens at most, the judge's requests, and with prices (USD per million tokens) what it costs at most.
 */
export function endpointPlan(r: ResolvedRecipe, m: Manifest, runDir: string, prices: { input?: number; output?: number }, out: (line: string) => void): number {
  const e = r.eval.endpoint!;
  out(`${r.run_id}: ${r.train.method === 'none' ? 'nothing trained; ' : ''}predictions from ${redactUrl(e.base_url)} (model ${e.model}, engine ${r.eval.engine})`);
  const rows = [['split', 'requests', 'prompt tokens', 'completion tokens (at most)']];
  let requests = 0;
  let promptTokens = 0;
  for (const split of r.eval.splits) {
    const shard = path.join(datasetDir(runDir), `${split}.tokens.safetensors`);
    const n = m.lengths[split as keyof Manifest['lengths']]?.documents ?? 0;
    const tokens = existsSync(shard) ? shardPromptTokens(shard) : 0;
    requests += n;
    promptTokens += tokens;
    rows.push([split, n.toLocaleString('en'), tokens.toLocaleString('en'), (n * r.eval.max_new_tokens).toLocaleString('en')]);
  }
  const completion = requests * r.eval.max_new_tokens;
  if (r.eval.splits.length > 1) rows.push(['all', requests.toLocaleString('en'), promptTokens.toLocaleString('en'), completion.toLocaleString('en')]);
  out(table(rows).map((l) => `  ${l}`).join('\n'));
  if (r.judge) {
    const at = r.judge.kind === 'openai' ? redactUrl(r.judge.base_url) : `model ${r.judge.model} on the worker's GPU`;
    out(`judge: ${requests.toLocaleString('en')} replies and ${requests.toLocaleString('en')} gold replies (its validity), asked of ${at}; its tokens are not counted here`);
  } else out('no judge: the replies get no behavior label (add a judge section; README: Judging replies)');
  out('prompt tokens are counted with the recipe\'s tokenizer and chat template (model.tokenizer): another model\'s tokenizer counts differently');
  if (prices.input !== undefined || prices.output !== undefined) {
    const input = (promptTokens / 1e6) * (prices.input ?? 0);
    const output = (completion / 1e6) * (prices.output ?? 0);
    out(`cost at $${prices.input ?? 0} / $${prices.output ?? 0} per million prompt / completion tokens: at most $${(input + output).toFixed(2)} (prompts $${input.toFixed(2)}, completions at most $${output.toFixed(2)}), the judge apart`);
  } else out('prices: --price-in and --price-out (USD per million prompt and completion tokens) give the cost');
  return EXIT.ok;
}
