import { RenderError } from '../errors.js';
import { createHash } from 'node:crypto';
import { closeSync, copyFileSync, existsSync, fsyncSync, linkSync, mkdirSync, openSync, readdirSync, renameSync, rmSync, statSync, writeFileSync, writeSync } from 'node:fs';
import path from 'node:path';
import type { Logger } from '../log.js';
import type { ResolvedRecipe } from '../recipe/resolve.js';
import { SPLITS, type SplitName } from '../recipe/schema.js';
import { canonicalJson, keyOrdered } from '../util/canonical-json.js';
import { collectGarbage } from '../util/collect-garbage.js';
import { sha256File } from '../util/sha256.js';
import { diskFullError, isDiskFull } from '../util/disk-full.js';
import { withLock, type LockHolder } from '../util/file-lock.js';
import { createProgress } from '../util/progress.js';
import { assistantReply, contextMessages, type ConditioningSpec, type Message } from './condition.js';
import { DataError, type DataProblem } from './data-error.js';
import { newReading, readTasks, recipeImportOptions, type TaskReading } from './import.js';
import { displayPath } from './jsonl.js';
import { DATASET_FORMAT, lengthStats, readManifest, type Manifest } from './manifest.js';
import { tokenizeConversations, type TokenizedDoc } from './render.js';
import { writeSafetensorsFrom } from './safetensors.js';
import { assignSplits, CaseStrata } from './split.js';
import type { SourcedTask, TaskLabels } from './task.js';
import { loadChatTokenizer, tokenizerHash } from './tokenizer.js';

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
  const tokens = Object.values(recipe.data.behaviors).map((b) => b.token);
  const tok = loadChatTokenizer(recipe.tokenizer, tokens);
  return { tok, ...(await datasetIdentity(recipe, tok.hash)) };
}

/**
 * The task files' hashes, the options and the dataset hash of a recipe, given its tokenizer's hash (the sha256 of
 * tokenizer.json and tokenizer_config.json: tokenizerHash reads it from the files without loading the tokenizer).
 */
async function datasetIdentity(recipe: ResolvedRecipe, tokenizer: string) {
  const data = recipe.data;
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
    .update(canonicalJson({ format: DATASET_FORMAT, inputs: inputs.map((i) => i.sha256), options, tokenizer, descriptions: data.behaviors }))
    .digest('hex');
  return { inputs, options, datasetHash };
}

/**
 * True when `outDir` already holds the dataset this recipe builds (same hash): the build would do nothing. Cheap and
 * never blocking for long, as a worker's job runs it on the event loop that renews its job locks: the files are
 * hashed as streams and the tokenizer is not loaded (parsing Qwen's 7 MB tokenizer held a loaded 2-core machine's
 * loop for seconds, long enough for the lease to lapse and a big build to be stopped as if its lock were lost).
 */
export async function datasetUpToDate(recipe: ResolvedRecipe, outDir: string): Promise<boolean> {
  const existing = readManifest(outDir);
  if (existing === undefined) return false;
  return existing.dataset_hash === (await datasetIdentity(recipe, await tokenizerHash(recipe.tokenizer))).datasetHash;
}

type Tok = Awaited<ReturnType<typeof planDataset>>['tok'];

/** The import options of a build (readTasks), with a progress line for each pass over the task files. */
function importOptions(recipe: ResolvedRecipe, tok: Tok, onLine: () => void) {
  return { ...recipeImportOptions(recipe.data, tok.controlTokens), onLine };
}

/**
 * Pass 1, import: every task line read and checked (file, line and field of each problem); of each task only what
 * the split of whole cases needs is kept (CaseStrata), so that memory does not grow with the tasks' text.
 */
async function scanTasks(recipe: ResolvedRecipe, tok: Tok, log: Logger): Promise<{ strata: CaseStrata; reading: TaskReading }> {
  const progress = createProgress('reading tasks', { unit: 'lines', log });
  const problems: DataProblem[] = [];
  const reading = newReading();
  const strata = new CaseStrata();
  for await (const t of readTasks(recipe.task_files, importOptions(recipe, tok, () => progress.tick()), problems, reading)) strata.add(t);
  progress.done();
  if (problems.length > 0) throw new DataError(problems);
  if (strata.tasks === 0) {
    throw new DataError(recipe.task_files.map((f) => ({ file: displayPath(f), line: 0, field: '', message: 'no tasks (the file is empty)' })));
  }
  return { strata, reading };
}

/** Appends to a file through a buffer: no output file is ever held as one string or one array. */
class FileAppender {
  private readonly fd: number;
  private parts: Uint8Array[] = [];
  private held = 0;

  constructor(readonly file: string) {
    this.fd = openSync(file, 'w');
  }

  write(data: string | Uint8Array): void {
    const bytes = typeof data === 'string' ? Buffer.from(data) : data;
    this.parts.push(bytes);
    this.held += bytes.byteLength;
    if (this.held >= 1 << 22) this.flush();
  }

  private flush(): void {
    if (this.held === 0) return;
    writeSync(this.fd, Buffer.concat(this.parts, this.held));
    this.parts = [];
    this.held = 0;
  }

