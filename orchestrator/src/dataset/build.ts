import { RenderError } from '../errors.js';
import { createHash } from 'node:crypto';
import { copyFileSync, existsSync, linkSync, mkdirSync, readdirSync, renameSync, rmSync, statSync, writeFileSync } from 'node:fs';
import path from 'node:path';
import type { Logger } from '../log.js';
import type { ResolvedRecipe } from '../recipe/resolve.js';
import { SPLITS, type SplitName } from '../recipe/schema.js';
import { canonicalJson, keyOrdered } from '../util/canonical-json.js';
import { sha256File } from '../util/sha256.js';
import { diskFullError, isDiskFull } from '../util/disk-full.js';
import { withLock, type LockHolder } from '../util/file-lock.js';
import { createProgress } from '../util/progress.js';
import { assistantReply, contextMessages, type ConditioningSpec, type Message } from './condition.js';
import { DataError, type DataProblem } from './data-error.js';
import { importTasks, recipeImportOptions } from './import.js';
import { displayPath } from './jsonl.js';
import { DATASET_FORMAT, lengthStats, readManifest, type Manifest } from './manifest.js';
import { tokenizeConversation } from './render.js';
import { writeSafetensors } from './safetensors.js';
import { assignSplits } from './split.js';
import type { SourcedTask, TaskLabels } from './task.js';
import { loadChatTokenizer } from './tokenizer.js';

/**
 * One line of `<split>.messages.jsonl`, written so that outside trainers put the loss where bsft does (the final
 * reply only): `prompt` + `completion` is TRL's conversational prompt-completion form (loss on the completion),
 * `messages` with a per-message `training` flag is axolotl's `message_field_training`. Plus what scoring needs.
 */
export interface MessagesRecord extends TaskLabels {
  messages: (Message & { training: boolean })[];
  prompt: Message[];
  completion: Message[];
}

export interface BuildResult {
  dir: string;
  manifest: Manifest;
  /** false when an identical dataset was already there. */
  built: boolean;
}

/** Growable int32 buffer for the concatenated token stream. */
class IntStream {
  ids = new Int32Array(1 << 16);
  mask = new Uint8Array(1 << 16);
  length = 0;
  offsets: number[] = [0];

  push(ids: number[], mask: Uint8Array): void {
    while (this.length + ids.length > this.ids.length) {
      const ids2 = new Int32Array(this.ids.length * 2);
      ids2.set(this.ids);
      const mask2 = new Uint8Array(this.mask.length * 2);
      mask2.set(this.mask);
      this.ids = ids2;
      this.mask = mask2;
    }
    this.ids.set(ids, this.length);
    this.mask.set(mask, this.length);
    this.length += ids.length;
    this.offsets.push(this.length);
  }
}


/** Copies a built dataset folder (files are immutable once written: hard links where the filesystem allows). */
function copyDataset(from: string, to: string): void {
  const tmp = `${to}.tmp-${process.pid}`;
  rmSync(tmp, { recursive: true, force: true });
  try {
    mkdirSync(tmp, { recursive: true });
    linkTree(from, tmp);
  } catch (e) {
    rmSync(tmp, { recursive: true, force: true });
    throw isDiskFull(e) ? diskFullError(to, `copying the dataset from ${from}`) : e;
  }
  rmSync(to, { recursive: true, force: true });
  renameSync(tmp, to);
}

function linkTree(from: string, to: string): void {
  for (const entry of readdirSync(from, { withFileTypes: true })) {
    const [src, dst] = [path.join(from, entry.name), path.join(to, entry.name)];
    if (entry.isDirectory()) {
      mkdirSync(dst);
      linkTree(src, dst);
      continue;
    }
    try {
      linkSync(src, dst);
    } catch {
      copyFileSync(src, dst);
    }
  }
}

