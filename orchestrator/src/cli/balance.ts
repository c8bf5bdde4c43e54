import { existsSync, mkdirSync, renameSync, writeFileSync } from 'node:fs';
import path from 'node:path';
import { UsageError } from '../errors.js';
import { findRunDir } from '../run/run-dir.js';
import { balance, offsetsText, type PointReport, type BalanceResult, type BalanceRule, type BalanceTasks, balanceTasks, BalanceInputError } from '../score/balance.js';
import { pct } from '../score/format.js';
import { readGold, readPredictions } from '../score/inputs.js';
import { runRecipe } from '../score/run-scores.js';
import { table } from '../util/table.js';
import { EXIT, intOption, type CommandImpl } from './command.js';

/** A split's gold tasks and chosen predictions with their behavior log-probabilities, or undefined when not predicted. */
async function splitTasks(runDir: string, split: string, behaviors: string[], categories: Record<string, string>): Promise<BalanceTasks | undefined> {
  const goldFile = path.join(runDir, 'dataset', `${split}.messages.jsonl`);
  const predFile = path.join(runDir, 'predictions', `${split}.jsonl`);
  if (!existsSync(goldFile) || !existsSync(predFile)) return undefined;
  const gold = await readGold([goldFile], categories);
  const predictions = await readPredictions(predFile, new Map(gold.map((t) => [t.id, t])), behaviors);
  return balanceTasks(gold, predictions, behaviors, predFile);
}

function numberOption(values: Record<string, unknown>, name: string, fallback: number, ok: (n: number) => boolean, what: string): number {
  const v = values[name] as string | undefined;
  if (v === undefined) return fallback;
  const n = Number(v);
  if (!Number.isFinite(n) || !ok(n)) throw new UsageError(`--${name} must be ${what}`);
  return n;
}

const cell = (m: PointReport, key: 'macro_f1' | 'missed_intervention' | 'over_intervention') =>
  `${pct(m[key].value)} [${pct(m[key].ci[0])}, ${pct(m[key].ci[1])}]`;

/** The operating point against the default, on validation and test, as table lines. */
export function balanceLines(r: BalanceResult): string[] {
  const offsets = offsetsText(r.offsets) || 'none';
  const rows = [['split', 'point', 'macro-F1', 'missed intervention', 'over-intervention', ...r.behaviors.map((b) => `recall ${b}`)]];
  for (const [split, part] of [['val', r.val], ['test', r.test]] as const) {
    if (!part) continue;
    for (const [name, m] of [['default', part.default], ['chosen', part.chosen]] as const) {
      rows.push([`${split} (${part.tasks})`, name, cell(m, 'macro_f1'), cell(m, 'missed_intervention'), cell(m, 'over_intervention'), ...r.behaviors.map((b) => pct(m.recall[b]!))]);
    }
  }
  return [
    `operating point: offsets ${offsets} (added to each behavior's log-probability; ${r.rule.text}, chosen on ${r.split} over ` +
      `${r.grid.points} grid points within ±${r.grid.range} in steps of ${r.grid.step})`,
    ...table(rows, [1]),
    `95% intervals: ${r.bootstrap.resamples} case resamples, seed ${r.bootstrap.seed}. The test split never chose anything.`,
  ];
}

export const balanceCommand: CommandImpl = {
  async run([target], values, { out }) {
    const runDir = findRunDir(target!);
    const recipe = runRecipe(runDir);
    if (recipe.data.conditioning !== 'token') throw new BalanceInputError(`${runDir}: a run with conditioning ${recipe.data.conditioning} has no behavior tokens to balance`);
    const behaviors = Object.keys(recipe.data.behaviors);
    if (values.rule !== undefined && values.rule !== 'max-macro-f1') throw new UsageError(`--rule ${String(values.rule)}: the rules are max-macro-f1 (the default) and --max-missed X`);
    if (values['max-missed'] !== undefined && values.rule !== undefined) throw new UsageError('--max-missed is a rule of its own: leave out --rule');
    const rule: BalanceRule = values['max-missed'] !== undefined
      ? { kind: 'max-missed', bound: numberOption(values, 'max-missed', 0, (n) => n >= 0 && n <= 1, 'a share between 0 and 1 (0.05: 5%)') }
      : { kind: 'max-macro-f1' };
    const opts = {
      rule,
      range: numberOption(values, 'range', 8, (n) => n > 0 && n <= 100, 'a positive number of nats (at most 100)'),
      step: numberOption(values, 'step', 0.25, (n) => n > 0, 'a positive number'),
      resamples: intOption(values, 'bootstrap') ?? recipe.eval.bootstrap,
      seed: intOption(values, 'seed') ?? recipe.train.seed,
    };
    if (opts.range / opts.step > 200) throw new UsageError(`--range ${opts.range} in steps of ${opts.step} is over 200 steps a side: take a larger --step`);
    const val = await splitTasks(runDir, 'val', behaviors, recipe.data.categories);
    if (!val) {
      throw new BalanceInputError(`${runDir}: no predictions of the validation split (predictions/val.jsonl), where the point is chosen; ` +
        `make them with: bsft predict ${target} --split val`);
    }
    const test = (await splitTasks(runDir, 'test', behaviors, recipe.data.categories)) ?? null;
    const result = balance(val, test, opts);
    const file = path.join(runDir, 'balance.json');
    mkdirSync(runDir, { recursive: true });
    writeFileSync(`${file}.tmp`, `${JSON.stringify(result, null, 1)}\n`);
    renameSync(`${file}.tmp`, file);
    if (values.json) out(JSON.stringify(result, null, 2));
    else out([...balanceLines(result), `written: ${path.relative(process.cwd(), file)}${test ? '' : ' (no test predictions: only the validation split is shown)'}`].join('\n'));
    return EXIT.ok;
  },
};
