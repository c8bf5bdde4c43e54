import path from 'node:path';
import type { BuildResult } from '../dataset/build.js';
import type { Estimate } from '../score/metrics.js';
import type { Scored } from '../score/run-scores.js';

/** What a dataset build reports to its run (the same in-process and from a worker's child process). */
export interface BuildSummary {
  built: boolean;
  dataset_hash: string;
  documents: Record<string, number>;
}

/** Per split: the headline scores and the file holding the full report. */
export type ScoreSummary = Record<string, { macro_f1: Estimate; accuracy: Estimate; file: string }>;

export function buildSummary(res: BuildResult): BuildSummary {
  const documents = Object.fromEntries(Object.entries(res.manifest.documents).map(([k, v]) => [k, v.length]));
  return { built: res.built, dataset_hash: res.manifest.dataset_hash, documents };
}

export function scoreSummaryOf(runDir: string, split: string, s: Scored): ScoreSummary[string] {
  return { macro_f1: s.report.overall.macro_f1, accuracy: s.report.overall.accuracy, file: path.join(runDir, 'score', `${split}.json`) };
}
