import { readFileSync } from 'node:fs';
import YAML from 'yaml';
import { z } from 'zod';
import { InputError } from '../errors.js';
import { fieldPath } from '../dataset/jsonl.js';

/** What a rater can answer to each question: the left reply (A), the right one (B), or neither over the other. */
export const ANSWERS = ['A', 'B', 'tie'] as const;
export type Answer = (typeof ANSWERS)[number];

const question = z.strictObject({
  id: z.string().regex(/^[a-z][a-z0-9_]{0,39}$/, 'lower-case letters, digits and _ (at most 40)'),
  text: z.string().min(1).max(200),
  help: z.string().max(1000).optional(),
});

/**
 * The questions a rater answers for each pair. The first question is the overall preference (the figure the report
 * leads with and the Bradley–Terry ranking uses); every question is answered A / B / tie.
 */
export const rubricSchema = z.strictObject({
  version: z.string().min(1).max(40),
  instructions: z.string().max(4000).default(''),
  questions: z.array(question).min(1).max(12).refine((q) => new Set(q.map((x) => x.id)).size === q.length, 'question ids must be unique'),
  /** An optional free-text comment per pair. */
  comment: z.boolean().default(true),
});
export type Rubric = z.infer<typeof rubricSchema>;

export const DEFAULT_RUBRIC: Rubric = {
  version: 'v1',
  instructions:
    'You see a clinical conversation and two replies an AI agent could give next. Judge them as a colleague on the ' +
    'ward would: a good agent answers what it is asked, steps in unprompted when something is omitted, wrong, ' +
    'inconsistent or risky, and otherwise holds back. The replies come from different systems in a random order.',
  questions: [
    { id: 'overall', text: 'Overall, which reply would you rather the agent gave?' },
    { id: 'realism', text: 'Clinical realism: which reads more like a competent clinician?' },
    { id: 'proactivity', text: 'Helpful proactivity: which better steps in where something needs it?' },
    { id: 'restraint', text: 'Appropriate restraint: which better avoids needless intervention?' },
  ],
  comment: true,
};

/** Reads a rubric YAML file (the whole rubric, or under a `rubric:` key), listing every problem with its path. */
export function loadRubric(file: string): Rubric {
  let doc: unknown;
  try {
    doc = YAML.parse(readFileSync(file, 'utf8'));
  } catch (e) {
    throw new InputError(`${file}: ${(e as Error).message}`);
  }
  if (doc && typeof doc === 'object' && 'rubric' in doc) doc = (doc as { rubric: unknown }).rubric;
  const parsed = rubricSchema.safeParse(doc);
  if (!parsed.success) throw new InputError(`${file}: not a rubric:\n${parsed.error.issues.map((i) => `  ${fieldPath(i.path) || '(top)'}: ${i.message}`).join('\n')}`);
  return parsed.data;
}