  close(): void {
    this.flush();
    fsyncSync(this.fd);
    closeSync(this.fd);
  }
}

/**
 * One split as its documents come, in order: its messages.jsonl lines and its token and mask streams go to files
 * at once (the streams to raw files, made into the split's safetensors by `finish`); only a few numbers per
 * document stay in memory (offsets, lengths, ids for the manifest).
 */
class SplitWriter {
  private readonly messages: FileAppender;
  private readonly ids: FileAppender;
  private readonly mask: FileAppender;
  private readonly offsets: number[] = [0];
  readonly lengths: number[] = [];
  lossTokens = 0;
  readonly counts: Manifest['counts'][SplitName] = {};
  readonly documents: string[] = [];
  readonly cases = new Set<string>();

  constructor(private readonly dir: string, private readonly split: SplitName) {
    this.messages = new FileAppender(path.join(dir, `${split}.messages.jsonl`));
    this.ids = new FileAppender(path.join(dir, `${split}.input_ids.raw`));
    this.mask = new FileAppender(path.join(dir, `${split}.loss_mask.raw`));
  }

  add(t: SourcedTask, doc: TokenizedDoc): void {
    const ids = Int32Array.from(doc.ids);
    this.ids.write(new Uint8Array(ids.buffer, 0, ids.byteLength));
    this.mask.write(doc.mask);
    this.offsets.push(this.offsets.at(-1)! + ids.length);
    this.lengths.push(ids.length);
    this.lossTokens += doc.mask.reduce((a, b) => a + b, 0);
    const byCategory = (this.counts[t.category] ??= {});
    byCategory[t.behavior] = (byCategory[t.behavior] ?? 0) + 1;
    this.documents.push(t.id);
    this.cases.add(t.case_id);
    this.messages.write(`${JSON.stringify(messagesRecord(t, doc.messages))}\n`);
  }

  /** Closes the files and writes `<split>.tokens.safetensors` from the raw streams (then removed). */
  finish(): void {
    for (const f of [this.messages, this.ids, this.mask]) f.close();
    const tokens = this.offsets.at(-1)!;
    writeSafetensorsFrom(
      path.join(this.dir, `${this.split}.tokens.safetensors`),
      [
        { name: 'doc_offsets', dtype: 'I64', length: this.offsets.length, data: BigInt64Array.from(this.offsets, (o) => BigInt(o)) },
        { name: 'input_ids', dtype: 'I32', length: tokens, data: { file: this.ids.file } },
        { name: 'loss_mask', dtype: 'U8', length: tokens, data: { file: this.mask.file } },
      ],
      { format: DATASET_FORMAT, split: this.split },
    );
    rmSync(this.ids.file);
    rmSync(this.mask.file);
  }
}

/**
 * Conversations tokenized at once (the tokenizer's threads): up to BATCH of them, or fewer long ones (BATCH_CHARS of
 * task text, about 250,000 tokens: the encodings' native memory is bounded whatever the conversations' length); and
 * how many batches are in flight.
 */
const BATCH = 256;
const BATCH_CHARS = 1_000_000;
const IN_FLIGHT = 2;
/** A full garbage collection every this many tokens bounds the encodings' native memory (collect-garbage.ts). */
const COLLECT_EVERY_TOKENS = 2_000_000;

/**
 * Pass 2, render, tokenize and write: the task files are read again, in order; each task goes to its case's split,
 * is rendered with the chat template and tokenized in batches (the next batch renders while the tokenizer works on
 * the one before), and written at once. Documents that cannot fit are dropped (and counted).
 */
