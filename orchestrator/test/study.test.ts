import { spawn, type ChildProcess } from 'node:child_process';
import { existsSync, mkdtempSync, readFileSync, readdirSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import path from 'node:path';
import { describe, expect, it } from 'vitest';
import { allocate } from '../src/study/create.js';
import { readRatingsLog } from '../src/study/ratings-log.js';
import { openPage } from './helpers/browser.js';
import { BSFT, bsft } from './helpers/cli.js';
import { freePort } from './helpers/redis-server.js';
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
async function serve(name: string, port = 0): Promise<{ url: string; proc: ChildProcess; stderr: string[] }> {
  const proc = spawn(process.execPath, [BSFT, 'study', 'serve', name, '--port', String(port), '--dir', studies], { cwd: root, env: { ...process.env, BSFT_LOG_LEVEL: 'info' }, stdio: ['ignore', 'pipe', 'pipe'] });
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
      // A rater added while the server runs can rate at once; a second writer (serve, import) is refused, named.
      const late = await addRater('blind', 'dr-late');
      expect((await fetch(`${s.url}/api/r/${late}/state`)).status).toBe(200);
      const second = await bsft(['study', 'serve', 'blind', '--port', '0', '--dir', studies], at);
      expect(second.code).toBe(2);
      expect(second.stderr).toMatch(new RegExp(`study blind is in use by process ${s.proc.pid} on `));
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

/** Minimal RFC 4180 reader (quoted fields, doubled quotes, CRLF) for the export. */
function parseCsv(text: string): Record<string, string>[] {
  const rows: string[][] = [];
  let row: string[] = [];
  let field = '';
  let quoted = false;
  for (let i = 0; i < text.length; i++) {
    const c = text[i]!;
    if (quoted) {
      if (c === '"' && text[i + 1] === '"') field += '"', i++;
      else if (c === '"') quoted = false;
      else field += c;
    } else if (c === '"') quoted = true;
    else if (c === ',') row.push(field), (field = '');
    else if (c === '\n') row.push(field.replace(/\r$/, '')), rows.push(row), (row = []), (field = '');
    else field += c;
  }
  const [head, ...body] = rows;
  return body.map((r) => Object.fromEntries(head!.map((h, i) => [h, r[i]!])));
}

describe('a study in headless Chromium', () => {
  it('two raters rate 20 pairs with the keyboard, one reloads half-way, the server is killed and restarted; the report equals the export', async () => {
    expect((await bsft(['study', 'create', 'ward', '--runs', good, plain, '--n', '20', '--seed', '3', '--dir', studies], at)).code).toBe(0);
    const tokens = [await addRater('ward', 'dr-okafor'), await addRater('ward', 'nurse-rivera')];
    const port = await freePort();
    let s = await serve('ward', port);
    const a = await openPage(`${s.url}/r/${tokens[0]}`);
    const b = await openPage(`${s.url}/r/${tokens[1]}`);
    const rated = (p: typeof a.page, n: number) => p.waitForFunction((k) => document.getElementById('progress')!.textContent!.startsWith(`${k} of 20 rated`), n, { timeout: limit(20_000) });
    /** Rates the shown pair with keys: dr-okafor prefers the fuller reply, nurse-rivera answers by the pair's position. */
    async function rate(p: typeof a.page, who: number, k: number) {
      if (who === 0) {
        const A = (await p.locator('#reply-A .text').textContent())!;
        const B = (await p.locator('#reply-B .text').textContent())!;
        await p.keyboard.press(A.length > B.length ? 'a' : A.length < B.length ? 'b' : 't');
      } else await p.keyboard.press(['a', 'b', 't'][k % 3]!);
      if (k === 1) expect(await p.locator('#status').textContent()).toBe(''); // an answer on the next pair: no "saved" beside it
      for (const key of who === 0 ? ['t', '1', '2'] : ['3', 'b', 'a']) await p.keyboard.press(key);
      if (k === 4) {
        await p.keyboard.press('c');
        await p.keyboard.type(`Reply A, "hedged", misses the K+ check; ${who}`);
        await p.keyboard.press('Escape');
      }
      await p.keyboard.press('Enter');
    }
    try {
      await rated(a.page, 0);
      await rated(b.page, 0);
      expect(await a.page.locator('.turn.user .who').first().textContent()).toMatch(/^[^(]+ \(user\)$/); // the speaker's name and role
      for (let k = 0; k < 10; k++) {
        await rate(a.page, 0, k);
        await rated(a.page, k + 1);
        if (k === 0) expect(await a.page.locator('#status').textContent()).toMatch(/^Pair \d+ saved\.$/); // which pair
        await rate(b.page, 1, k);
        await rated(b.page, k + 1);
      }
      // dr-okafor stops and comes back (a reload): the page resumes at the next unrated pair.
      await a.page.reload();
      await rated(a.page, 10);
      // The server is killed (kill -9) while nurse-rivera rates; her page keeps the rating until the server is back.
      await stop(s.proc, 'SIGKILL');
      await rate(b.page, 1, 10);
      await b.page.getByText(/Not saved yet: the server does not answer/).waitFor({ timeout: limit(20_000) });
      s = await serve('ward', port);
      await rated(b.page, 11);
      for (let k = 10; k < 20; k++) {
        await rate(a.page, 0, k);
        await rated(a.page, k + 1);
        if (k > 10) {
          await rate(b.page, 1, k);
          await rated(b.page, k + 1);
        }
      }
      await a.page.getByText('Every pair is rated. Thank you.').waitFor();
      await b.page.getByText('Every pair is rated. Thank you.').waitFor();
      const unexpected = [...a.errors, ...b.errors].filter((e) => !/ERR_CONNECTION_REFUSED|Failed to fetch/.test(e));
      expect(unexpected).toEqual([]);
    } finally {
      await a.close();
      await b.close();
      await stop(s.proc);
    }
    const out = path.join(root, 'ward-export');
    const exp = await bsft(['study', 'export', 'ward', '--out', out, '--dir', studies], at);
    expect(exp.code, exp.stderr).toBe(0);
    expect(exp.stdout).toContain('40 rating(s) of 20 pairs exported');
    const rows = parseCsv(readFileSync(path.join(out, 'ratings.csv'), 'utf8'));
    expect(rows).toHaveLength(40);
    expect(rows.filter((r) => r.comment).map((r) => r.comment)).toEqual([`Reply A, "hedged", misses the K+ check; 0`, `Reply A, "hedged", misses the K+ check; 1`]);
    // Win rates from the export alone, against the report's.
    const report = path.join(root, 'ward-report');
    const res = await bsft(['report', '--study', 'ward', '--studies-dir', studies, '--out', report, '--bootstrap', '100'], at);
    expect(res.code, res.stderr).toBe(0);
    expect(res.stdout).toMatch(/Blind pairwise study/);
    const study = JSON.parse(readFileSync(path.join(report, 'report.json'), 'utf8')).study;
    const pair = study.pairs[0];
    expect([pair.a, pair.b]).toEqual([rows[0]!.run_a, rows[0]!.run_b]);
    for (const q of ['overall', 'realism', 'proactivity', 'restraint']) {
      const share = (w: string) => rows.filter((r) => r[`${q}_winner`] === w).length / rows.length;
      expect(pair.questions[q].win.value).toBeCloseTo(share(pair.a), 12);
      expect(pair.questions[q].tie.value).toBeCloseTo(share('tie'), 12);
      expect(pair.questions[q].loss.value).toBeCloseTo(share(pair.b), 12);
    }
    // dr-okafor always preferred the fuller reply: BehaviorSFT's here (the other run's replies are cut or empty).
    expect(rows.filter((r) => r.rater === 'dr-okafor').every((r) => r.overall_winner === pair.a)).toBe(true);
    expect(study.agreement.overall.units).toBe(20);
    expect(study.agreement.overall.cohen.kappa.value).toEqual(expect.any(Number));
    expect(readFileSync(path.join(report, 'report.md'), 'utf8')).toContain('## Blind pairwise study');
    const html = await openPage(`file://${path.join(report, 'report.html')}`);
    try {
      await html.page.locator('#study [data-chart="study"]').waitFor();
      // A stacked bar per question, drawn (width > 0 in the page): first preferred + tie + second preferred = the whole bar.
      for (const q of ['overall', 'realism', 'proactivity', 'restraint']) {
        const widths = await html.page.locator(`#study [data-chart="study"] rect.mark[data-question="${q}"]`).evaluateAll((els) => els.map((e) => e.getBoundingClientRect().width));
        expect(widths.length).toBeGreaterThan(0);
        expect(widths.reduce((a, b) => a + b, 0)).toBeCloseTo(420, 0);
      }
      expect(await html.page.locator('#study table').count()).toBeGreaterThanOrEqual(4);
      expect(html.errors).toEqual([]);
    } finally {
      await html.close();
    }
  }, limit(240_000));

  it('an offline form: rated in the browser without a server, downloaded, imported once', async () => {
    expect((await bsft(['study', 'create', 'offline', '--runs', good, plain, '--n', '6', '--dir', studies], at)).code).toBe(0);
    await addRater('offline', 'dr-haddad');
    const out = path.join(root, 'offline-export');
    const exp = await bsft(['study', 'export', 'offline', '--out', out, '--form', 'dr-haddad', '--dir', studies], at);
    expect(exp.code, exp.stderr).toBe(0);
    const form = readFileSync(path.join(out, 'form-dr-haddad.html'), 'utf8');
    for (const s2 of ['behaviorsft', 'standard-sft', '0123abcd', 'lora', '<|behavior']) expect(form).not.toContain(s2);
    const f = await openPage(`file://${path.join(out, 'form-dr-haddad.html')}`);
    const file = path.join(root, 'ratings-dr-haddad.json');
    try {
      for (let k = 0; k < 3; k++) {
        for (const key of ['a', 'b', 't', 'a', 'Enter']) await f.page.keyboard.press(key);
        await f.page.waitForFunction((n) => document.getElementById('progress')!.textContent!.startsWith(`${n} of 6 rated`), k + 1);
      }
      await f.page.reload(); // answers are kept in the browser
      await f.page.waitForFunction(() => document.getElementById('progress')!.textContent!.startsWith('3 of 6 rated'));
      const [download] = await Promise.all([f.page.waitForEvent('download'), f.page.click('#download')]);
      await download.saveAs(file);
      expect(f.errors).toEqual([]);
    } finally {
      await f.close();
    }
    const first = await bsft(['study', 'import', 'offline', file, '--dir', studies], at);
    expect(first.code, first.stderr).toBe(0);
    expect(first.stdout).toContain('3 rating(s) stored, 0 already there');
    expect((await bsft(['study', 'import', 'offline', file, '--dir', studies], at)).stdout).toContain('0 rating(s) stored, 3 already there');
    // A form of another study, or a tampered rating, is refused whole.
    const doc = JSON.parse(readFileSync(file, 'utf8'));
    writeFileSync(file, JSON.stringify({ ...doc, ratings: [...doc.ratings, { ...doc.ratings[0], rating_id: 'zzzzzzzz99', answers: { overall: 'C' } }] }));
    const bad = await bsft(['study', 'import', 'ward', file, '--dir', studies], at);
    expect(bad.code).toBe(2);
    expect(bad.stderr).toMatch(/nothing imported/);
    expect(bad.stderr).toMatch(/written by a form of another study/);
    expect(bad.stderr).toMatch(/ratings\[3\]\.answers\.overall/);
  }, limit(120_000));
});
