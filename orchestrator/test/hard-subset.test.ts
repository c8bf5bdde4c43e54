import { mkdtempSync, readFileSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import path from 'node:path';
import { describe, expect, it } from 'vitest';
import { bsft } from './helpers/cli.js';
import { sampleTasks, studyRun } from './helpers/study-runs.js';

const BEHAVIORS = ['reactive', 'proactive', 'restraint'];
const tasks = sampleTasks(60);

/** Which tasks each synthetic run gets wrong (by index): the known answer the tests check against. */
const WRONG: ((i: number) => boolean)[] = [(i) => i % 2 === 0, (i) => i % 3 === 0, (i) => i % 5 === 0, (i) => i < 12];

/** A token run whose prediction is the next behavior on the tasks `wrong` picks, none at all on those `missing` picks. */
function run(root: string, name: string, wrong: (i: number) => boolean, missing: (i: number) => boolean = () => false): string {
  const dir = studyRun(root, name, 'token', 'lora', tasks, () => 'reply');
  const lines = tasks.flatMap((t, i) => {
    if (missing(i)) return [];
    const b = wrong(i) ? BEHAVIORS[(BEHAVIORS.indexOf(t.behavior) + 1) % 3]! : t.behavior;
    return [JSON.stringify({ id: t.id, predicted_behavior: b, reply: `<|behavior:${b}|>reply` })];
  });
  writeFileSync(path.join(dir, 'predictions', 'test.jsonl'), `${lines.join('\n')}\n`);
  return dir;
}

/** The subset by the rule, from the designed pattern (not from the files). */
const expected = (k: number, wrong = WRONG) => tasks.filter((_, i) => wrong.filter((w) => !w(i)).length <= k).map((t) => t.id);

/** Macro-F1 of a run on some tasks, computed here (a class without gold items or predictions: F1 0). */
function macroF1(dir: string, ids: Set<string>): number {
  const pred = new Map(readFileSync(path.join(dir, 'predictions', 'test.jsonl'), 'utf8').trim().split('\n').map((l) => JSON.parse(l)).map((p) => [p.id, p.predicted_behavior]));
  const gold = tasks.filter((t) => ids.has(t.id));
  return BEHAVIORS.map((b) => {
    const tp = gold.filter((t) => t.behavior === b && pred.get(t.id) === b).length;
    const fp = gold.filter((t) => t.behavior !== b && pred.get(t.id) === b).length;
    const fn = gold.filter((t) => t.behavior === b && pred.get(t.id) !== b).length;
    return tp ? (2 * tp) / (2 * tp + fp + fn) : 0;
  }).reduce((a, b) => a + b, 0) / 3;
}

describe('bsft hard-subset', () => {
  it('keeps the tasks at most K of the runs get right, with its provenance, deterministically', async () => {
    const root = mkdtempSync(path.join(tmpdir(), 'bsft-hard-'));
    const dirs = WRONG.map((w, r) => run(root, `m${r}`, w));
    const hardDir = path.join(root, 'subsets');
    const res = await bsft(['hard-subset', 'hard1', '--runs', ...dirs, '--max-correct', '1', '--hard-dir', hardDir]);
    expect(res.code, res.stderr).toBe(0);
    const subset = JSON.parse(readFileSync(path.join(hardDir, 'hard1.json'), 'utf8'));
    expect(subset.ids).toEqual(expected(1));
    expect(subset.ids.length).toBeGreaterThan(0);
    expect(subset).toMatchObject({ format: 'bsft-hard-subset-v1', name: 'hard1', split: 'test', rule: { max_correct: 1, of: 4 }, tasks: 60 });
    expect(subset.runs.map((r: { run_id: string }) => r.run_id)).toEqual(['m0', 'm1', 'm2', 'm3']);
    expect(subset.created_at).toMatch(/^\d{4}-\d\d-\d\dT/);
    expect(subset.correct_histogram.reduce((a: number, b: number) => a + b, 0)).toBe(60);
    expect(subset.correct_histogram[0] + subset.correct_histogram[1]).toBe(subset.ids.length);
    expect(res.stdout).toContain(`Hard subset hard1: ${subset.ids.length} of 60 test tasks`);

    // --max-share 0.5 of 4 runs: at most 2 right; the same runs again give the same ids
    const share = await bsft(['hard-subset', 'half', '--runs', ...dirs, '--max-share', '0.5', '--hard-dir', hardDir]);
    expect(share.code, share.stderr).toBe(0);
    expect(JSON.parse(readFileSync(path.join(hardDir, 'half.json'), 'utf8')).ids).toEqual(expected(2));
    await bsft(['hard-subset', 'half2', '--runs', ...dirs, '--max-share', '0.5', '--hard-dir', hardDir]);
    expect(readFileSync(path.join(hardDir, 'half2.json'), 'utf8').replace(/"(name|created_at)": "[^"]*"/g, '')).toBe(readFileSync(path.join(hardDir, 'half.json'), 'utf8').replace(/"(name|created_at)": "[^"]*"/g, ''));
    // a name taken is refused; K must leave some tasks out
    expect((await bsft(['hard-subset', 'half', '--runs', ...dirs, '--hard-dir', hardDir])).stderr).toContain('a Hard subset half exists already');
    expect((await bsft(['hard-subset', 'all', '--runs', ...dirs, '--max-correct', '4', '--hard-dir', hardDir])).stderr).toContain('--max-correct 4 keeps every task');

    // Used by score and report: the subset's macro-F1 as computed here from the files.
    const scored = await bsft(['score', dirs[3]!, '--hard-subset', 'hard1', '--hard-dir', hardDir, '--json', '--bootstrap', '50']);
    expect(scored.code, scored.stderr).toBe(0);
    const report = JSON.parse(scored.stdout);
    expect(report.hard_subset.name).toBe('hard1');
    expect(report.hard_subset.n).toBe(subset.ids.length);
    expect(report.hard_subset.macro_f1.value).toBeCloseTo(macroF1(dirs[3]!, new Set(subset.ids)), 12);
    const rep = await bsft(['report', dirs[0]!, dirs[3]!, '--hard-subset', 'hard1', '--hard-dir', hardDir, '--out', path.join(root, 'rep'), '--bootstrap', '50']);
    expect(rep.code, rep.stderr).toBe(0);
    expect(rep.stdout).toContain(`Hard subset hard1 (${subset.ids.length}) macro-F1 [95% CI]`);
    const html = readFileSync(path.join(root, 'rep', 'report.html'), 'utf8');
    expect(html).toContain(`Hard subset hard1 (${subset.ids.length}) macro-F1`);
  });

  it('counts a missing prediction as wrong, and refuses runs scored on other tasks', async () => {
    const root = mkdtempSync(path.join(tmpdir(), 'bsft-hard-'));
    const missing = (i: number) => i >= 50;
    const dirs = [run(root, 'a', WRONG[0]!, missing), run(root, 'b', WRONG[1]!), run(root, 'c', WRONG[2]!)];
    const hardDir = path.join(root, 'subsets');
    const res = await bsft(['hard-subset', 'h', '--runs', ...dirs, '--max-correct', '1', '--hard-dir', hardDir]);
    expect(res.code, res.stderr).toBe(0);
    const wrongA = (i: number) => WRONG[0]!(i) || missing(i);
    expect(JSON.parse(readFileSync(path.join(hardDir, 'h.json'), 'utf8')).ids).toEqual(expected(1, [wrongA, WRONG[1]!, WRONG[2]!]));
    const other = studyRun(root, 'other', 'token', 'lora', sampleTasks(70).slice(10), () => 'reply');
    const bad = await bsft(['hard-subset', 'h2', '--runs', dirs[1]!, other, '--hard-dir', hardDir]);
    expect(bad.code).toBe(2);
    expect(bad.stderr).toContain('was not scored on the same test tasks');
    // a subset used on a split that lacks its tasks is refused, not silently shrunk
    const shifted = await bsft(['score', other, '--hard-subset', 'h', '--hard-dir', hardDir]);
    expect(shifted.code).toBe(2);
    expect(shifted.stderr).toMatch(/Hard subset h: \d+ of its \d+ tasks are not in this split/);
  });
});