/** What a build of `recipe` would be: its tokenizer, inputs, options and the dataset hash they give. */
async function planDataset(recipe: ResolvedRecipe) {
  const data = recipe.data;
  const tokens = Object.values(data.behaviors).map((b) => b.token);
  const tok = loadChatTokenizer(recipe.tokenizer, tokens);
  const inputs = await Promise.all(
    recipe.task_files.map(async (f) => ({ file: path.basename(f), sha256: await sha256File(f), bytes: statSync(f).size })),
  );
  const options: Manifest['options'] = {
    conditioning: data.conditioning,
    max_seq_len: data.max_seq_len,
    seed: data.seed,
    splits: data.splits,
    behaviors: Object.fromEntries(Object.entries(data.behaviors).map(([k, v]) => [k, v.token])),
    categories: data.categories,
    instruction: data.conditioning === 'instruction' ? data.instruction : null,
  };
  const datasetHash = createHash('sha256')
    .update(canonicalJson({ format: DATASET_FORMAT, inputs: inputs.map((i) => i.sha256), options, tokenizer: tok.hash, descriptions: data.behaviors }))
    .digest('hex');
  return { tok, inputs, options, datasetHash };
}

/** True when `outDir` already holds the dataset this recipe builds (same hash): the build would do nothing. */
export async function datasetUpToDate(recipe: ResolvedRecipe, outDir: string): Promise<boolean> {
  const existing = readManifest(outDir);
  return existing !== undefined && existing.dataset_hash === (await planDataset(recipe)).datasetHash;
}

type Tok = Awaited<ReturnType<typeof planDataset>>['tok'];

/** Step 1, import: every task line read and checked (file, line and field of each problem). */
async function readTasks(recipe: ResolvedRecipe, tok: Tok, log: Logger): Promise<{ tasks: SourcedTask[]; duplicates: number }> {
  const reading = createProgress('reading tasks', { unit: 'lines', log });
  const imported = await importTasks(recipe.task_files, {
    ...recipeImportOptions(recipe.data, tok.controlTokens),
    onLine: () => reading.tick(),
  });
  reading.done();
  if (imported.problems.length > 0) throw new DataError(imported.problems);
  if (imported.tasks.length === 0) {
    throw new DataError(recipe.task_files.map((f) => ({ file: displayPath(f), line: 0, field: '', message: 'no tasks (the file is empty)' })));
  }
  return { tasks: imported.tasks, duplicates: imported.duplicates };
}

/** Step 2, split: by case, stratified and seeded (split.ts). */
function splitTasks(tasks: SourcedTask[], data: ResolvedRecipe['data']): Record<SplitName, SourcedTask[]> {
  const splitOf = assignSplits(tasks, data.splits, data.seed);
  const bySplit: Record<SplitName, SourcedTask[]> = { train: [], val: [], test: [] };
  for (const t of tasks) bySplit[splitOf.get(t.case_id)!].push(t);
  return bySplit;
}

interface RenderedSplit {
  stream: IntStream;
  records: MessagesRecord[];
  lengths: number[];
  lossTokens: number;
  counts: Manifest['counts'][SplitName];
}

/** Step 3, render and tokenize each split with the chat template; documents that cannot fit are dropped (and counted). */
function renderSplits(bySplit: Record<SplitName, SourcedTask[]>, tok: Tok, data: ResolvedRecipe['data'], log: Logger) {
  const spec: ConditioningSpec = { mode: data.conditioning, behaviors: data.behaviors, instruction: data.instruction };
  const total = SPLITS.reduce((n, s) => n + bySplit[s].length, 0);
  const problems: DataProblem[] = [];
  const truncation: Manifest['truncation'] = { truncated: 0, turns_dropped: 0, dropped: 0, dropped_ids: [] };
  const splits = {} as Record<SplitName, RenderedSplit>;
  const tokenizing = createProgress('tokenizing', { total, unit: 'tasks', log });
  for (const split of SPLITS) {
    const out: RenderedSplit = (splits[split] = { stream: new IntStream(), records: [], lengths: [], lossTokens: 0, counts: {} });
    for (const t of bySplit[split]) {
      tokenizing.tick();
      let doc;
      try {
        doc = tokenizeConversation(tok, contextMessages(spec, t.context), assistantReply(spec, t.behavior, t.target), data.max_seq_len);
      } catch (e) {
        if (!(e instanceof RenderError)) throw e;
        problems.push({ file: t.file, line: t.line, field: 'target', message: e.message });
        continue;
      }
      if (!doc) {
        truncation.dropped++;
        truncation.dropped_ids.push(t.id);
        continue;
      }
      if (doc.droppedTurns > 0) {
        truncation.truncated++;
        truncation.turns_dropped += doc.droppedTurns;
      }
      out.stream.push(doc.ids, doc.mask);
      out.lengths.push(doc.ids.length);
      out.lossTokens += doc.mask.reduce((a, b) => a + b, 0);
      const byCategory = (out.counts[t.category] ??= {});
      byCategory[t.behavior] = (byCategory[t.behavior] ?? 0) + 1;
      out.records.push(messagesRecord(t, doc.messages));
    }
  }
  tokenizing.done();
  if (problems.length > 0) throw new DataError(problems);
  return { splits, truncation, total };
}

