import { canonicalJson } from '../util/canonical-json.js';
import { Rng } from '../util/rng.js';

/**
 * The points of a sweep: a grid (every combination of the listed values, the first key outermost) or a seeded
 * random search (each listed key drawn from its values, each range drawn uniformly or log-uniformly).
 */

/** A range of a random search: uniform in [min, max], or log-uniform; integers when both ends were written as integers. */
export interface SweepRange {
  min: number;
  max: number;
  log: boolean;
  int: boolean;
}

export interface SweepSpec {
  /** Recipe path -> the values to try, in the order written. */
  grid: [string, unknown[]][];
  /** Recipe path -> range (random search only). */
  ranges: [string, SweepRange][];
  /** A random search of n points; without it, the grid. */
  random?: { n: number; seed: number };
}

export interface Point {
  /** 1-based, in the order the points are made. */
  index: number;
  /** Recipe path -> value, in the spec's key order. */
  values: Record<string, unknown>;
}

/** The swept keys, grid first, in the order written. */
export const sweptKeys = (spec: SweepSpec): string[] => [...spec.grid.map(([k]) => k), ...spec.ranges.map(([k]) => k)];

/** How many points the spec makes before duplicates are dropped (computed without making them). */
export function countPoints(spec: SweepSpec): number {
  return spec.random ? spec.random.n : spec.grid.reduce((n, [, values]) => n * values.length, 1);
}

/** A drawn float kept to 4 significant digits: readable in a command line and in a run's recipe. */
const round4 = (x: number) => Number(x.toPrecision(4));

function draw(r: SweepRange, rng: Rng): number {
  const u = rng.next();
  if (r.int) {
    if (!r.log) return r.min + Math.floor(u * (r.max - r.min + 1));
    return Math.min(r.max, Math.floor(Math.exp(Math.log(r.min) + u * (Math.log(r.max + 1) - Math.log(r.min)))));
  }
  const x = round4(r.log ? Math.exp(Math.log(r.min) + u * (Math.log(r.max) - Math.log(r.min))) : r.min + u * (r.max - r.min));
  return Math.min(r.max, Math.max(r.min, x)); // rounding never leaves the range (ends written with more digits)
}

/** The points of a spec; a point drawn twice by a random search is kept once (`dropped` counts the others). */
export function expandPoints(spec: SweepSpec): { points: Point[]; dropped: number } {
  const made: Record<string, unknown>[] = [];
  if (spec.random) {
    const rng = new Rng(spec.random.seed);
    for (let i = 0; i < spec.random.n; i++) {
      const values: Record<string, unknown> = {};
      for (const [k, options] of spec.grid) values[k] = options[Math.floor(rng.next() * options.length)];
      for (const [k, r] of spec.ranges) values[k] = draw(r, rng);
      made.push(values);
    }
  } else {
    let partial: Record<string, unknown>[] = [{}];
    for (const [k, options] of spec.grid) partial = partial.flatMap((p) => options.map((v) => ({ ...p, [k]: v })));
    made.push(...partial);
  }
  const seen = new Set<string>();
  const points: Point[] = [];
  for (const values of made) {
    const key = canonicalJson(values);
    if (seen.has(key)) continue;
    seen.add(key);
    points.push({ index: points.length + 1, values });
  }
  return { points, dropped: made.length - points.length };
}

/** A value as it is written after `--set key=` (YAML): numbers and plain words bare, anything else as JSON. */
export function yamlValue(v: unknown): string {
  if (typeof v === 'number') {
    const a = Math.abs(v);
    return a !== 0 && (a < 1e-3 || a >= 1e7) ? v.toExponential().replace('e+', 'e') : String(v);
  }
  if (typeof v === 'string' && /^[A-Za-z_][A-Za-z0-9_./-]*$/.test(v) && !/^(true|false|null|yes|no|on|off|~)$/i.test(v)) return v;
  return JSON.stringify(v);
}

/** `train.lr=2e-5, train.lora.r=16`: a point's values as a user reads them. */
export const pointText = (values: Record<string, unknown>): string => Object.entries(values).map(([k, v]) => `${k}=${yamlValue(v)}`).join(', ');
