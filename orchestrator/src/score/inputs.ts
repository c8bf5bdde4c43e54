import { z } from 'zod';
import { DataError, type DataProblem } from '../dataset/data-error.js';
import { readJsonl } from '../dataset/jsonl.js';
import type { TaskLabels } from '../dataset/task.js';

/** Gold labels of one task: from a dataset's messages.jsonl or from task files (Contract 1). */
export type GoldTask = TaskLabels;

/** Contract 7: one prediction line. */
export const predictionSchema = z.object({
  id: z.string().min(1),
  predicted_behavior: z.string().nullable(),
  predicted_answer: z.string().nullable().optional(),
  forced: z.boolean().optional(),
  /** Forced runs: the behavior a judge assigned to the generated reply, when one was run. */
  judged_behavior: z.string().nullable().optional(),
  /** eval.reply_tag: the behavior the reply's own tag names (`[proactive] ...`); null for a reply without one. */
  tagged_behavior: z.string().nullable().optional(),
  raw_token_ids: z.array(z.number().int()).optional(),
  /** The generated reply as text, special tokens (behavior tokens too) left out: what a judge reads. */
  reply: z.string().optional(),
  /** A token run's own choice (not forced): each behavior token's log-probability at the first generated position,
   * over the whole vocabulary; null where an endpoint did not return it (not among its top log-probabilities). */
  behavior_logprobs: z.record(z.string(), z.number().nullable()).optional(),
  /** The same, renormalised over the behavior tokens (over those returned, where some were not). */
  behavior_probs: z.record(z.string(), z.number().nullable()).optional(),
});
export type Prediction = z.infer<typeof predictionSchema>;

const goldSchema = z.object({
  id: z.string().min(1),
  case_id: z.string().min(1),
  category: z.string().min(1),
  behavior: z.string().min(1).optional(),
  hard: z.boolean().optional(),
  answer: z.string().optional(),
});

/** Reads gold tasks; `categories` maps category -> behavior for tasks without a behavior field. */
export async function readGold(files: string[], categories: Record<string, string> = {}): Promise<GoldTask[]> {
  const out: GoldTask[] = [];
  const problems: DataProblem[] = [];
  const seen = new Set<string>();
  for (const file of files) {
    for await (const { value: t, problem } of readJsonl(file, goldSchema, problems)) {
      const behavior = t.behavior ?? categories[t.category];
      if (!behavior) {
        problem('behavior', `missing, and category "${t.category}" has no behavior`);
        continue;
      }
      if (seen.has(t.id)) {
        problem('id', `duplicate task id "${t.id}"`);
        continue;
      }
      seen.add(t.id);
      out.push({ id: t.id, case_id: t.case_id, category: t.category, behavior, hard: t.hard ?? false, ...(t.answer !== undefined ? { answer: t.answer } : {}) });
    }
  }
  if (problems.length) throw new DataError(problems);
  return out;
}

/**
 * Reads predictions and checks them against the gold tasks and the behavior labels: an unknown id, a duplicate id
 * or an unknown label is an error naming its line.
 */
export async function readPredictions(file: string, gold: Map<string, GoldTask>, behaviors: string[]): Promise<Prediction[]> {
  const out: Prediction[] = [];
  const problems: DataProblem[] = [];
  const seen = new Map<string, number>();
  const labels = new Set(behaviors);
  for await (const { value: p, line, problem } of readJsonl(file, predictionSchema, problems)) {
    if (!gold.has(p.id)) problem('id', `unknown task id "${p.id}"`);
    else if (seen.has(p.id)) problem('id', `duplicate prediction for "${p.id}" (first at line ${seen.get(p.id)})`);
    else {
      for (const field of ['predicted_behavior', 'judged_behavior', 'tagged_behavior'] as const) {
        const v = p[field];
        if (v != null && !labels.has(v)) problem(field, `unknown label "${v}" (behaviors: ${behaviors.join(', ')})`);
      }
      seen.set(p.id, line);
      out.push(p);
    }
  }
  if (problems.length) throw new DataError(problems);
  return out;
}
