import { randomBytes } from 'node:crypto';
import { existsSync, mkdirSync, renameSync, rmSync, writeFileSync } from 'node:fs';
import path from 'node:path';
import { z } from 'zod';
import { DataError, type DataProblem } from '../dataset/data-error.js';
import { instructionPrompt } from '../dataset/condition.js';
import { readJsonl } from '../dataset/jsonl.js';
import { InputError } from '../errors.js';
import { stripBehaviorTokens } from '../judge/prompt.js';
import { readRunRecipe } from '../run/run-dir.js';
import type { ResolvedRecipe } from '../recipe/resolve.js';
import { readGold, readPredictions } from '../score/inputs.js';
import { runLabel } from '../score/run-scores.js';
import { Rng } from '../util/rng.js';
import type { Rubric } from './rubric.js';
import { STUDY_FORMAT, studyFile, type Item, type KeyEntry, type Study, type StudyRun, type Turn } from './study-files.js';

export interface CreateOptions {
  name: string;
  /** The study's folder (studies/<name>). */
  dir: string;
  runDirs: string[];
  split: string;
  n: number;
  seed: number;
  /** Sample each category (or behavior group) in proportion to its share of the eligible tasks. */
  stratify: 'category' | 'group' | null;
  rubric: Rubric;
}

export interface Created {
  study: Study;
  /** Tasks every run predicted with a reply (what could be sampled). */
  eligible: number;
  /** Sampled tasks per stratum (category or group), or per category without stratification. */
  strata: Record<string, number>;
}

const promptLine = z.object({
  id: z.string(),
  case_id: z.string(),
  category: z.string(),
  behavior: z.string().optional(),
  prompt: z.array(z.object({ role: z.string(), content: z.string() })),
});

/** A run's rendering speaks as `Name: text` (ChatML has no name field): shown as speaker and text again. */
const SPEAKER = /^([^\n:]{1,80}): /;

function turns(messages: { role: string; content: string }[], recipe: ResolvedRecipe): Turn[] {
  let m = messages;
  // An instruction run's system prompt describes the behaviors: it would tell raters which system they read.
  if (recipe.data.conditioning === 'instruction' && m[0]?.role === 'system') {
    const prompt = instructionPrompt({ mode: 'instruction', behaviors: recipe.data.behaviors, instruction: recipe.data.instruction });
    const rest = m[0].content === prompt ? null : m[0].content.startsWith(`${prompt}\n\n`) ? m[0].content.slice(prompt.length + 2) : m[0].content;
    m = rest === null ? m.slice(1) : [{ role: 'system', content: rest }, ...m.slice(1)];
  }
  return m.map((x) => {
    const s = x.role === 'system' ? null : SPEAKER.exec(x.content);
    return s ? { role: x.role, name: s[1]!, content: x.content.slice(s[0].length) } : { role: x.role, content: x.content };
  });
}

/** Shares of n by largest remainder: every stratum's count is floor or ceil of its share, and they sum to n. */
export function allocate(sizes: Record<string, number>, n: number): Record<string, number> {
  const total = Object.values(sizes).reduce((a, b) => a + b, 0);
  const keys = Object.keys(sizes).sort();
  const exact = keys.map((k) => (n * sizes[k]!) / total);
  const out = Object.fromEntries(keys.map((k, i) => [k, Math.min(sizes[k]!, Math.floor(exact[i]!))]));
  let left = n - Object.values(out).reduce((a, b) => a + b, 0);
  const order = keys.map((k, i) => [k, exact[i]! - Math.floor(exact[i]!)] as const).sort((a, b) => b[1] - a[1] || a[0].localeCompare(b[0]));
  while (left > 0) {
    let moved = false;
    for (const [k] of order) {
      if (left > 0 && out[k]! < sizes[k]!) {
        out[k]!++;
        left--;
        moved = true;
      }
    }
    if (!moved) break;
  }
  return out;
}

interface RunData {
  run: StudyRun;
  recipe: ResolvedRecipe;
  replies: Map<string, string>;
}

async function readRun(dir: string, split: string): Promise<RunData> {
  const recipe = readRunRecipe(dir);
  if (!recipe) throw new InputError(`${dir} is not a run folder (no recipe.json)`);
  const goldFile = path.join(dir, 'dataset', `${split}.messages.jsonl`);
  const predFile = path.join(dir, 'predictions', `${split}.jsonl`);
  if (!existsSync(goldFile)) throw new InputError(`no dataset split ${split} in ${dir} (${goldFile})`);
  if (!existsSync(predFile)) throw new InputError(`no predictions for split ${split} in ${dir}; make them with: bsft predict ${dir}`);
  const gold = await readGold([goldFile], recipe.data.categories);
  const behaviors = Object.keys(recipe.data.behaviors);
  const preds = await readPredictions(predFile, new Map(gold.map((t) => [t.id, t])), behaviors);
  const replies = new Map<string, string>();
  for (const p of preds) if (typeof p.reply === 'string') replies.set(p.id, p.reply);
  if (!replies.size) {
    throw new InputError(`${path.relative(process.cwd(), predFile) || predFile}: no reply text (predictions made with eval.max_new_tokens: 1?); raters need whole replies: predict with --set eval.max_new_tokens=256`);
  }
  return { run: { run_id: recipe.run_id, label: runLabel(recipe), dir }, recipe, replies };
}

