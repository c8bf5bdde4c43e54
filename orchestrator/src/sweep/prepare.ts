import { UsageError } from '../errors.js';
import { intOption, type OptionValues } from '../cli/command.js';
import { defaultPolicy } from '../recipe/path-policy.js';
import { countPoints } from './points.js';
import { resolveSweep, type ResolvedSweep } from './resolve-sweep.js';
import { sweepRequest } from './spec.js';

/** Points a sweep may have without --yes. */
export const DEFAULT_MAX_POINTS = 20;
/** Points no sweep may have (each is a run, resolved and listed): narrow the search instead. */
export const MAX_POINTS = 10_000;

/**
 * The sweep a command line asks for, resolved and checked whole (every point's recipe and memory plan) before
 * anything is written: `bsft sweep` and `bsft run` with sweep options. More points than --max-points need --yes
 * (a dry run shows them all).
 */
export function prepareSweep(file: string, values: OptionValues): ResolvedSweep {
  const req = sweepRequest(file, values);
  const max = intOption(values, 'max-points') ?? DEFAULT_MAX_POINTS;
  const n = countPoints(req.spec);
  if (n > MAX_POINTS) throw new UsageError(`this sweep has ${n.toLocaleString('en')} points, more than bsft runs in one sweep (${MAX_POINTS.toLocaleString('en')}): narrow the grid, or use --random N`);
  if (n > max && values.yes !== true && values['dry-run'] !== true) {
    throw new UsageError(`this sweep has ${n.toLocaleString('en')} points, more than --max-points ${max}: look at them with --dry-run, then pass --yes (or a larger --max-points) to run them all`);
  }
  return resolveSweep(req, defaultPolicy((values.allow as string[] | undefined) ?? []));
}

