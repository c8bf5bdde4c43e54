import { existsSync, lstatSync, readdirSync, readFileSync, readlinkSync } from 'node:fs';
import path from 'node:path';
import { readMetrics } from '../score/run-meta.js';
import { checkpointStep } from '../store/checkpoint-name.js';
import type { StepRecord } from './pipeline.js';
import { readRunRecipe } from './run-dir.js';

/** One run folder of a runs folder as `bsft runs` lists it: what it is, how far it got, what it weighs. */
export interface LocalRun {
  run_id: string;
  dir: string;
  name: string;
  method: string;
  conditioning: string;
  /**
   * built / trained N of M steps / trained / predicted / judged / scored; after a failure `stopped at <step> (...)`
   * with the reason; after the user's own stop `<how far>, stopped by Ctrl-C` (or SIGTERM).
   */
  progress: string;
  reason?: string;
  /** The first eval split's macro-F1 (0..1), once scored. */
  macro_f1?: number;
  bytes: number;
  /** The newest change anywhere in the folder (ISO time). */
  changed_at: string;
}

/** Bytes and newest modification time of a folder, links not followed. */
function usage(dir: string): { bytes: number; mtimeMs: number } {
  let bytes = 0;
  let mtimeMs = 0;
  const walk = (p: string) => {
    const st = lstatSync(p, { throwIfNoEntry: false });
    if (!st) return;
    bytes += st.isDirectory() ? 0 : st.size;
    mtimeMs = Math.max(mtimeMs, st.mtimeMs);
    if (st.isDirectory()) for (const name of readdirSync(p)) walk(path.join(p, name));
  };
  walk(dir);
  return { bytes, mtimeMs };
}

const readJson = (file: string): any => {
  try {
    return JSON.parse(readFileSync(file, 'utf8'));
  } catch {
    return undefined;
  }
};

/** The newest checkpoint with its COMPLETE marker (not verified byte by byte: listing must stay cheap at 7B). */
function newestCheckpoint(dir: string): number | undefined {
  const ck = path.join(dir, 'checkpoints');
  if (!existsSync(ck)) return undefined;
  const steps = readdirSync(ck)
    .filter((n) => existsSync(path.join(ck, n, 'COMPLETE')))
    .map(checkpointStep)
    .filter((s): s is number => s !== undefined);
  return steps.length ? Math.max(...steps) : undefined;
}

/** A file of `dir` whose name ends with `suffix`. */
const hasFile = (dir: string, suffix: string) => existsSync(dir) && readdirSync(dir).some((n) => n.endsWith(suffix));

/** How far a run folder got, from what its steps left (run.json's records say why one stopped). */
export function describeRun(dir: string): LocalRun | undefined {
  const recipe = readRunRecipe(dir);
  if (!recipe) return undefined;
  const splits = recipe.eval?.splits ?? ['test'];
  const scores = splits.map((s) => readJson(path.join(dir, 'score', `${s}.json`)));
  const steps: StepRecord[] = readJson(path.join(dir, 'run.json'))?.steps ?? [];
  const stopped = steps.find((s) => s.state === 'failed' || s.state === 'unavailable' || s.state === 'stopped');
  const trainedSteps = readMetrics(dir).filter((m) => m.kind === 'step').reduce((a, m) => Math.max(a, m.step), 0);
  const ck = newestCheckpoint(dir);
  const total = recipe.train.max_steps;
  let progress: string;
  if (scores.every(Boolean)) progress = 'scored';
  else if (existsSync(path.join(dir, 'judge', 'summary.json'))) progress = 'judged';
  else if (hasFile(path.join(dir, 'predictions'), '.jsonl')) progress = 'predicted'; // a folder alone is not
  else if (existsSync(path.join(dir, 'final', 'COMPLETE'))) progress = 'trained';
  else if (trainedSteps > 0 || ck !== undefined) {
    const done = Math.max(trainedSteps, ck ?? 0);
    progress = `trained ${done}${total ? ` of ${total}` : ''} steps (${ck !== undefined ? `checkpoint ${ck}` : 'no checkpoint'})`;
  } else if (existsSync(path.join(dir, 'dataset', 'manifest.json'))) progress = 'built';
  else progress = 'created';
  const { bytes, mtimeMs } = usage(dir);
  const f1 = scores[0]?.overall?.macro_f1?.value;
  return {
    run_id: recipe.run_id,
    dir,
    name: recipe.name,
    method: recipe.train.method,
    conditioning: recipe.data.conditioning,
    progress: !stopped || progress === 'scored' ? progress
      : stopped.state === 'stopped' ? `${progress}, ${stopped.message ?? 'stopped'}` : `stopped at ${stopped.step} (${progress})`,
    ...(stopped && stopped.state !== 'stopped' && progress !== 'scored' && stopped.message ? { reason: stopped.message.split('\n')[0]! } : {}),
    ...(typeof f1 === 'number' ? { macro_f1: f1 } : {}),
    bytes,
    changed_at: new Date(mtimeMs).toISOString(),
  };
}

/** The run folders of a runs folder, the most recently changed first (`_datasets` and reports are not runs). */
export function listRuns(runsDir: string): LocalRun[] {
  if (!existsSync(runsDir)) return [];
  return readdirSync(runsDir)
    .filter((n) => !n.startsWith('_') && !n.startsWith('.'))
    .map((n) => describeRun(path.join(runsDir, n)))
    .filter((r): r is LocalRun => r !== undefined)
    .sort((a, b) => b.changed_at.localeCompare(a.changed_at));
}

/**
 * Processes of this machine working in a run folder: their working directory lies inside it (the trainer runs in
 * its run folder) or their command line names it (`bsft run`, torchrun ranks). Linux /proc; elsewhere none found.
 */
export function processesUsing(dir: string): { pid: number; command: string }[] {
  if (!existsSync('/proc')) return [];
  const real = path.resolve(dir);
  const inside = (p: string) => p === real || p.startsWith(`${real}${path.sep}`);
  const found: { pid: number; command: string }[] = [];
  for (const name of readdirSync('/proc')) {
    const pid = Number(name);
    if (!Number.isInteger(pid) || pid === process.pid) continue;
    try {
      const cmd = readFileSync(`/proc/${pid}/cmdline`, 'utf8').split('\0').filter(Boolean);
      let cwd = '';
      try {
        cwd = readlinkSync(`/proc/${pid}/cwd`);
      } catch {
        // another user's process: its command line is still readable
      }
      if (inside(cwd) || cmd.some((a) => inside(path.resolve(a)) || a.includes(`${real}${path.sep}`))) found.push({ pid, command: cmd.join(' ').slice(0, 120) });
    } catch {
      // gone meanwhile
    }
  }
  return found;
}
