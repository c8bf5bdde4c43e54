import { appendFileSync, existsSync, mkdirSync, readFileSync, renameSync, writeFileSync } from 'node:fs';
import path from 'node:path';
import { z } from 'zod';
import { DataError } from '../dataset/data-error.js';
import type { Logger } from '../log.js';
import type { ResolvedRecipe } from '../recipe/resolve.js';
import type { JudgeSettings } from '../recipe/schema.js';
import { forcedPredictionsFiles, predictionsFile } from '../run/trainer-config.js';
import { predictionSchema } from '../score/inputs.js';
import { createProgress } from '../util/progress.js';
import { sha256 } from '../util/sha256.js';
import type { Judgment } from './openai-judge.js';
import { goldFileName, readRows, type JudgmentRow } from './judgments.js';
import { judgeMessages, replyHash, type ChatMessage, type Turn } from './prompt.js';

interface Request {
  id: string;
  context: Turn[];
  reply: string;
}

interface JudgeFile {
  /** Output name under judge/. */
  name: string;
  requests: Request[];
}

const documentSchema = z.object({ id: z.string(), messages: z.array(z.object({ role: z.string(), content: z.string() })) });

/**
 * What a run's judge labels: for each eval split, the gold replies (judge validity), every forced-token prediction
 * file (steering), and the chosen predictions when no token gives their behavior (or `also_token_runs`).
 */
export async function judgeFiles(recipe: ResolvedRecipe, runDir: string): Promise<JudgeFile[]> {
  const settings = recipe.judge!;
  const files: JudgeFile[] = [];
  for (const split of recipe.eval.splits) {
    const docs = await readRows(path.join(runDir, 'dataset', `${split}.messages.jsonl`), documentSchema);
    const contexts = new Map(docs.map((d) => [d.id, d.messages.slice(0, -1)]));
    files.push({ name: goldFileName(split), requests: docs.map((d) => ({ id: d.id, context: d.messages.slice(0, -1), reply: d.messages.at(-1)?.content ?? '' })) });
    // The chosen predictions only when no token labels them (or also_token_runs); every forced-token file.
    const chosen = predictionsFile(runDir, split, []);
    const judgeChosen = existsSync(chosen) && (recipe.data.conditioning !== 'token' || settings.also_token_runs);
    for (const file of [...(judgeChosen ? [chosen] : []), ...forcedPredictionsFiles(runDir, split)]) {
      const rows = await readRows(file, predictionSchema);
      const missing = rows.filter((r) => r.reply === undefined);
      if (missing.length) {
        throw new DataError([{ file, line: 0, field: 'reply', message: `${missing.length} prediction(s) have no reply text to judge (e.g. ${missing[0]!.id}); make them again with: bsft predict ${runDir}` }]);
      }
      files.push({ name: path.basename(file), requests: rows.map((r) => ({ id: r.id, context: contexts.get(r.id) ?? [], reply: r.reply! })) });
    }
  }
  return files;
}

/** Labels already given, by (judge, model, prompt version, task, conversation, reply): appended as answers come, read back on a re-run. */
class JudgeCache {
  private readonly entries = new Map<string, Judgment>();

  constructor(private readonly file: string) {
    if (!existsSync(file)) return;
    for (const line of readFileSync(file, 'utf8').split('\n')) {
      try {
        const e = JSON.parse(line) as { key: string } & Judgment;
        this.entries.set(e.key, { label: e.label, raw: e.raw, status: e.status, tokens: 0 });
      } catch {
        // a line cut short by a kill: that answer is asked again
      }
    }
  }

  /** The conversation is part of the key: the same id and reply under another conversation is another question. */
  static key(settings: JudgeSettings, r: Request): string {
    return sha256(JSON.stringify([settings.kind, settings.model, settings.prompt_version, r.id, sha256(JSON.stringify(r.context)), replyHash(r.reply)]));
  }

  has(key: string): boolean {
    return this.entries.has(key);
  }

  get(key: string): Judgment | undefined {
    return this.entries.get(key);
  }

  private pending: string[] = [];
  private lastFlush = Date.now();