/**
 * Samples tasks every run predicted, pairs the runs' replies on each (every pair of runs), orders each pair at
 * random (seeded) and writes the study folder whole (built beside it, then renamed): items for raters, the key apart.
 */
export async function createStudy(o: CreateOptions): Promise<Created> {
  if (o.runDirs.length < 2) throw new InputError('a study compares at least two runs (--runs A B [C...])');
  if (existsSync(o.dir)) throw new InputError(`study ${o.name} exists (${o.dir}); choose another name, or remove it first`);
  const runs: RunData[] = [];
  for (const d of o.runDirs) runs.push(await readRun(d, o.split));
  const ids = runs.map((r) => r.run.run_id);
  const dup = ids.find((id, i) => ids.indexOf(id) !== i);
  if (dup) throw new InputError(`run ${dup} is given twice`);

  // The conversation comes from a run that shows it as the task has it (not an instruction run's system prompt).
  const source = runs.find((r) => r.recipe.data.conditioning !== 'instruction') ?? runs[0]!;
  const goldFile = path.join(source.run.dir, 'dataset', `${o.split}.messages.jsonl`);
  const problems: DataProblem[] = [];
  const tasks: z.infer<typeof promptLine>[] = [];
  for await (const { value } of readJsonl(goldFile, promptLine, problems)) {
    if (runs.every((r) => r.replies.has(value.id))) tasks.push(value);
  }
  if (problems.length) throw new DataError(problems);
  if (!tasks.length) throw new InputError(`no task of split ${o.split} was predicted with a reply by every run`);
  const group = (t: (typeof tasks)[number]) => t.behavior ?? source.recipe.data.categories[t.category] ?? '-';
  const stratumOf = (t: (typeof tasks)[number]) => (o.stratify === 'group' ? group(t) : t.category);

  const rng = new Rng(o.seed);
  const n = Math.min(o.n, tasks.length);
  let sampled: typeof tasks;
  if (o.stratify) {
    const buckets = new Map<string, typeof tasks>();
    for (const t of tasks) {
      const k = stratumOf(t);
      if (!buckets.has(k)) buckets.set(k, []);
      buckets.get(k)!.push(t);
    }
    const quota = allocate(Object.fromEntries([...buckets].map(([k, v]) => [k, v.length])), n);
    sampled = rng.shuffle([...buckets.keys()].sort().flatMap((k) => rng.shuffle([...buckets.get(k)!]).slice(0, quota[k])));
  } else {
    sampled = rng.shuffle([...tasks]).slice(0, n);
  }

  // The reply as a rater reads it: no behavior token of any compared run (its behavior shows only in its text).
  const tokens = [...new Set(runs.flatMap((r) => Object.values(r.recipe.data.behaviors).map((b) => b.token)))];
  const items: Item[] = [];
  const key: KeyEntry[] = [];
  const used = new Set<string>();
  const itemId = () => {
    for (;;) {
      const id = `p${Math.floor(rng.next() * 2 ** 32).toString(16).padStart(8, '0')}`;
      if (!used.has(id)) return used.add(id), id;
    }
  };
  for (const t of sampled) {
    const conversation = turns(t.prompt, source.recipe);
    for (let i = 0; i < runs.length; i++) {
      for (let j = i + 1; j < runs.length; j++) {
        const a = rng.next() < 0.5 ? i : j;
        const b = a === i ? j : i;
        const item = itemId();
        items.push({ item, conversation, A: stripBehaviorTokens(runs[a]!.replies.get(t.id)!, tokens), B: stripBehaviorTokens(runs[b]!.replies.get(t.id)!, tokens) });
        key.push({ item, task_id: t.id, case_id: t.case_id, category: t.category, group: group(t), runs: [i, j], a });
      }
    }
  }
  const strata: Record<string, number> = {};
  for (const t of sampled) strata[stratumOf(t)] = (strata[stratumOf(t)] ?? 0) + 1;

  const study: Study = {
    format: STUDY_FORMAT,
    name: o.name,
    id: randomBytes(16).toString('hex'),
    created: new Date().toISOString(),
    split: o.split,
    seed: o.seed,
    tasks: sampled.length,
    stratify: o.stratify,
    runs: runs.map((r) => r.run),
    rubric: o.rubric,
    items: items.length,
  };
  const tmp = `${o.dir}.tmp-${process.pid}`;
  rmSync(tmp, { recursive: true, force: true });
  mkdirSync(tmp, { recursive: true });
  const jsonl = (rows: unknown[]) => rows.map((r) => `${JSON.stringify(r)}\n`).join('');
  writeFileSync(studyFile(tmp, 'study.json'), `${JSON.stringify(study, null, 2)}\n`);
  writeFileSync(studyFile(tmp, 'items.jsonl'), jsonl(items));
  writeFileSync(studyFile(tmp, 'key.jsonl'), jsonl(key));
  writeFileSync(studyFile(tmp, 'raters.json'), `${JSON.stringify({ raters: [] }, null, 2)}\n`);
  renameSync(tmp, o.dir);
  return { study, eligible: tasks.length, strata };
}