/** messages.jsonl's line of a document: its messages (training flag on the reply) and TRL's prompt/completion. */
function messagesRecord(t: SourcedTask, messages: Message[]): MessagesRecord {
  const reply = messages.at(-1)!;
  return {
    id: t.id,
    case_id: t.case_id,
    category: t.category,
    behavior: t.behavior,
    hard: t.hard ?? false,
    ...(t.answer !== undefined ? { answer: t.answer } : {}),
    messages: messages.map((m) => ({ ...m, training: m === reply })),
    prompt: messages.slice(0, -1),
    completion: [reply],
  };
}

/** Over data.max_dropped_share of the tasks do not fit max_seq_len: the build fails, naming them. */
function checkDropped(recipe: ResolvedRecipe, truncation: Manifest['truncation'], total: number): void {
  const data = recipe.data;
  const dropped = truncation.dropped / total;
  if (dropped <= data.max_dropped_share) return;
  throw new DataError([
    {
      file: recipe.task_files.map(displayPath).join(', '),
      line: 0,
      field: '',
      message:
        `${truncation.dropped} of ${total} tasks (${(100 * dropped).toFixed(1)}%) do not fit data.max_seq_len ` +
        `(${data.max_seq_len}) even with every older turn dropped, over data.max_dropped_share (${data.max_dropped_share}): ` +
        `${truncation.dropped_ids.slice(0, 20).join(', ')}${truncation.dropped > 20 ? ', ...' : ''}`,
    },
  ]);
}

/** Step 4, write: shards, messages, tokenizer and manifest into a temporary folder beside the target, swapped in. */
function writeDataset(outDir: string, splits: Record<SplitName, RenderedSplit>, tok: Tok, manifest: Manifest): void {
  const tmp = `${outDir}.tmp-${process.pid}`;
  rmSync(tmp, { recursive: true, force: true });
  mkdirSync(tmp, { recursive: true });
  try {
    for (const split of SPLITS) {
      const s = splits[split].stream;
      writeFileSync(path.join(tmp, `${split}.messages.jsonl`), splits[split].records.map((r) => `${JSON.stringify(r)}\n`).join(''));
      writeSafetensors(
        path.join(tmp, `${split}.tokens.safetensors`),
        [
          ['doc_offsets', BigInt64Array.from(s.offsets, (o) => BigInt(o))],
          ['input_ids', s.ids.slice(0, s.length)],
          ['loss_mask', s.mask.slice(0, s.length)],
        ],
        { format: DATASET_FORMAT, split },
      );
    }
    mkdirSync(path.join(tmp, 'tokenizer'));
    for (const [name, text] of Object.entries(tok.files())) writeFileSync(path.join(tmp, 'tokenizer', name), text);
    writeFileSync(path.join(tmp, 'manifest.json'), `${canonicalJson(manifest, 2)}\n`);
    const old = `${outDir}.old-${process.pid}`;
    if (existsSync(outDir)) renameSync(outDir, old);
    renameSync(tmp, outDir);
    rmSync(old, { recursive: true, force: true });
  } catch (e) {
    rmSync(tmp, { recursive: true, force: true });
    throw isDiskFull(e) ? diskFullError(outDir, 'writing the dataset') : e;
  }
}

