import type { SplitName } from '../recipe/schema.js';

export const DATASET_FORMAT = 'bsft-dataset-v2';

export interface LengthStats {
  documents: number;
  tokens: number;
  loss_tokens: number;
  min: number;
  max: number;
  mean: number;
  p50: number;
  p90: number;
  p99: number;
}

/** Contract 3: manifest.json beside the shards. No timestamps or absolute paths: same inputs give the same bytes. */
export interface Manifest {
  format: typeof DATASET_FORMAT;
  /** sha256 of the input files' contents and the build options. */
  dataset_hash: string;
  tokenizer_hash: string;
  inputs: { file: string; sha256: string; bytes: number }[];
  options: {
    conditioning: string;
    max_seq_len: number;
    seed: number;
    splits: Record<SplitName, number>;
    behaviors: Record<string, string>;
    categories: Record<string, string>;
    instruction: string | null;
  };
  /** Behavior token string -> token ID (IDs from len(tokenizer) upward). */
  behavior_tokens: Record<string, number>;
  /** Behavior name -> token ID. */
  behavior_ids: Record<string, number>;
  /** Behavior name -> token IDs of its description (`train.token_init: description` starts the rows from them). */
  behavior_descriptions: Record<string, number[]>;
  tokenizer_size: number;
  eos_id: number;
  /** split -> category -> behavior -> count */
  counts: Record<SplitName, Record<string, Record<string, number>>>;
  cases: Record<SplitName, number>;
  lengths: Record<SplitName, LengthStats>;
  truncation: { truncated: number; turns_dropped: number; dropped: number; dropped_ids: string[] };
  duplicates_skipped: number;
  /** Task id of every document, in shard order. */
  documents: Record<SplitName, string[]>;
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
