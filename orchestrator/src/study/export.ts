import { mkdirSync, readFileSync } from 'node:fs';
import path from 'node:path';
import { z } from 'zod';
import { InputError } from '../errors.js';
import { ratingPage, raterView } from './page.js';
import { toRating } from './rating-input.js';
import { RatingsLog, studyRatings } from './ratings-log.js';
import { readItems, readKey, readRaters, readStudy, studyFile, writeWhole, type Rating } from './study-files.js';

/** One exported rating: the pair unblinded (which run was A), answers as shown and as the run they favour. */
export interface ExportRow {
  rater: string;
  item: string;
  task_id: string;
  case_id: string;
  category: string;
  group: string;
  run_a: string;
  run_b: string;
  /** `a-left`: the pair's first run was shown as A (left); `b-left`: the second was. */
  order: 'a-left' | 'b-left';
  answers: Record<string, string>;
  /** Per question: the run preferred (its label), or `tie`. */
  winners: Record<string, string>;
  comment: string;
  seconds: number;
  submitted_at: string;
  source: string;
}

export function exportRows(dir: string): ExportRow[] {
  const study = readStudy(dir);
  const key = new Map(readKey(dir).map((k) => [k.item, k]));
  const rows: ExportRow[] = [];
  for (const r of studyRatings(dir)) {
    const k = key.get(r.item);
    if (!k) continue;
    const [i, j] = k.runs;
    const shownB = k.a === i ? j : i;
    rows.push({
      rater: r.rater, item: r.item, task_id: k.task_id, case_id: k.case_id, category: k.category, group: k.group,
      run_a: study.runs[i]!.label, run_b: study.runs[j]!.label, order: k.a === i ? 'a-left' : 'b-left',
      answers: r.answers,
      winners: Object.fromEntries(Object.entries(r.answers).map(([q, v]) => [q, v === 'tie' ? 'tie' : study.runs[v === 'A' ? k.a : shownB]!.label])),
      comment: r.comment, seconds: r.ms / 1000, submitted_at: r.submitted_at, source: r.source,
    });
  }
  return rows.sort((a, b) => a.rater.localeCompare(b.rater) || a.submitted_at.localeCompare(b.submitted_at));
}

/** RFC 4180: a field with a comma, quote or line break is quoted, quotes doubled. */
const csvField = (v: string | number) => {
  const s = String(v);
  return /[",\r\n]/.test(s) ? `"${s.replace(/"/g, '""')}"` : s;
};

export function toCsv(rows: ExportRow[], questions: string[]): string {
  const head = ['rater', 'item', 'task_id', 'case_id', 'category', 'group', 'run_a', 'run_b', 'order', ...questions.flatMap((q) => [q, `${q}_winner`]), 'comment', 'seconds', 'submitted_at', 'source'];
  const lines = rows.map((r) => [r.rater, r.item, r.task_id, r.case_id, r.category, r.group, r.run_a, r.run_b, r.order,
    ...questions.flatMap((q) => [r.answers[q] ?? '', r.winners[q] ?? '']), r.comment, r.seconds, r.submitted_at, r.source].map(csvField).join(','));
  return `${[head.join(','), ...lines].join('\r\n')}\r\n`;
}

/** The self-contained form of one rater: their pairs in their order and their answers so far. */
export function offlineForm(dir: string, rater: string): string {
  const study = readStudy(dir);
  if (!readRaters(dir).some((r) => r.name === rater)) throw new InputError(`no rater ${rater} in study ${study.name} (add one with: bsft study add-rater ${study.name} ${rater})`);
  const items = readItems(dir);
  return ratingPage({
    study_id: study.id,
    rater,
    ...raterView(study, items.map((i) => i.item), studyRatings(dir), rater),
    items: Object.fromEntries(items.map((i) => [i.item, i])),
  });
}

/** Writes ratings.csv, ratings.jsonl and one offline form per named rater into `out`; returns the files. */
export function exportStudy(dir: string, out: string, formsFor: string[]): string[] {
  const study = readStudy(dir);
  const rows = exportRows(dir);
  mkdirSync(out, { recursive: true });
  const files: [string, string][] = [
    ['ratings.csv', toCsv(rows, study.rubric.questions.map((q) => q.id))],
    ['ratings.jsonl', rows.map((r) => `${JSON.stringify(r)}\n`).join('')],
    ...formsFor.map((r): [string, string] => [`form-${r}.html`, offlineForm(dir, r)]),
  ];
  for (const [name, text] of files) writeWhole(path.join(out, name), text);
  return files.map(([name]) => path.join(out, name));
}

const offlineFile = z.strictObject({
  format: z.literal('bsft-study-offline-v1'),
  study_id: z.string(),
  rater: z.string(),
  ratings: z.array(z.unknown()),
});

/**
 * Takes back the ratings of offline forms. Every file is checked whole before anything is stored (its study, its
 * rater, each rating as the server checks one); a rating already stored (same rating_id) is not stored again.
 * The caller holds the study's lock.
 */
export function importRatings(dir: string, files: string[]): { stored: number; known: number } {
  const study = readStudy(dir);
  const items = new Set(readItems(dir).map((i) => i.item));
  const raters = new Set(readRaters(dir).map((r) => r.name));
  const problems: string[] = [];
  const ratings: Rating[] = [];
  for (const file of files) {
    const name = path.relative(process.cwd(), file) || file;
    let doc: unknown;
    try {
      doc = JSON.parse(readFileSync(file, 'utf8'));
    } catch (e) {
      problems.push(`${name}: not JSON (${(e as Error).message})`);
      continue;
    }
    const f = offlineFile.safeParse(doc);
    if (!f.success) {
      problems.push(`${name}: not a form's ratings file (${f.error.issues.map((i) => `${i.path.join('.') || '(top)'}: ${i.message}`).join('; ')})`);
      continue;
    }
    if (f.data.study_id !== study.id) problems.push(`${name}: written by a form of another study (its study_id is not ${study.name}'s)`);
    if (!raters.has(f.data.rater)) problems.push(`${name}: no rater ${f.data.rater} in study ${study.name}`);
    f.data.ratings.forEach((x, i) => {
      const r = toRating(x, study.rubric, items, f.data.rater, 'offline');
      if (Array.isArray(r)) problems.push(...r.map((p) => `${name}: ratings[${i}].${p}`));
      else ratings.push(r);
    });
  }
  if (problems.length) throw new InputError(`nothing imported:\n${problems.map((p) => `  ${p}`).join('\n')}`);
  const log = RatingsLog.open(studyFile(dir, 'ratings.log'));
  try {
    let stored = 0;
    for (const r of ratings) if (log.append(r).stored) stored++;
    return { stored, known: ratings.length - stored };
  } finally {
    log.close();
  }
}
