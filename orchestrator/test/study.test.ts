import { spawn, type ChildProcess } from 'node:child_process';
import { existsSync, mkdtempSync, readFileSync, readdirSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import path from 'node:path';
import { describe, expect, it } from 'vitest';
import { allocate } from '../src/study/create.js';
import { readRatingsLog } from '../src/study/ratings-log.js';
import { BSFT, bsft, ROOT } from './helpers/cli.js';
import { sampleTasks, studyRun } from './helpers/study-runs.js';
import { limit } from './helpers/time-scale.js';

const root = mkdtempSync(path.join(tmpdir(), 'bsft-study-'));
const tasks = sampleTasks(60);
const runsDir = path.join(root, 'runs');
const good = studyRun(runsDir, 'behaviorsft', 'token', 'lora', tasks, (t) => `Agreed. ${t.target}`);
const plain = studyRun(runsDir, 'standard-sft', 'none', 'full', tasks, (t, i) => (i % 5 === 0 ? '' : `Noted: ${t.target.slice(0, 60)}`));
const instructed = studyRun(runsDir, 'instructed', 'instruction', 'lora', tasks, (t) => `Per protocol: ${t.target.slice(0, 30)}`);
const studies = path.join(root, 'studies');
const at = { cwd: root };

/** `bsft study serve --port 0` in a subprocess; resolves once it listens, with its URL. */
async function serve(name: string): Promise<{ url: string; proc: ChildProcess; stderr: string[] }> {
  const proc = spawn(process.execPath, [BSFT, 'study', 'serve', name, '--port', '0', '--dir', studies], { cwd: root, env: { ...process.env, BSFT_LOG_LEVEL: 'info' }, stdio: ['ignore', 'pipe', 'pipe'] });
  const stderr: string[] = [];
  proc.stderr!.on('data', (d: Buffer) => stderr.push(d.toString()));
  const url = await new Promise<string>((resolve, reject) => {
    let text = '';
    proc.stdout!.on('data', (d: Buffer) => {
      text += d.toString();
      const m = /at (http:\/\/127\.0\.0\.1:\d+)\/r\//.exec(text);
      if (m) resolve(m[1]!);
    });
    proc.once('exit', (c) => reject(new Error(`study serve exited ${c}: ${stderr.join('')}`)));
  });
  return { url, proc, stderr };
}

const stop = (p: ChildProcess, signal: NodeJS.Signals = 'SIGTERM') => new Promise<void>((resolve) => {
  if (p.exitCode !== null || p.signalCode !== null) return resolve();
  p.once('exit', () => resolve());
  p.kill(signal);
});

async function addRater(study: string, rater: string): Promise<string> {
  const res = await bsft(['study', 'add-rater', study, rater, '--dir', studies], at);
  expect(res.code, res.stderr).toBe(0);
  return /\/r\/([A-Za-z0-9_-]+)/.exec(res.stdout)![1]!;
}

describe('bsft study create', () => {
  it('samples tasks every run predicted, pairs every two runs with sides drawn at random, and keeps the key apart', async () => {
    const res = await bsft(['study', 'create', 'three', '--runs', good, plain, instructed, '--n', '30', '--seed', '5', '--stratify', 'group', '--dir', studies], at);
    expect(res.code, res.stderr).toBe(0);
    expect(res.stdout).toMatch(/study three: 30 tasks of 60 .*90 pairs \(3 runs/);
    const dir = path.join(studies, 'three');
    const items = readFileSync(path.join(dir, 'items.jsonl'), 'utf8').trim().split('\n').map((l) => JSON.parse(l));
    const key = readFileSync(path.join(dir, 'key.jsonl'), 'utf8').trim().split('\n').map((l) => JSON.parse(l));
    expect(items).toHaveLength(90);
    expect(new Set(key.map((k) => k.task_id)).size).toBe(30);
    // Sides: each run of a pair is A about half the time.
    const firstIsA = key.filter((k) => k.a === k.runs[0]).length;
    expect(firstIsA).toBeGreaterThan(30);
    expect(firstIsA).toBeLessThan(60);
    // Stratified by behavior group: each group's share of the 60 eligible tasks, to within one task.
    const count = (xs: string[]) => xs.reduce<Record<string, number>>((m, x) => ({ ...m, [x]: (m[x] ?? 0) + 1 }), {});
    const groups = count(tasks.map((t) => t.behavior));
    const sampled = count(key.filter((k) => k.runs[0] === 0 && k.runs[1] === 1).map((k) => k.group));
    for (const [g, size] of Object.entries(groups)) expect(Math.abs(sampled[g]! - (30 * size) / 60)).toBeLessThan(1);
    // Blinding: nothing raters see names a run, a method or a behavior token; the instruction run's system prompt is gone.
    const seen = readFileSync(path.join(dir, 'items.jsonl'), 'utf8');
    for (const s of ['behaviorsft', 'standard-sft', 'instructed', '0123abcd', 'lora', '<|behavior', 'Behaviors:', 'predictions']) expect(seen).not.toContain(s);
    // The conversation shows speakers by name and role, as the task file has them.
    const t = tasks.find((x) => x.id === key[0].task_id)!;
    expect(items[0].conversation).toEqual(t.context.map((c) => ({ role: c.role, ...(c.name ? { name: c.name } : {}), content: c.content })));
    // The replies: the token run's without its token.
    const k = key.find((x) => x.runs[0] === 0 && x.a === 0)!;
    const it = items.find((x) => x.item === k.item)!;
    expect(it.A).toBe(`Agreed. ${tasks.find((x) => x.id === k.task_id)!.target}`);
    // Same seed, same sample and sides (the study id aside).
    const again = await bsft(['study', 'create', 'three-again', '--runs', good, plain, instructed, '--n', '30', '--seed', '5', '--stratify', 'group', '--dir', studies], at);
    expect(again.code).toBe(0);
    expect(readFileSync(path.join(studies, 'three-again', 'key.jsonl'), 'utf8')).toBe(readFileSync(path.join(dir, 'key.jsonl'), 'utf8'));
  });

  it('refuses what cannot make a study, saying why, and writes nothing', async () => {
    const short = studyRun(runsDir, 'one-token', 'token', 'lora', tasks, () => 'x');
    writeFileSync(path.join(short, 'predictions', 'test.jsonl'), tasks.map((t) => JSON.stringify({ id: t.id, predicted_behavior: t.behavior })).join('\n'));
    const res = await bsft(['study', 'create', 'bad', '--runs', good, short, '--dir', studies], at);
    expect(res.code).toBe(2);
    expect(res.stderr).toMatch(/test\.jsonl: no reply text .*eval\.max_new_tokens=256/);
    expect((await bsft(['study', 'create', 'bad', '--runs', good, '--dir', studies], at)).stderr).toMatch(/at least two runs/);
    expect((await bsft(['study', 'create', 'bad', '--runs', good, good, '--dir', studies], at)).stderr).toMatch(/is given twice/);
    const rubric = path.join(root, 'rubric.yaml');
    writeFileSync(rubric, 'version: v2\nquestions:\n  - id: Overall\n    text: ""\ncolour: blue\n');
    const bad = await bsft(['study', 'create', 'bad', '--runs', good, plain, '--rubric', rubric, '--dir', studies], at);
    expect(bad.code).toBe(2);
    expect(bad.stderr).toMatch(/questions\[0\]\.id: lower-case/);
    expect(bad.stderr).toMatch(/questions\[0\]\.text: /);
    expect(bad.stderr).toMatch(/colour/);
    expect(existsSync(path.join(studies, 'bad'))).toBe(false);
    expect(readdirSync(studies).filter((f) => f.includes('.tmp'))).toEqual([]);
  });

  it('allocates a stratified sample by largest remainder', () => {
    expect(allocate({ a: 50, b: 30, c: 20 }, 10)).toEqual({ a: 5, b: 3, c: 2 });
    expect(allocate({ a: 1, b: 1, c: 1 }, 2)).toEqual({ a: 1, b: 1, c: 0 });
    expect(allocate({ a: 2, b: 100 }, 50)).toEqual({ a: 1, b: 49 });
    expect(Object.values(allocate({ a: 7, b: 3, c: 11, d: 1 }, 13)).reduce((x, y) => x + y)).toBe(13);
  });
});

describe('bsft study serve', () => {
  it('shows raters nothing of the key: no page, asset or API answer holds a run id, method or file name', async () => {
    expect((await bsft(['study', 'create', 'blind', '--runs', good, plain, '--n', '12', '--dir', studies], at)).code).toBe(0);
    const token = await addRater('blind', 'dr-lee');
    const s = await serve('blind');
    try {
      expect((await fetch(`${s.url}/r/not-a-token`)).status).toBe(404);
      expect((await fetch(`${s.url}/api/r/not-a-token/state`)).status).toBe(404);
      const page = await fetch(`${s.url}/r/${token}`);
      expect(page.headers.get('content-security-policy')).toMatch(/default-src 'none'/);
      expect(page.headers.get('referrer-policy')).toBe('no-referrer');
      const state = await (await fetch(`${s.url}/api/r/${token}/state`)).json() as { order: string[] };
      const bodies = [await page.text(), JSON.stringify(state)];
      for (const id of state.order) bodies.push(await (await fetch(`${s.url}/api/r/${token}/items/${id}`)).text());
      const wrong = await fetch(`${s.url}/api/r/${token}/ratings`, { method: 'POST', headers: { 'content-type': 'application/json' }, body: JSON.stringify({ rating_id: 'abcdefgh12', item: state.order[0], answers: { overall: 'A' }, ms: 5 }) });
      expect(wrong.status).toBe(400);
      bodies.push(await wrong.text());
      expect(bodies.at(-1)).toMatch(/answers\.realism: not answered/);
      const all = bodies.join('\n');
      for (const s2 of ['behaviorsft', 'standard-sft', '0123abcd', 'lora', '(none, full)', '<|behavior', 'blind', 'messages.jsonl', 'predictions', 'task_id', 'case_id']) expect(all).not.toContain(s2);
    } finally {
      await stop(s.proc);
    }
  });

  it('kill -9 during a burst of ratings from two raters loses no acknowledged rating and stores none twice', async () => {
    expect((await bsft(['study', 'create', 'burst', '--runs', good, plain, '--n', '60', '--dir', studies], at)).code).toBe(0);
    const raters = { a: await addRater('burst', 'rater-a'), b: await addRater('burst', 'rater-b') };
    let s = await serve('burst');
    const order = (await (await fetch(`${s.url}/api/r/${raters.a}/state`)).json() as { order: string[] }).order;
    const sent = new Map<string, { token: string; body: object }>();
    const acked = new Set<string>();
    const answers = (i: number) => ({ overall: 'AB'[i % 2]!, realism: 'tie', proactivity: 'A', restraint: 'B' });
    let n = 0;
    const post = async (url: string, token: string, body: { rating_id: string }) => {
      const r = await fetch(`${url}/api/r/${token}/ratings`, { method: 'POST', headers: { 'content-type': 'application/json' }, body: JSON.stringify(body) });
      if (r.ok) acked.add(body.rating_id);
    };
    // Two raters send as fast as they can; the server is killed (SIGKILL) once 40 ratings are acknowledged.
    const burst = (who: 'a' | 'b') => (async () => {
      for (let i = 0; i < order.length; i++) {
        const body = { rating_id: `${who}-${i}-0123456789`, item: order[i]!, answers: answers(i), comment: '', ms: 1000 + i };
        sent.set(body.rating_id, { token: raters[who], body });
        n++;
        try {
          await post(s.url, raters[who], body);
        } catch {
          return; // the server is gone
        }
      }
    })();
    const killer = (async () => {
      while (acked.size < 40) await new Promise((r) => setTimeout(r, 2));
      s.proc.kill('SIGKILL');
    })();
    await Promise.all([burst('a'), burst('b'), killer]);
    await new Promise((r) => s.proc.exitCode !== null || s.proc.signalCode !== null ? r(null) : s.proc.once('exit', r));
    expect(acked.size).toBeGreaterThanOrEqual(40);
    expect(acked.size).toBeLessThan(120);
    const log = path.join(studies, 'burst', 'ratings.log');
    const stored = new Set(readRatingsLog(log).map((r) => r.rating_id));
    for (const id of acked) expect(stored.has(id), `acknowledged ${id} lost`).toBe(true);
    // The restarted server takes the lock of the killed one; the pages resend what they sent (acknowledged or not).
    s = await serve('burst');
    try {
      for (const { token, body } of sent.values()) await post(s.url, token, body as { rating_id: string });
      const all = readRatingsLog(log);
      expect(all.length).toBe(sent.size); // each rating once, whether or not it was stored before the kill
      expect(new Set(all.map((r) => r.rating_id)).size).toBe(all.length);
      const state = await (await fetch(`${s.url}/api/r/${raters.b}/state`)).json() as { answered: Record<string, unknown> };
      expect(Object.keys(state.answered)).toHaveLength([...sent.keys()].filter((id) => id.startsWith('b-')).length);
      expect(n).toBeGreaterThanOrEqual(acked.size);
    } finally {
      await stop(s.proc);
    }
  }, limit(120_000));
});
