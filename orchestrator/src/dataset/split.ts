import type { SplitName } from '../recipe/schema.js';
import { SPLITS } from '../recipe/schema.js';
import { Rng } from '../util/rng.js';

export interface Splittable {
  case_id: string;
  category: string;
  behavior: string;
}

/** What the split of whole cases needs of the tasks: each case's count per category x behavior, gathered as they stream by. */
export class CaseStrata {
  readonly cases = new Map<string, Map<string, number>>();
  readonly totals = new Map<string, number>();
  tasks = 0;

  static of(tasks: Iterable<Splittable>): CaseStrata {
    const s = new CaseStrata();
    for (const t of tasks) s.add(t);
    return s;
  }

  add(t: Splittable): void {
    const stratum = `${t.category}\u0000${t.behavior}`;
    const strata = this.cases.get(t.case_id) ?? new Map<string, number>();
    strata.set(stratum, (strata.get(stratum) ?? 0) + 1);
    this.cases.set(t.case_id, strata);
    this.totals.set(stratum, (this.totals.get(stratum) ?? 0) + 1);
    this.tasks++;
  }
}

/**
 * Assigns whole cases to splits (a case never appears in two splits), stratified by category x behavior:
 * cases are visited in a seeded random order, largest first, and each goes to the split whose share of the
 * case's strata is furthest below its target. Returns case_id -> split.
 */
export function assignSplits(tasks: Iterable<Splittable> | CaseStrata, fractions: Record<SplitName, number>, seed: number): Map<string, SplitName> {
  const { cases, totals, tasks: n } = tasks instanceof CaseStrata ? tasks : CaseStrata.of(tasks);
  const ids = new Rng(seed).shuffle([...cases.keys()].sort());
  const size = (id: string) => [...cases.get(id)!.values()].reduce((a, b) => a + b, 0);
  // Stable sort keeps the shuffled order among cases of equal size.
  ids.sort((a, b) => size(b) - size(a));

  const counts = Object.fromEntries(SPLITS.map((s) => [s, new Map<string, number>()])) as Record<SplitName, Map<string, number>>;
  const assigned = Object.fromEntries(SPLITS.map((s) => [s, 0])) as Record<SplitName, number>;
  const out = new Map<string, SplitName>();
  let total = 0;
  for (const id of ids) {
    const strata = cases.get(id)!;
    let best: SplitName | undefined;
    let bestScore = -Infinity;
    for (const split of SPLITS) {
      if (fractions[split] <= 0) continue;
      // How far this split is below its target on the case's strata, plus on the overall task count.
      let score = 0;
      for (const [stratum, n] of strata) {
        const want = fractions[split] * totals.get(stratum)!;
        score += n * (want - (counts[split].get(stratum) ?? 0)) / totals.get(stratum)!;
      }
      score += (size(id) * (fractions[split] * (total + size(id)) - assigned[split])) / n;
      if (score > bestScore) {
        best = split;
        bestScore = score;
      }
    }
    out.set(id, best!);
    for (const [stratum, n] of strata) counts[best!].set(stratum, (counts[best!].get(stratum) ?? 0) + n);
    assigned[best!] += size(id);
    total += size(id);
  }
  return out;
}
