import { ScoreInputError } from '../errors.js';
import { existsSync, mkdirSync, readFileSync, renameSync, writeFileSync } from 'node:fs';
import { goldFileName, readJudgments } from '../judge/judgments.js';
import { agreement } from './agreement.js';
import path from 'node:path';
import { DEFAULT_BEHAVIORS } from '../recipe/schema.js';
import { readRunRecipe } from '../run/run-dir.js';
import { forcedPredictionsFiles } from '../run/trainer-config.js';
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
  return `${recipe.name} (${recipe.data.conditioning}, ${recipe.train.method === 'none' ? 'not trained' : recipe.train.method})`;
}

/**
 * Scores one split of a run folder (gold from its dataset, predictions from predictions/) and writes score/<split>.json
 * (unless `write` is false: a look that must not replace the run's own score).
 */
export async function scoreRun(runDir: string, split: string, opts: Partial<ScoreOptions> = {}, { write = true } = {}): Promise<Scored> {
  const recipe = runRecipe(runDir);
  const behaviors = Object.keys(recipe.data.behaviors);
  const goldFile = path.join(runDir, 'dataset', `${split}.messages.jsonl`);
  const predFile = path.join(runDir, 'predictions', `${split}.jsonl`);
  if (!existsSync(goldFile)) throw new ScoreInputError(`no dataset split ${split} in ${runDir} (${goldFile})`);
  if (!existsSync(predFile)) throw new ScoreInputError(`no predictions for split ${split} in ${runDir} (${predFile}); make them with: bsft predict ${runDir}`);
  const gold = await readGold([goldFile], recipe.data.categories);
  const goldMap = new Map(gold.map((t) => [t.id, t]));
  // The judge's labels (judge/, same file names): a chosen prediction without a token label takes the judge's.
  const read = await readPredictions(predFile, goldMap, behaviors);
  const judged = await readJudgments(runDir, `${split}.jsonl`);
  const source = { token: 0, judge: 0, none: 0 };
  const chosen = read.map((p) => {
    const j = judged?.get(p.id)?.judged_behavior ?? null;
    if (p.predicted_behavior != null) source.token++;
    else if (j != null) source.judge++;
    else source.none++;
    return { ...p, ...(judged ? { judged_behavior: j } : {}), ...(p.predicted_behavior == null && j != null ? { predicted_behavior: j } : {}) };
  });
  const forced: Prediction[][] = [];
  for (const f of forcedPredictionsFiles(runDir, split)) {
    const labels = await readJudgments(runDir, path.basename(f));
    forced.push((await readPredictions(f, goldMap, behaviors)).map((p) => (labels?.has(p.id) ? { ...p, judged_behavior: labels.get(p.id)!.judged_behavior } : p)));
  }
  const tagged = read.some((p) => p.tagged_behavior !== undefined);
  const full: ScoreOptions = { resamples: opts.resamples ?? recipe.eval.bootstrap, seed: opts.seed ?? recipe.train.seed, split, ...(opts.subset ? { subset: opts.subset } : {}) };
  const report = score(gold, chosen, forced, behaviors, full);
  report.label_source = source;
  if (tagged) {
    // The tags scored as if they were the predictions (none: wrong), and against the judge's labels where it gave one.
    const byTag = score(gold, read.map((p) => ({ ...p, predicted_behavior: p.tagged_behavior ?? null })), [], behaviors, { resamples: full.resamples, seed: full.seed });
    const withJudge = read.filter((p) => judged?.get(p.id)?.judged_behavior != null);
    report.tag = {
      untagged: read.filter((p) => p.tagged_behavior == null).length + (gold.length - read.length),
      macro_f1: byTag.overall.macro_f1,
      accuracy: byTag.overall.accuracy,
      judge_agreement: withJudge.length
        ? agreement(withJudge.map((p) => ({ a: judged!.get(p.id)!.judged_behavior!, b: p.tagged_behavior ?? null, case_id: goldMap.get(p.id)!.case_id })), behaviors, full.resamples, full.seed)
        : null,
    };
  }
  const onGold = await readJudgments(runDir, goldFileName(split));
  if (onGold) {
    const settings = JSON.parse(readFileSync(path.join(runDir, 'judge', 'summary.json'), 'utf8')) as { model: string; prompt_version: string };
    const tokenJudged = read.filter((p) => p.predicted_behavior != null && judged?.has(p.id));
    report.judge = {
      model: settings.model,
      prompt_version: settings.prompt_version,
      validity: {
        ...agreement(gold.map((t) => ({ a: t.behavior, b: onGold.get(t.id)?.judged_behavior ?? null, case_id: t.case_id })), behaviors, full.resamples, full.seed),
        unparseable: [...onGold.values()].filter((r) => r.status === 'unparseable').length,
      },
      agreement: tokenJudged.length
        ? agreement(tokenJudged.map((p) => ({ a: p.predicted_behavior!, b: judged!.get(p.id)!.judged_behavior, case_id: goldMap.get(p.id)!.case_id })), behaviors, full.resamples, full.seed)
        : null,
    };
  }
  if (write) {
    const outDir = path.join(runDir, 'score');
    mkdirSync(outDir, { recursive: true });
    const tmp = path.join(outDir, `${split}.json.tmp`);
    writeFileSync(tmp, `${JSON.stringify(report, null, 2)}\n`);
    renameSync(tmp, path.join(outDir, `${split}.json`));
  }
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
