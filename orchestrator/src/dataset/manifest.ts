import { readFileSync } from 'node:fs';
import path from 'node:path';
import { z } from 'zod';

export const DATASET_FORMAT = 'bsft-dataset-v2';

const count = z.number().int().nonnegative();
const splitRecord = <T extends z.ZodType>(value: T) => z.strictObject({ train: value, val: value, test: value });

export const lengthStatsSchema = z.strictObject({
  documents: count,
  tokens: count,
  loss_tokens: count,
  min: count,
  max: count,
  mean: z.number().nonnegative(),
  p50: count,
  p90: count,
  p99: count,
});
export type LengthStats = z.infer<typeof lengthStatsSchema>;

/**
 * Contract 3: manifest.json beside the shards (its JSON Schema: docs/schema/manifest.schema.json, which the trainer
 * checks it against). No timestamps or absolute paths: same inputs give the same bytes.
 */
export const manifestSchema = z.strictObject({
  format: z.literal(DATASET_FORMAT),
  /** sha256 of the input files' contents and the build options. */
  dataset_hash: z.string().regex(/^[0-9a-f]{64}$/),
  tokenizer_hash: z.string().regex(/^[0-9a-f]{64}$/),
  inputs: z.array(z.strictObject({ file: z.string(), sha256: z.string().regex(/^[0-9a-f]{64}$/), bytes: count })),
  options: z.strictObject({
    conditioning: z.enum(['token', 'none', 'instruction']),
    max_seq_len: z.number().int().positive(),
    seed: count,
    splits: splitRecord(z.number().min(0).max(1)),
    behaviors: z.record(z.string(), z.string()),
    categories: z.record(z.string(), z.string()),
    instruction: z.string().nullable(),
  }),
  /** Behavior token string -> token ID (IDs from len(tokenizer) upward). */
  behavior_tokens: z.record(z.string(), count),
  /** Behavior name -> token ID. */
  behavior_ids: z.record(z.string(), count),
  /** Behavior name -> token IDs of its description (`train.token_init: description` starts the rows from them). */
  behavior_descriptions: z.record(z.string(), z.array(count)),
  tokenizer_size: count,
  eos_id: count,
  /** split -> category -> behavior -> count */
  counts: splitRecord(z.record(z.string(), z.record(z.string(), count))),
  cases: splitRecord(count),
  lengths: splitRecord(lengthStatsSchema),
  truncation: z.strictObject({ truncated: count, turns_dropped: count, dropped: count, dropped_ids: z.array(z.string()) }),
  duplicates_skipped: count,
  /** Task id of every document, in shard order. */
  documents: splitRecord(z.array(z.string())),
});
export type Manifest = z.infer<typeof manifestSchema>;

/** The manifest of a dataset folder, or undefined when it has none (or an unreadable one). */
export function readManifest(dir: string): Manifest | undefined {
  try {
    return JSON.parse(readFileSync(path.join(dir, 'manifest.json'), 'utf8')) as Manifest;
  } catch {
    return undefined;
  }
}

export function lengthStats(lengths: number[], lossTokens: number): LengthStats {
  const sorted = [...lengths].sort((a, b) => a - b);
  const q = (p: number) => (sorted.length ? sorted[Math.min(sorted.length - 1, Math.floor(p * sorted.length))]! : 0);
  const tokens = sorted.reduce((a, b) => a + b, 0);
  return {
    documents: sorted.length,
    tokens,
    loss_tokens: lossTokens,
    min: sorted[0] ?? 0,
    max: sorted.at(-1) ?? 0,
    mean: sorted.length ? +(tokens / sorted.length).toFixed(2) : 0,
    p50: q(0.5),
    p90: q(0.9),
    p99: q(0.99),
  };
}
