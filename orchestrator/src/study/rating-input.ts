import { z } from 'zod';
import { fieldPath } from '../dataset/jsonl.js';
import { ANSWERS, type Rubric } from './rubric.js';
import type { Rating } from './study-files.js';

/** A rating as the page (or an offline form) sends it. */
export const ratingInput = z.strictObject({
  rating_id: z.string().regex(/^[A-Za-z0-9_-]{8,64}$/, '8 to 64 letters, digits, _ or -'),
  item: z.string().min(1).max(40),
  answers: z.record(z.string(), z.enum(ANSWERS)),
  comment: z.string().max(4000).default(''),
  ms: z.number().int().min(0).max(7 * 24 * 3600 * 1000),
  submitted_at: z.string().datetime().optional(),
});

/**
 * Checks a sent rating against the study (a known pair, every question of the rubric answered, nothing else) and
 * makes the stored record; returns the problems instead when there are any.
 */
export function toRating(body: unknown, rubric: Rubric, items: Set<string>, rater: string, source: Rating['source']): Rating | string[] {
  const p = ratingInput.safeParse(body);
  if (!p.success) return p.error.issues.map((i) => `${fieldPath(i.path) || '(rating)'}: ${i.message}`);
  const r = p.data;
  const problems: string[] = [];
  if (!items.has(r.item)) problems.push(`item: no pair "${r.item}" in this study`);
  for (const q of rubric.questions) if (!(q.id in r.answers)) problems.push(`answers.${q.id}: not answered`);
  for (const k of Object.keys(r.answers)) if (!rubric.questions.some((q) => q.id === k)) problems.push(`answers.${k}: not a question of this study`);
  if (r.comment && !rubric.comment) problems.push('comment: this study takes no comments');
  if (problems.length) return problems;
  return { rating_id: r.rating_id, rater, item: r.item, answers: r.answers, comment: r.comment, ms: r.ms, submitted_at: r.submitted_at ?? new Date().toISOString(), source };
}