  /** Kept at once; on disk in batches (every 64 answers or half a second): a kill loses at most those. */
  put(key: string, j: Judgment): void {
    this.entries.set(key, j);
    this.pending.push(`${JSON.stringify({ key, label: j.label, raw: j.raw, status: j.status })}\n`);
    if (this.pending.length >= 64 || Date.now() - this.lastFlush > 500) this.flush();
  }

  flush(): void {
    if (this.pending.length) appendFileSync(this.file, this.pending.join(''));
    this.pending = [];
    this.lastFlush = Date.now();
  }
}

export interface JudgeSummary {
  kind: string;
  model: string;
  prompt_version: string;
  files: Record<string, { n: number; ok: number; unparseable: number }>;
  /** Requests sent this time (cache misses), and labels taken from the cache. */
  requested: number;
  cached: number;
  tokens: number;
}

/** One reply to label, by its cache key. */
export interface JudgeRequest {
  key: string;
  messages: ChatMessage[];
}

/** A judge of one kind: `openai` (an endpoint, openai-judge.ts) or `model` (a local model via the trainer, model-judge.ts). */
export interface Judge {
  /** Where it runs, for logs (no secrets). */
  readonly endpoint: string;
  /** True when it shows its own progress (the trainer's events); else runJudge draws a line. */
  readonly showsProgress: boolean;
  /** Fails before any work when the judge cannot run (a refused key, a model that is not there). */
  check(): Promise<void>;
  /** Labels every request; `onAnswer` as each label comes (cached at once). */
  answer(requests: JudgeRequest[], onAnswer: (key: string, j: Judgment) => void): Promise<void>;
}

/**
 * Labels every reply `judgeFiles` lists through the cache (each distinct reply asked once); writes each output file
 * whole (beside, then renamed) and `judge/summary.json`. A judge stopped halfway keeps its answers in the cache.
 */
export async function runJudge(recipe: ResolvedRecipe, runDir: string, log: Logger, judge: Judge): Promise<JudgeSummary> {
  const settings = recipe.judge!;
  const files = await judgeFiles(recipe, runDir);
  const outDir = path.join(runDir, 'judge');
  mkdirSync(outDir, { recursive: true });
  const cache = new JudgeCache(path.join(outDir, 'cache.jsonl'));
  const keyed = files.map((f) => f.requests.map((r) => JudgeCache.key(settings, r)));
  const todo = new Map<string, JudgeRequest>();
  files.forEach((f, fi) => f.requests.forEach((r, i) => {
    const key = keyed[fi]![i]!;
    if (!cache.has(key) && !todo.has(key)) todo.set(key, { key, messages: judgeMessages(recipe, r.context, r.reply, settings.prompt_version) });
  }));
  const total = keyed.reduce((n, k) => n + k.length, 0);
  const summary: JudgeSummary = { kind: settings.kind, model: settings.model, prompt_version: settings.prompt_version, files: {}, requested: todo.size, cached: total - todo.size, tokens: 0 };
  log.info({ judge: judge.endpoint, model: settings.model, replies: total, to_ask: todo.size }, 'judging replies');
  if (todo.size > 0) {
    await judge.check();
    const progress = judge.showsProgress ? undefined : createProgress('judge', { total: todo.size, unit: 'reply', log });
    try {
      await judge.answer([...todo.values()], (key, j) => {
        cache.put(key, j);
        summary.tokens += j.tokens;
        progress?.tick(1, summary.tokens ? { tokens: summary.tokens } : {});
      });
    } finally {
      cache.flush(); // what was answered before a failure is kept
    }
    progress?.done();
  }
  for (const [fi, file] of files.entries()) {
    const rows = file.requests.map((r, i): JudgmentRow => {
      const j = cache.get(keyed[fi]![i]!)!;
      return { id: r.id, judged_behavior: j.label, status: j.status, raw: j.raw, prompt_version: settings.prompt_version };
    });
    const tmp = path.join(outDir, `${file.name}.tmp`);
    writeFileSync(tmp, rows.map((r) => `${JSON.stringify(r)}\n`).join(''));
    renameSync(tmp, path.join(outDir, file.name));
    summary.files[file.name] = { n: rows.length, ok: rows.filter((r) => r.status === 'ok').length, unparseable: rows.filter((r) => r.status === 'unparseable').length };
  }
  writeFileSync(path.join(outDir, 'summary.json'), `${JSON.stringify(summary, null, 2)}\n`);
  return summary;
}
