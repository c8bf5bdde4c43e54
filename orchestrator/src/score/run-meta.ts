import { existsSync, readFileSync } from 'node:fs';
import path from 'node:path';
import { readManifest } from '../dataset/manifest.js';
import { readRunRecipe } from '../run/run-dir.js';

/** What a report says about where a run's scores come from. */
export interface RunMeta {
  run_id: string;
  base_model: string;
  method: string;
  conditioning: string;
  /** Optimizer steps trained (the last step in metrics.jsonl), or null before training. */
  steps: number | null;
  /** What the recipe asked for: `max_steps N` or `epochs N`. */
  length: string;
  /** null: nothing trained (train.method none). */
  lr: number | null;
  schedule: string;
  /** When training started (the first metrics.jsonl line), else when the run folder last changed: ISO 8601. */
  date: string | null;
  dataset_hash: string | null;
  /** Tasks in the dataset (all splits) and the sha256 of each task file it was built from. */
  tasks: number | null;
  inputs: { file: string; sha256: string }[];
}

/** A run's training curve from metrics.jsonl, thinned to at most `maxPoints` step points. */
export interface Curve {
  step: number[];
  loss: number[];
  lr: number[];
  eval: { step: number; loss: number }[];
}

export interface MetricsLine {
  kind: 'step' | 'eval';
  step: number;
  time: number;
  loss: number;
  lr?: number;
}

/** metrics.jsonl's lines (Contract 4's metrics history); a torn last line (a run writing it now) is left out. */
export function readMetrics(runDir: string): MetricsLine[] {
  const file = path.join(runDir, 'metrics.jsonl');
  if (!existsSync(file)) return [];
  const out: MetricsLine[] = [];
  for (const line of readFileSync(file, 'utf8').split('\n')) {
    if (!line.trim()) continue;
    try {
      out.push(JSON.parse(line) as MetricsLine);
    } catch {
      break;
    }
  }
  return out;
}

/** A local model folder as the user knows it (relative to the current folder when inside it); a Hub id as is. */
function shownPath(p: string): string {
  if (!path.isAbsolute(p)) return p;
  const rel = path.relative(process.cwd(), p);
  return rel.startsWith('..') ? p : rel;
}

/** `items` thinned to at most about `most`: every k-th one, and the last. */
export function thin<T>(items: T[], most: number): T[] {
  const every = Math.ceil(items.length / most);
  return items.filter((_, i) => i % every === 0 || i === items.length - 1);
}

/** `metrics`: the run's metrics.jsonl lines, when the caller has read them already. */
export function runMeta(runDir: string, metrics = readMetrics(runDir)): RunMeta | null {
  const recipe = readRunRecipe(runDir);
  if (!recipe) return null;
  const manifest = readManifest(path.join(runDir, 'dataset'));
  const steps = metrics.filter((m) => m.kind === 'step');
  const runJson = path.join(runDir, 'run.json');
  const status = existsSync(runJson) ? (JSON.parse(readFileSync(runJson, 'utf8')) as { updated_at?: string }) : undefined;
  const first = metrics[0];
  return {
    run_id: recipe.run_id,
    base_model: shownPath(recipe.model.name_or_path),
    method: recipe.train.method,
    conditioning: recipe.data.conditioning,
    steps: steps.length ? steps[steps.length - 1]!.step : null,
    length: recipe.train.method === 'none' ? 'not trained' : recipe.train.max_steps !== undefined ? `max_steps ${recipe.train.max_steps}` : `epochs ${recipe.train.epochs}`,
    lr: recipe.train.lr ?? null,
    schedule: recipe.train.schedule,
    date: first ? new Date(first.time * 1000).toISOString() : (status?.updated_at ?? null),
    dataset_hash: manifest?.dataset_hash ?? null,
    tasks: manifest ? Object.values(manifest.documents).reduce((n, ids) => n + ids.length, 0) : null,
    inputs: manifest?.inputs.map(({ file, sha256 }) => ({ file, sha256 })) ?? [],
  };
}

/** The curve of a run's metrics.jsonl lines, at most `maxPoints` step points; null without steps. */
export function runCurve(metrics: MetricsLine[], maxPoints = 400): Curve | null {
  const steps = metrics.filter((m) => m.kind === 'step' && Number.isFinite(m.loss));
  if (!steps.length) return null;
  const kept = thin(steps, maxPoints);
  return {
    step: kept.map((m) => m.step),
    loss: kept.map((m) => m.loss),
    lr: kept.map((m) => m.lr ?? NaN),
    eval: metrics.filter((m) => m.kind === 'eval' && Number.isFinite(m.loss)).map((m) => ({ step: m.step, loss: m.loss })),
  };
}
