import { createHash } from 'node:crypto';
import { existsSync, readFileSync, renameSync, writeFileSync } from 'node:fs';
import path from 'node:path';
import { InputError } from '../errors.js';
import type { Answer, Rubric } from './rubric.js';

/**
 * A study's folder, `studies/<name>/`:
 * - `study.json`: the settings and the runs compared (ids, labels, folders) — the blinding key's header;
 * - `items.jsonl`: what raters see, one pair per line (conversation, reply A, reply B) — no run, method or task id;
 * - `key.jsonl`: per item, the task and which run is A and which is B — never sent to a browser;
 * - `raters.json`: rater names and the sha256 of each one's link token (the token itself is printed once);
 * - `ratings.log`: the ratings, an append-only log, fsynced per record, each line with its checksum.
 */
export const STUDY_FORMAT = 'bsft-study-v1';

export class StudyNotFoundError extends InputError {}

export interface StudyRun {
  run_id: string;
  /** The run's name, conditioning and method, as reports name it. */
  label: string;
  dir: string;
}

export interface Study {
  format: typeof STUDY_FORMAT;
  name: string;
  /** A random id, so that an offline form's ratings are only taken back into the study that wrote it. */
  id: string;
  created: string;
  split: string;
  seed: number;
  /** Tasks sampled (each paired for every pair of runs). */
  tasks: number;
  stratify: string | null;
  runs: StudyRun[];
  rubric: Rubric;
  items: number;
}

/** One conversation turn as a rater sees it. */
export interface Turn {
  role: string;
  name?: string;
  content: string;
}

/** items.jsonl: one pair as raters see it. */
export interface Item {
  item: string;
  conversation: Turn[];
  A: string;
  B: string;
}

/** key.jsonl: what an item hides. `runs` is the pair in the study's run order; `a` is the run shown as A. */
export interface KeyEntry {
  item: string;
  task_id: string;
  case_id: string;
  category: string;
  /** The behavior the task calls for (its category's group). */
  group: string;
  runs: [number, number];
  a: number;
}

export interface Rater {
  name: string;
  token_sha256: string;
  added: string;
}

/** One rating as the log keeps it: answers as the rater saw the pair (A = left). */
export interface Rating {
  /** Chosen by the page per submission: the same rating sent twice is stored once. */
  rating_id: string;
  rater: string;
  item: string;
  answers: Record<string, Answer>;
  comment: string;
  /** Time the rater spent on the pair, in milliseconds. */
  ms: number;
  submitted_at: string;
  source: 'web' | 'offline';
}

export const tokenHash = (token: string) => createHash('sha256').update(token).digest('hex');

export function studyDir(name: string, dir = 'studies'): string {
  if (!/^[A-Za-z0-9][A-Za-z0-9._-]{0,79}$/.test(name)) throw new InputError(`study name "${name}": letters, digits, . _ - (at most 80), starting with a letter or digit`);
  return path.resolve(dir, name);
}

export const studyFile = (d: string, f: 'study.json' | 'items.jsonl' | 'key.jsonl' | 'raters.json' | 'ratings.log') => path.join(d, f);

/** A study folder given by name (under --dir) or by path. */
export function findStudy(arg: string, dir = 'studies'): string {
  for (const c of [path.resolve(arg), path.resolve(dir, arg)]) if (existsSync(path.join(c, 'study.json'))) return c;
  throw new StudyNotFoundError(`no study "${arg}" (looked for study.json in ${arg} and ${path.join(dir, arg)}); create one with: bsft study create ${arg} --runs A B`);
}

export function readStudy(d: string): Study {
  const s = JSON.parse(readFileSync(studyFile(d, 'study.json'), 'utf8')) as Study;
  if (s.format !== STUDY_FORMAT) throw new InputError(`${d}: study format ${s.format}, this bsft reads ${STUDY_FORMAT}`);
  return s;
}

const readLines = <T>(file: string): T[] => readFileSync(file, 'utf8').split('\n').filter((l) => l).map((l) => JSON.parse(l) as T);
export const readItems = (d: string) => readLines<Item>(studyFile(d, 'items.jsonl'));
export const readKey = (d: string) => readLines<KeyEntry>(studyFile(d, 'key.jsonl'));

export function readRaters(d: string): Rater[] {
  const f = studyFile(d, 'raters.json');
  return existsSync(f) ? (JSON.parse(readFileSync(f, 'utf8')) as { raters: Rater[] }).raters : [];
}

/** Writes a file whole: beside it first, then renamed over it. */
export function writeWhole(file: string, text: string): void {
  writeFileSync(`${file}.tmp`, text);
  renameSync(`${file}.tmp`, file);
}

export function writeRaters(d: string, raters: Rater[]): void {
  writeWhole(studyFile(d, 'raters.json'), `${JSON.stringify({ raters }, null, 2)}\n`);
}
