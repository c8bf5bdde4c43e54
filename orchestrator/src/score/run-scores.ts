import { ScoreInputError } from '../errors.js';
import { existsSync, mkdirSync, readdirSync, readFileSync, renameSync, writeFileSync } from 'node:fs';
import path from 'node:path';
import { DEFAULT_BEHAVIORS } from '../recipe/schema.js';
import { readRunRecipe } from '../run/run-dir.js';
import { readGold, readPredictions, type GoldTask, type Prediction } from './inputs.js';
import { encode, score, type Encoded, type ScoreOptions, type ScoreReport } from './metrics.js';

/** A scored prediction set with what a comparison needs. */
export interface Scored {
  label: string;
  /** The run folder it was scored from (undefined for a loose predictions file). */
  dir?: string;
  report: ScoreReport;
  gold: GoldTask[];
  encoded: Encoded;
}

interface RunRecipe {
  name: string;
  run_id: string;
  data: { behaviors: Record<string, unknown>; categories: Record<string, string>; conditioning: string };
  eval: { splits: string[]; bootstrap: number };
  train: { method: string; seed: number };
}

export function runRecipe(runDir: string): RunRecipe {
  const recipe = readRunRecipe(runDir);
  if (!recipe) throw new ScoreInputError(`${runDir} is not a run folder (no recipe.json)`);
  return recipe;
}

export function runLabel(recipe: RunRecipe): string {
  return `${recipe.name} (${recipe.data.conditioning}, ${recipe.train.method})`;
}

function forcedFiles(dir: string, split: string): string[] {
  if (!existsSync(dir)) return [];
  return readdirSync(dir)
    .filter((f) => f.startsWith(`${split}.forced-`) && f.endsWith('.jsonl'))
    .sort()
    .map((f) => path.join(dir, f));
}

/** Scores one split of a run folder (gold from its dataset, predictions from predictions/) and writes score/<split>.json. */
export async function scoreRun(runDir: string, split: string, opts: Partial<ScoreOptions> = {}): Promise<Scored> {
  const recipe = runRecipe(runDir);
  const behaviors = Object.keys(recipe.data.behaviors);
  const goldFile = path.join(runDir, 'dataset', `${split}.messages.jsonl`);
  const predFile = path.join(runDir, 'predictions', `${split}.jsonl`);
  if (!existsSync(goldFile)) throw new ScoreInputError(`no dataset split ${split} in ${runDir} (${goldFile})`);
  if (!existsSync(predFile)) throw new ScoreInputError(`no predictions for split ${split} in ${runDir} (${predFile}); make them with: bsft predict ${runDir}`);
  const gold = await readGold([goldFile], recipe.data.categories);
  const goldMap = new Map(gold.map((t) => [t.id, t]));
  const chosen = await readPredictions(predFile, goldMap, behaviors);
  const forced: Prediction[][] = [];
  for (const f of forcedFiles(path.join(runDir, 'predictions'), split)) forced.push(await readPredictions(f, goldMap, behaviors));
  const full: ScoreOptions = { resamples: opts.resamples ?? recipe.eval.bootstrap, seed: opts.seed ?? recipe.train.seed, split };
  const report = score(gold, chosen, forced, behaviors, full);
  const outDir = path.join(runDir, 'score');
  mkdirSync(outDir, { recursive: true });
  const tmp = path.join(outDir, `${split}.json.tmp`);
  writeFileSync(tmp, `${JSON.stringify(report, null, 2)}\n`);
  renameSync(tmp, path.join(outDir, `${split}.json`));
  return { label: runLabel(recipe), dir: runDir, report, gold, encoded: encode(gold, new Map(chosen.map((p) => [p.id, p])), behaviors) };
}

/** Scores a loose predictions file against task files (Contract 1 records or a dataset's messages.jsonl). */
export async function scoreFile(predictions: string, tasks: string[], opts: ScoreOptions): Promise<Scored> {
  const gold = await readGold(tasks);
  const defaults = Object.keys(DEFAULT_BEHAVIORS);
  const behaviors = [...defaults, ...[...new Set(gold.map((t) => t.behavior))].filter((b) => !defaults.includes(b)).sort()];
  const goldMap = new Map(gold.map((t) => [t.id, t]));
  const all = await readPredictions(predictions, goldMap, behaviors);
  const chosen = all.filter((p) => !p.forced);
  const byForced = new Map<string, Prediction[]>();
  for (const p of all.filter((p) => p.forced)) byForced.set(p.predicted_behavior ?? '', [...(byForced.get(p.predicted_behavior ?? '') ?? []), p]);
  const report = score(gold, chosen, [...byForced.values()], behaviors, opts);
  return { label: path.basename(predictions), report, gold, encoded: encode(gold, new Map(chosen.map((p) => [p.id, p])), behaviors) };
}
