import type { SplitName } from '../recipe/schema.js';
import { SPLITS } from '../recipe/schema.js';
import { Rng } from '../util/rng.js';

export interface Splittable {
  case_id: string;
  category: string;
  behavior: string;
}

/**
 * What the split of whole cases needs of the tasks, gathered as they stream by: each case's task count per stratum
 * (category x behavior), held compactly (a flat array of stratum index and count per case) so that a million
 * one-task cases stay small.
 */
export class CaseStrata {
  /** case_id -> [stratum index, count, stratum index, count, ...] */
  readonly cases = new Map<string, number[]>();
  readonly strata: string[] = [];
  readonly totals: number[] = [];
  private readonly index = new Map<string, number>();
  tasks = 0;

  static of(tasks: Iterable<Splittable>): CaseStrata {
    const s = new CaseStrata();
    for (const t of tasks) s.add(t);
    return s;
  }

  add(t: Splittable): void {
    const stratum = `${t.category}\u0000${t.behavior}`;
    let k = this.index.get(stratum);
    if (k === undefined) {
      k = this.strata.push(stratum) - 1;
      this.index.set(stratum, k);
      this.totals.push(0);
    }
    this.totals[k]!++;
    this.tasks++;
    const counts = this.cases.get(t.case_id);
    if (!counts) {
      this.cases.set(t.case_id, [k, 1]);
      return;
    }
    for (let i = 0; i < counts.length; i += 2) {
      if (counts[i] === k) {
        counts[i + 1]!++;
        return;
      }
    }
    counts.push(k, 1);
  }
}

/**
 * Assigns whole cases to splits (a case never appears in two splits), stratified by category x behavior:
 * cases are visited in a seeded random order, largest first, and each goes to the split whose share of the
 * case's strata is furthest below its target. Returns case_id -> split.
 */
export function assignSplits(tasks: Iterable<Splittable> | CaseStrata, fractions: Record<SplitName, number>, seed: number): Map<string, SplitName> {
  const { cases, totals, tasks: n } = tasks instanceof CaseStrata ? tasks : CaseStrata.of(tasks);
  const sizes = new Map<string, number>();
  for (const [id, counts] of cases) {
    let size = 0;
    for (let i = 1; i < counts.length; i += 2) size += counts[i]!;
    sizes.set(id, size);
  }
  const ids = new Rng(seed).shuffle([...cases.keys()].sort());
  // Stable sort keeps the shuffled order among cases of equal size.
  ids.sort((a, b) => sizes.get(b)! - sizes.get(a)!);

  const counts = Object.fromEntries(SPLITS.map((s) => [s, new Array<number>(totals.length).fill(0)])) as Record<SplitName, number[]>;
  const assigned = Object.fromEntries(SPLITS.map((s) => [s, 0])) as Record<SplitName, number>;
  const out = new Map<string, SplitName>();
  let total = 0;
  for (const id of ids) {
    const strata = cases.get(id)!;
    const size = sizes.get(id)!;
    let best: SplitName | undefined;
    let bestScore = -Infinity;
    for (const split of SPLITS) {
      if (fractions[split] <= 0) continue;
      // How far this split is below its target on the case's strata, plus on the overall task count.
      let score = 0;
      for (let i = 0; i < strata.length; i += 2) {
        const [k, m] = [strata[i]!, strata[i + 1]!];
        const want = fractions[split] * totals[k]!;
        score += (m * (want - counts[split][k]!)) / totals[k]!;
      }
      score += (size * (fractions[split] * (total + size) - assigned[split])) / n;
      if (score > bestScore) {
        best = split;
        bestScore = score;
      }
    }
    out.set(id, best!);
    for (let i = 0; i < strata.length; i += 2) counts[best!][strata[i]!]! += strata[i + 1]!;
    assigned[best!] += size;
    total += size;
  }
  return out;
}