/**
 * Builds the dataset of a recipe into `outDir` (Contract 3): import -> split -> render/tokenize -> write. Output
 * goes to a temporary folder that is renamed on success: a failed build leaves nothing behind. Same inputs +
 * options + seed give identical bytes; when the dataset hash matches the one already in `outDir`, nothing is
 * rebuilt. With `cacheDir`, datasets are shared by hash: runs whose data, options and tokenizer are the same
 * (BehaviorSFT with LoRA and with full fine-tuning, say) use one build.
 */
export async function buildDataset(recipe: ResolvedRecipe, outDir: string, log: Logger, cacheDir?: string): Promise<BuildResult> {
  // One build of a folder at a time (a worker's build child and `bsft run`, or a build whose job was taken over):
  // the second waits and then finds the dataset up to date.
  const onWait = (holder: LockHolder, lockFile: string) =>
    log.info({ dir: outDir, holder }, `waiting for the build of ${holder.host}:${holder.pid} (${lockFile}; remove it if that process is gone)`);
  return withLock(outDir, () => buildLocked(recipe, outDir, log, cacheDir), { onWait });
}

async function buildLocked(recipe: ResolvedRecipe, outDir: string, log: Logger, cacheDir?: string): Promise<BuildResult> {
  const { tok, inputs, options, datasetHash } = await planDataset(recipe);
  const existing = readManifest(outDir);
  if (existing?.dataset_hash === datasetHash) {
    log.info({ dir: outDir, dataset_hash: datasetHash }, 'dataset up to date');
    return { dir: outDir, manifest: existing, built: false };
  }
  const cached = cacheDir ? path.join(cacheDir, datasetHash) : undefined;
  if (cached && (await withLock(cached, async () => readManifest(cached)?.dataset_hash === datasetHash))) {
    copyDataset(cached, outDir);
    log.info({ dir: outDir, dataset_hash: datasetHash, from: cached }, 'dataset taken from the shared build');
    return { dir: outDir, manifest: readManifest(outDir)!, built: false };
  }

  const { tasks, duplicates } = await readTasks(recipe, tok, log);
  const { splits, truncation, total } = renderSplits(splitTasks(tasks, recipe.data), tok, recipe.data, log);
  checkDropped(recipe, truncation, total);

  // Behavior tokens by ID (the order in which a Hugging Face tokenizer must add them to give these IDs).
  const byId = Object.entries(recipe.data.behaviors).sort((a, b) => tok.addedIds[a[1].token]! - tok.addedIds[b[1].token]!);
  const perSplit = <T>(f: (s: RenderedSplit) => T) => Object.fromEntries(SPLITS.map((s) => [s, f(splits[s])])) as Record<SplitName, T>;
  const manifest: Manifest = {
    format: DATASET_FORMAT,
    dataset_hash: datasetHash,
    tokenizer_hash: tok.hash,
    inputs,
    options,
    behavior_tokens: keyOrdered(Object.fromEntries(byId.map(([, b]) => [b.token, tok.addedIds[b.token]!]))),
    behavior_ids: keyOrdered(Object.fromEntries(byId.map(([name, b]) => [name, tok.addedIds[b.token]!]))),
    behavior_descriptions: keyOrdered(Object.fromEntries(byId.map(([name, b]) => [name, tok.encode(b.description)]))),
    tokenizer_size: tok.baseSize,
    eos_id: tok.eosId,
    counts: perSplit((s) => s.counts),
    cases: perSplit((s) => new Set(s.records.map((r) => r.case_id)).size),
    lengths: perSplit((s) => lengthStats(s.lengths, s.lossTokens)),
    truncation,
    duplicates_skipped: duplicates,
    documents: perSplit((s) => s.records.map((r) => r.id)),
  };
  writeDataset(outDir, splits, tok, manifest);
  if (cached) await withLock(cached, async () => (readManifest(cached)?.dataset_hash === datasetHash ? undefined : copyDataset(outDir, cached)));
  log.info({ dir: outDir, documents: perSplit((s) => s.records.length), truncated: truncation.truncated, dropped: truncation.dropped }, 'dataset built');
  return { dir: outDir, manifest, built: true };
}