async function writeSplits(recipe: ResolvedRecipe, tok: Tok, splitOf: Map<string, SplitName>, scan: { strata: CaseStrata; reading: TaskReading },
  dir: string, log: Logger) {
  const total = scan.strata.tasks;
  const data = recipe.data;
  const spec: ConditioningSpec = { mode: data.conditioning, behaviors: data.behaviors, instruction: data.instruction };
  const problems: DataProblem[] = [];
  const truncation: Manifest['truncation'] = { truncated: 0, turns_dropped: 0, dropped: 0, dropped_ids: [] };
  const splits = Object.fromEntries(SPLITS.map((s) => [s, new SplitWriter(dir, s)])) as Record<SplitName, SplitWriter>;
  const dropped = Object.fromEntries(SPLITS.map((s) => [s, [] as string[]])) as Record<SplitName, string[]>;
  const tokenizing = createProgress('tokenizing', { total, unit: 'tasks', log });
  let sinceCollect = 0;
  const write = ({ tasks, docs }: { tasks: SourcedTask[]; docs: Awaited<ReturnType<typeof tokenizeConversations>> }) => {
    // The encodings' native memory goes only when their wrappers are collected: now and then, not at the heap's pace.
    sinceCollect += docs.reduce((n, d) => n + (d instanceof RenderError || !d ? 0 : d.ids.length), 0);
    if (sinceCollect > COLLECT_EVERY_TOKENS) {
      sinceCollect = 0;
      collectGarbage();
    }
    for (const [i, t] of tasks.entries()) {
      tokenizing.tick();
      const doc = docs[i];
      if (doc instanceof RenderError) {
        problems.push({ file: t.file, line: t.line, field: 'target', message: doc.message });
        continue;
      }
      if (!doc) {
        truncation.dropped++;
        dropped[splitOf.get(t.case_id)!].push(t.id);
        continue;
      }
      if (doc.droppedTurns > 0) {
        truncation.truncated++;
        truncation.turns_dropped += doc.droppedTurns;
      }
      splits[splitOf.get(t.case_id)!].add(t, doc);
    }
  };
  const start = (tasks: SourcedTask[]) =>
    tokenizeConversations(tok, tasks.map((t) => ({ context: contextMessages(spec, t.context), reply: assistantReply(spec, t.behavior, t.target) })), data.max_seq_len)
      .then((docs) => ({ tasks, docs }));
  const inFlight: ReturnType<typeof start>[] = [];
  let batch: SourcedTask[] = [];
  let chars = 0;
  // The files were read and checked in pass 1 (no problem here), which found the duplicate records to leave out.
  for await (const t of readTasks(recipe.task_files, importOptions(recipe, tok, () => undefined), [], newReading(), scan.reading.duplicateLines)) {
    batch.push(t);
    chars += t.target.length + t.context.reduce((n, turn) => n + turn.content.length, 0);
    if (batch.length < BATCH && chars < BATCH_CHARS) continue;
    inFlight.push(start(batch));
    batch = [];
    chars = 0;
    if (inFlight.length >= IN_FLIGHT) write(await inFlight.shift()!);
  }
  if (batch.length) inFlight.push(start(batch));
  for (const b of inFlight) write(await b);
  tokenizing.done();
  if (problems.length > 0) throw new DataError(problems);
  for (const s of SPLITS) splits[s].finish();
  truncation.dropped_ids = SPLITS.flatMap((s) => dropped[s]); // split by split, each in file order
  return { splits, truncation };
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
  const onTakeOver = (holder: LockHolder | undefined, lockFile: string) =>
    log.warn({ dir: outDir, holder }, holder ? `took over ${lockFile}: the build of ${holder.host}:${holder.pid} that held it is gone` : `took over ${lockFile}: left empty by a process killed as it took it`);
  return withLock(outDir, () => buildLocked(recipe, outDir, log, cacheDir), { onWait, onTakeOver });
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

  const scan = await scanTasks(recipe, tok, log);
  const { strata } = scan;
  const splitOf = assignSplits(strata, recipe.data.splits, recipe.data.seed);
  // Written into a temporary folder beside the target, swapped in once complete: a failed build leaves nothing.
  const tmp = `${outDir}.tmp-${process.pid}`;
  rmSync(tmp, { recursive: true, force: true });
  mkdirSync(tmp, { recursive: true });
  let manifest: Manifest;
  let splits: Record<SplitName, SplitWriter>;
  let truncation: Manifest['truncation'];
  try {
    ({ splits, truncation } = await writeSplits(recipe, tok, splitOf, scan, tmp, log));
    checkDropped(recipe, truncation, strata.tasks);
    // Behavior tokens by ID (the order in which a Hugging Face tokenizer must add them to give these IDs).
    const byId = Object.entries(recipe.data.behaviors).sort((a, b) => tok.addedIds[a[1].token]! - tok.addedIds[b[1].token]!);
    const perSplit = <T>(f: (s: SplitWriter) => T) => Object.fromEntries(SPLITS.map((s) => [s, f(splits[s])])) as Record<SplitName, T>;
    const descriptions = await Promise.all(byId.map(async ([name, b]) => [name, await tok.encode(b.description)] as const));
    manifest = {
      format: DATASET_FORMAT,
      dataset_hash: datasetHash,
      tokenizer_hash: tok.hash,
      inputs,
      options,
      behavior_tokens: keyOrdered(Object.fromEntries(byId.map(([, b]) => [b.token, tok.addedIds[b.token]!]))),
      behavior_ids: keyOrdered(Object.fromEntries(byId.map(([name, b]) => [name, tok.addedIds[b.token]!]))),
      behavior_descriptions: keyOrdered(Object.fromEntries(descriptions)),
      tokenizer_size: tok.baseSize,
      eos_id: tok.eosId,
      counts: perSplit((s) => s.counts),
      cases: perSplit((s) => s.cases.size),
      lengths: perSplit((s) => lengthStats(s.lengths, s.lossTokens)),
      truncation,
      duplicates_skipped: scan.reading.duplicates,
      documents: perSplit((s) => s.documents),
    };
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
  if (cached) await withLock(cached, async () => (readManifest(cached)?.dataset_hash === datasetHash ? undefined : copyDataset(outDir, cached)));
  const perSplitCount = Object.fromEntries(SPLITS.map((s) => [s, splits[s].documents.length]));
  log.info({ dir: outDir, documents: perSplitCount, truncated: truncation.truncated, dropped: truncation.dropped }, 'dataset built');
  return { dir: outDir, manifest, built: true };
}
