import { spawn } from 'node:child_process';
import { createHash } from 'node:crypto';
import { existsSync, mkdirSync, mkdtempSync, readdirSync, readFileSync, statSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import path from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { pathToFileURL } from 'node:url';
import { CHROMIUM, openPage } from './helpers/browser.js';
import { bsft, BSFT, FIXTURES, ROOT } from './helpers/cli.js';
import { torchPython } from './helpers/python.js';
import { sampleTasks, studyRun } from './helpers/study-runs.js';
import { FakeOpenAI, replyOf } from './helpers/fake-openai.js';
import { queueEnv, startWorkerProc, stop, waitForRun } from './helpers/queue.js';
import { limit } from './helpers/time-scale.js';

const KEY = 'sk-test-chat-eval-4f9a1c';
const BEHAVIORS = ['reactive', 'proactive', 'restraint'];
const INSTRUCTION = 'You are a clinical assistant in a care-team conversation. Behaviors:\n{behaviors}\nStart your reply with the behavior in brackets, e.g. [proactive].';

/** The rule the fake model answers by (the test knows it): a behavior from the last message's length; some replies untagged. */
const ruleBehavior = (last: string) => BEHAVIORS[last.length % 3]!;
const untagged = (last: string) => last.length % 7 === 0;
const lastOf = (messages: { content: string }[]) => messages.at(-1)!.content;
const hashOf = (messages: unknown) => createHash('sha256').update(JSON.stringify(messages)).digest('hex');

/** One fake server for predictions (model "served-model") and the judge (model "judge-model"). */
function fakeServer(): FakeOpenAI {
  const fake = new FakeOpenAI();
  fake.models = ['served-model', 'judge-model'];
  fake.key = KEY;
  const tries = new Map<string, number>();
  fake.answer = (user, constrained, body) => {
    if (body.model === 'judge-model') {
      // The judge labels the behavior the reply says it takes ("I would <behavior> here").
      const b = /I would (\w+) here/.exec(replyOf(user))?.[1] ?? 'reactive';
      return constrained ? JSON.stringify({ label: b }) : `label: ${b}`;
    }
    const h = hashOf(body.messages);
    const n = (tries.get(h) ?? 0) + 1;
    tries.set(h, n);
    const last = lastOf(body.messages);
    // Some first attempts fail: 429 with Retry-After, or 503; the client retries them.
    if (n === 1 && last.length % 11 === 0) return { status: 429, headers: { 'retry-after': '0' } };
    if (n === 1 && last.length % 13 === 0) return { status: 503 };
    const b = ruleBehavior(last);
    return `${untagged(last) ? '' : `[${b}] `}I would ${b} here.`;
  };
  return fake;
}

function recipe(dir: string, url: string, extra = ''): string {
  const file = path.join(dir, 'eval.yaml');
  writeFileSync(file, `extends: ${path.join(ROOT, 'recipes', 'smoke.yaml')}
name: eval-chat
data:
  conditioning: instruction
  max_seq_len: 32768
  instruction: ${JSON.stringify(INSTRUCTION)}
train: { method: none }
eval:
  engine: openai-chat
  endpoint: { base_url: ${url}, model: served-model, max_concurrency: 4, max_retries: 3, timeout_s: 20 }
  reply_tag: true
  splits: [test]
  max_new_tokens: 64
  bootstrap: 50
judge: { kind: openai, base_url: ${url}, model: judge-model, max_concurrency: 4 }
store: { path: ${dir}/runs }
${extra}`);
  return file;
}

/** The messages each test task should be sent, rendered here from the task file and the recipe's behaviors. */
function expectedMessages(runDir: string, conditioning: 'instruction' | 'none' = 'instruction'): Map<string, { role: string; content: string }[]> {
  const resolved = JSON.parse(readFileSync(path.join(runDir, 'recipe.json'), 'utf8'));
  const system = INSTRUCTION.replace('{behaviors}', Object.entries(resolved.data.behaviors as Record<string, { description: string }>).map(([b, d]) => `- ${b}: ${d.description}`).join('\n'));
  const ids = new Set(JSON.parse(readFileSync(path.join(runDir, 'dataset', 'manifest.json'), 'utf8')).documents.test as string[]);
  const out = new Map<string, { role: string; content: string }[]>();
  for (const line of readFileSync(path.join(ROOT, 'recipes', 'data', 'behaviorbench-sample.jsonl'), 'utf8').split('\n').filter(Boolean)) {
    const t = JSON.parse(line) as { id: string; context: { role: string; name?: string; content: string }[] };
    if (!ids.has(t.id)) continue;
    const turns = t.context.map((c) => ({ role: c.role, content: c.name ? `${c.name}: ${c.content}` : c.content }));
    if (conditioning === 'none') out.set(t.id, turns);
    else out.set(t.id, turns[0]?.role === 'system' ? [{ role: 'system', content: `${system}\n\n${turns[0].content}` }, ...turns.slice(1)] : [{ role: 'system', content: system }, ...turns]);
  }
  return out;
}

/** The processes under `pid` (children, theirs, ...), from /proc. */
function descendants(pid: number): number[] {
  const parent = new Map<number, number>();
  for (const p of readdirSync('/proc').filter((n) => /^\d+$/.test(n))) {
    try {
      const stat = readFileSync(`/proc/${p}/stat`, 'utf8');
      parent.set(Number(p), Number(stat.slice(stat.lastIndexOf(')') + 2).split(' ')[1]));
    } catch {
      // gone meanwhile
    }
  }
  const out: number[] = [];
  const walk = (of: number) => { for (const [c, pp] of parent) if (pp === of) { out.push(c); walk(c); } };
  walk(pid);
  return out;
}

/** A process's environment as text ('' when it is gone). */
function environ(pid: number): string {
  try {
    return readFileSync(`/proc/${pid}/environ`, 'utf8');
  } catch {
    return '';
  }
}

/** Every file under `dir` that contains `needle`. */
function filesWith(dir: string, needle: string): string[] {
  const found: string[] = [];
  const walk = (d: string) => {
    for (const name of readdirSync(d)) {
      const p = path.join(d, name);
      if (statSync(p).isDirectory()) walk(p);
      else if (readFileSync(p).includes(needle)) found.push(p);
    }
  };
  walk(dir);
  return found;
}

describe('BehaviorBench for a model as it ships, through a chat endpoint (train.method none)', () => {
  const fake = fakeServer();
  beforeAll(() => fake.start());
  afterAll(() => fake.stop());
  const env = { BSFT_PREDICT_API_KEY: KEY, BSFT_JUDGE_API_KEY: KEY };

  it('sends each task as the messages rendered here, retries 429 and 503, reads the tags, and scores the judge\'s labels', async () => {
    const dir = mkdtempSync(path.join(tmpdir(), 'bsft-chat-eval-'));
    const res = await bsft(['run', recipe(dir, fake.url), '--allow', dir], { env });
    expect(res.code, res.stderr.slice(-3000)).toBe(0);
    const runDir = path.join(dir, 'runs', readdirSync(path.join(dir, 'runs')).find((d) => d.startsWith('eval-chat-'))!);
    const steps = JSON.parse(readFileSync(path.join(runDir, 'run.json'), 'utf8')).steps.map((s: { step: string; state: string }) => `${s.step}:${s.state}`);
    expect(steps).toEqual(['build:done', 'train:skipped', 'predict:done', 'judge:done', 'score:done']);
    expect(existsSync(path.join(runDir, 'final'))).toBe(false);

    // Every request: exactly the messages of one task as rendered here, greedy, the recipe's max_tokens.
    const expected = expectedMessages(runDir);
    const byHash = new Map([...expected].map(([id, m]) => [hashOf(m), id]));
    const asked = fake.chatRequests().filter((r) => r.body!.model === 'served-model');
    for (const r of asked) {
      expect(byHash.has(hashOf(r.body!.messages)), JSON.stringify(r.body!.messages).slice(0, 300)).toBe(true);
      expect(r.body).toMatchObject({ temperature: 0, max_tokens: 64 });
    }
    const answered = new Set(asked.map((r) => byHash.get(hashOf(r.body!.messages))));
    expect(answered.size).toBe(expected.size);
    const retried = [...expected.values()].filter((m) => lastOf(m).length % 11 === 0 || lastOf(m).length % 13 === 0).length;
    expect(retried).toBeGreaterThan(0);
    expect(asked.length).toBe(expected.size + retried); // each failed first attempt asked once more

    const rows = readFileSync(path.join(runDir, 'predictions', 'test.jsonl'), 'utf8').trim().split('\n').map((l) => JSON.parse(l));
    expect(rows.map((r) => r.id)).toEqual(JSON.parse(readFileSync(path.join(runDir, 'dataset', 'manifest.json'), 'utf8')).documents.test); // the split's order
    for (const r of rows) {
      const last = lastOf(expected.get(r.id)!);
      expect(r.predicted_behavior).toBeNull();
      expect(r.tagged_behavior).toBe(untagged(last) ? null : ruleBehavior(last));
      expect(r.reply).toBe(`I would ${ruleBehavior(last)} here.`); // the tag is not shown to the judge
    }
    // Scored: the judge's labels (the rule's behavior) against the gold, computed here.
    const gold = new Map(readFileSync(path.join(runDir, 'dataset', 'test.messages.jsonl'), 'utf8').trim().split('\n').map((l) => JSON.parse(l)).map((g) => [g.id, g.behavior as string]));
    const f1 = (pred: (id: string) => string | null) => BEHAVIORS.map((b) => {
      const ids = [...gold.keys()];
      const tp = ids.filter((id) => gold.get(id) === b && pred(id) === b).length;
      const fp = ids.filter((id) => gold.get(id) !== b && pred(id) === b).length;
      const fn = ids.filter((id) => gold.get(id) === b && pred(id) !== b).length;
      return tp ? (2 * tp) / (2 * tp + fp + fn) : 0;
    }).reduce((a, b) => a + b, 0) / 3;
    const score = JSON.parse(readFileSync(path.join(runDir, 'score', 'test.json'), 'utf8'));
    expect(score.label_source).toEqual({ token: 0, judge: expected.size, none: 0 });
    expect(score.overall.macro_f1.value).toBeCloseTo(f1((id) => ruleBehavior(lastOf(expected.get(id)!))), 12);
    const nUntagged = rows.filter((r) => r.tagged_behavior === null).length;
    expect(nUntagged).toBeGreaterThan(0);
    expect(score.tag.untagged).toBe(nUntagged);
    expect(score.tag.macro_f1.value).toBeCloseTo(f1((id) => rows.find((r) => r.id === id).tagged_behavior), 12);
    expect(score.tag.judge_agreement.accuracy.value).toBeCloseTo((expected.size - nUntagged) / expected.size, 12);
    expect(res.stdout).toMatch(/reply tags \(eval\.reply_tag\): macro-F1 [\d.]+ .* repl(y|ies) without a tag, counted wrong; tag vs judge on \d+ replies/);

    // The key: sent to the server, never written or logged.
    expect(filesWith(dir, KEY)).toEqual([]);
    expect(res.stdout + res.stderr).not.toContain(KEY);
  }, limit(120_000));

  it('zero-shot (conditioning none): the conversation as it is, no instruction added, no tag read', async () => {
    const dir = mkdtempSync(path.join(tmpdir(), 'bsft-chat-none-'));
    const mark = fake.chatRequests().length;
    const res = await bsft(['run', recipe(dir, fake.url), '--allow', dir, '--set', 'data.conditioning=none', '--set', 'eval.reply_tag=false'], { env });
    expect(res.code, res.stderr.slice(-2000)).toBe(0);
    const runDir = path.join(dir, 'runs', readdirSync(path.join(dir, 'runs')).find((d) => d.startsWith('eval-chat-'))!);
    const expected = expectedMessages(runDir, 'none');
    const byHash = new Map([...expected].map(([id, m]) => [hashOf(m), id]));
    const asked = fake.chatRequests().slice(mark).filter((r) => r.body!.model === 'served-model');
    expect(new Set(asked.map((r) => byHash.get(hashOf(r.body!.messages)))).size).toBe(expected.size);
    expect(asked.every((r) => byHash.has(hashOf(r.body!.messages)))).toBe(true);
    expect(asked.some((r) => r.body!.messages.some((m) => m.content.includes('Start your reply with the behavior')))).toBe(false); // no instruction
    const rows = readFileSync(path.join(runDir, 'predictions', 'test.jsonl'), 'utf8').trim().split('\n').map((l) => JSON.parse(l));
    expect(rows.every((r) => !('tagged_behavior' in r))).toBe(true);
    expect(rows.some((r) => r.reply.startsWith('['))).toBe(true); // the reply as the model gave it, tag and all
  });

  it('kill -9 mid-evaluation, then the same command: only the missing prompts are asked, and the file is the same as an uninterrupted run\'s', async () => {
    const whole = mkdtempSync(path.join(tmpdir(), 'bsft-chat-whole-'));
    expect((await bsft(['run', recipe(whole, fake.url), '--allow', whole], { env })).code).toBe(0);
    const dir = mkdtempSync(path.join(tmpdir(), 'bsft-chat-kill-'));
    const file = recipe(dir, fake.url);
    fake.delayMs = 60;
    const before = fake.chatRequests().length;
    const child = spawn(process.execPath, [BSFT, 'run', file, '--allow', dir], { cwd: ROOT, env: { ...process.env, ...env }, stdio: 'ignore' });
    const progress = () => {
      const runs = path.join(dir, 'runs');
      const run = existsSync(runs) ? readdirSync(runs).find((d) => d.startsWith('eval-chat-')) : undefined;
      const p = run ? path.join(runs, run, 'predict-progress', 'test.jsonl.endpoint') : '';
      return p && existsSync(p) ? readFileSync(p, 'utf8').split('\n').length - 1 : 0;
    };
    const until = Date.now() + limit(60_000);
    while (progress() < 12 && Date.now() < until) await new Promise((r) => setTimeout(r, 20));
    child.kill('SIGKILL');
    await new Promise((r) => child.once('exit', r));
    fake.delayMs = 0;
    const kept = progress();
    expect(kept).toBeGreaterThanOrEqual(12);
    const firstAsked = fake.chatRequests().slice(before).filter((r) => r.body!.model === 'served-model').length;
    const mark = fake.chatRequests().length;
    const again = await bsft(['run', file, '--allow', dir], { env });
    expect(again.code, again.stderr.slice(-2000)).toBe(0);
    const runDir = path.join(dir, 'runs', readdirSync(path.join(dir, 'runs')).find((d) => d.startsWith('eval-chat-'))!);
    const total = expectedMessages(runDir).size;
    const asked = fake.chatRequests().slice(mark).filter((r) => r.body!.model === 'served-model');
    const keptIds = new Set(readFileSync(path.join(runDir, 'predict-progress', 'test.jsonl.endpoint'), 'utf8').split('\n').slice(0, kept).map((l) => JSON.parse(l.split('\t').slice(2).join('\t')).id));
    const askedTasks = new Set(asked.map((r) => hashOf(r.body!.messages)));
    expect(askedTasks.size).toBe(total - keptIds.size); // none of the kept ones asked again
    expect(firstAsked).toBeGreaterThanOrEqual(kept);
    const wholeRun = path.join(whole, 'runs', readdirSync(path.join(whole, 'runs')).find((d) => d.startsWith('eval-chat-'))!);
    expect(readFileSync(path.join(runDir, 'predictions', 'test.jsonl'), 'utf8')).toBe(readFileSync(path.join(wholeRun, 'predictions', 'test.jsonl'), 'utf8'));
  }, limit(180_000));

  it('through the queue: a worker evaluates it (no trainer started), its key allowed for that endpoint only', async () => {
    const dir = mkdtempSync(path.join(tmpdir(), 'bsft-chat-queue-'));
    const qenv = { ...queueEnv({ BSFT_ALLOW_PATHS: dir }), ...env };
    const sub = await bsft(['submit', recipe(dir, fake.url), '--allow', dir], { env: qenv });
    const runId = /submitted run (\S+)/.exec(sub.stdout)?.[1];
    expect(runId, sub.stderr).toBeTruthy();
    // The worker allows this endpoint for its keys (--judge-endpoint); job-policy tests cover a refusal.
    const dump = path.join(dir, 'trainer-env.json');
    const worker = startWorkerProc('ok', { ...qenv, FIXTURE_ENV_DUMP: dump }, ['--judge-endpoint', fake.url]);
    try {
      await worker.ready;
      const done = await waitForRun(qenv, runId!, (v) => ['completed', 'failed'].includes(v.state), 120_000);
      expect(done.state, JSON.stringify(done)).toBe('completed');
      // The worker's children (its build and scoring processes) never hold the endpoint keys.
      const children = descendants(worker.proc.pid!);
      expect(children.length).toBeGreaterThan(0);
      for (const pid of children) expect(environ(pid), `process ${pid}`).not.toContain(KEY);
      expect(environ(worker.proc.pid!)).toContain(KEY); // the check can see a key where there is one
    } finally {
      await stop(worker);
    }
    expect(existsSync(dump)).toBe(false); // no trainer process was started for a model evaluated through its endpoint
    const score = JSON.parse(readFileSync(path.join(dir, 'runs', runId!, 'score', 'test.json'), 'utf8'));
    expect(score.label_source.judge).toBe(score.n_tasks);
    expect(filesWith(dir, KEY)).toEqual([]);
  }, limit(120_000));

  it('an endpoint that takes max_completion_tokens instead of max_tokens (OpenAI\'s newer models) is asked that way, for predictions and the judge', async () => {
    const dir = mkdtempSync(path.join(tmpdir(), 'bsft-chat-mct-'));
    for (const model of ['served-model', 'judge-model']) {
      const mark = fake.chatRequests().length;
      const sub = path.join(dir, model);
      mkdirSync(sub);
      fake.rejectMaxTokensFor = model;
      try {
        const res = await bsft(['run', recipe(sub, fake.url), '--allow', dir,
          '--set', 'eval.endpoint.max_concurrency=1', '--set', 'judge.max_concurrency=1'], { env });
        expect(res.code, res.stderr.slice(-2000)).toBe(0);
      } finally {
        fake.rejectMaxTokensFor = undefined;
      }
      const asked = fake.chatRequests().slice(mark).filter((r) => r.body!.model === model);
      // one refusal, then every request with the other name (the judge asks for 32 tokens, predict for max_new_tokens)
      expect(asked.filter((r) => r.body!.max_tokens !== undefined).length, model).toBe(1);
      expect(asked.filter((r) => r.body!.max_completion_tokens !== undefined).length).toBe(asked.length - 1);
      expect(asked.length).toBeGreaterThan(2);
    }
  });

  it('--dry-run counts the requests and tokens and prices them, writing nothing', async () => {
    const dir = mkdtempSync(path.join(tmpdir(), 'bsft-chat-dry-'));
    const asked = fake.requests.length;
    const res = await bsft(['run', recipe(dir, fake.url), '--allow', dir, '--dry-run', '--price-in', '0.5', '--price-out', '2'], { env });
    expect(fake.requests.length).toBe(asked); // nothing asked of the endpoint
    expect(res.code, res.stderr).toBe(0);
    const m = /\n +test +(\d+) +([\d,]+) +([\d,]+)\n/.exec(res.stdout);
    expect(m, res.stdout).toBeTruthy();
    const [requests, prompt, completion] = m!.slice(1).map((x) => Number(x.replaceAll(',', '')));
    // the test split of the bundled sample (the same build as a run's), every reply at max_new_tokens
    // the test split of the same dataset, built here on its own
    const built = mkdtempSync(path.join(tmpdir(), 'bsft-chat-dry-ds-'));
    expect((await bsft(['dataset', 'build', recipe(built, fake.url), '--allow', built, '--out', path.join(built, 'ds')])).code).toBe(0);
    expect(requests).toBe(JSON.parse(readFileSync(path.join(built, 'ds', 'manifest.json'), 'utf8')).documents.test.length);
    expect(completion).toBe(requests! * 64);
    expect(prompt).toBeGreaterThan(requests! * 50);
    const cost = (prompt! / 1e6) * 0.5 + (completion! / 1e6) * 2;
    expect(res.stdout).toContain(`at most $${cost.toFixed(2)}`);
    expect(res.stdout).toMatch(/judge: \d+ replies and \d+ gold replies/);
    expect(readdirSync(dir)).toEqual(['eval.yaml']);
  });

  it('--dry-run of a model loaded by the trainer\'s engines (no endpoint) plans its prediction in GPU hours', async () => {
    const dir = mkdtempSync(path.join(tmpdir(), 'bsft-untrained-dry-'));
    const file = path.join(dir, 'zero-shot.yaml');
    writeFileSync(file, `extends: ${path.join(ROOT, 'recipes', 'smoke.yaml')}\nname: zero-shot\ndata: { conditioning: none }\ntrain: { method: none }\n`);
    const res = await bsft(['run', file, '--allow', dir, '--dry-run']);
    expect(res.code, res.stderr).toBe(0);
    expect(res.stdout).toMatch(/^zero-shot-[0-9a-f]{8}\s+none\s+none\s+[\d,]+\s+0\s/m); // nothing trained
    expect(res.stdout).toMatch(/^zero-shot-[0-9a-f]{8}\s+1\s+61\s+[\d,]+\s+[\d,]+\s+-\s+\d+\.\d\d\s+-$/m); // predict GPU hours, not an endpoint
  });

  it('refuses what cannot work, naming the field', async () => {
    const dir = mkdtempSync(path.join(tmpdir(), 'bsft-chat-bad-'));
    const bad = await bsft(['validate', recipe(dir, fake.url), '--allow', dir, '--no-data', '--set', 'data.conditioning=token', '--set', 'eval.engine=openai']);
    expect(bad.code).toBe(2);
    expect(bad.stdout + bad.stderr).toMatch(/eval\.engine: train\.method none: engine openai sends a trained run's token IDs/);
    expect(bad.stdout + bad.stderr).toMatch(/data\.conditioning: train\.method none: a model as it ships knows no behavior tokens/);
    expect(bad.stdout + bad.stderr).toMatch(/eval\.reply_tag: a reply tag is asked for by the instruction/);
    const lr = await bsft(['validate', recipe(dir, fake.url), '--allow', dir, '--no-data', '--set', 'train.method=lora', '--set', 'train.lr=null']);
    expect(lr.stdout + lr.stderr).toMatch(/train\.lr: expected a number: the peak learning rate of lora fine-tuning/);
  });
});

describe('one report for trained runs and models evaluated as they ship', () => {
  /** A run folder whose predictions get the tasks `wrong` picks wrong (the next behavior). */
  function scoredRun(root: string, name: string, conditioning: 'token' | 'instruction', method: string, wrong: (i: number) => boolean): string {
    const tasks = sampleTasks(60);
    const dir = studyRun(root, name, conditioning, method, tasks, () => 'reply');
    writeFileSync(path.join(dir, 'predictions', 'test.jsonl'), tasks.map((t, i) => {
      const b = wrong(i) ? BEHAVIORS[(BEHAVIORS.indexOf(t.behavior) + 1) % 3]! : t.behavior;
      return JSON.stringify({ id: t.id, predicted_behavior: b, reply: 'reply' });
    }).join('\n'));
    return dir;
  }

  it('the leaderboard orders every row and the paper\'s by macro-F1 and says which were trained; report.html draws it (Chromium)', async () => {
    const root = mkdtempSync(path.join(tmpdir(), 'bsft-board-'));
    const base = scoredRun(root, 'qwen-base', 'instruction', 'none', (i) => i % 2 === 0);
    const tuned = scoredRun(root, 'behaviorsft', 'token', 'lora', (i) => i % 10 === 0);
    const other = scoredRun(root, 'other-model', 'instruction', 'none', (i) => i % 3 === 0);
    const out = path.join(root, 'rep');
    const res = await bsft(['report', base, other, tuned, '--leaderboard', '--out', out, '--bootstrap', '50']);
    expect(res.code, res.stderr).toBe(0);
    const board = res.stdout.slice(0, res.stdout.indexOf('\n\n')).split('\n').slice(2).map((l) => l.trim());
    expect(board.map((l) => l.split(/\s{2,}/).slice(0, 3))).toEqual([
      ['1', 'paper: BehaviorSFT, Qwen2.5-7B-Instruct (published) (NOT COMPARABLE)', 'yes (published)'], // runs on the bundled sample
      ['2', 'behaviorsft (token, lora)', 'yes (lora)'],
      ['3', 'other-model (instruction, not trained)', 'no (as shipped)'],
      ['4', 'qwen-base (instruction, not trained)', 'no (as shipped)'],
    ]);
    const md = readFileSync(path.join(out, 'report.md'), 'utf8');
    expect(md).toContain('## Leaderboard');
    if (!CHROMIUM) return;
    const { page, errors, close } = await openPage(pathToFileURL(path.join(out, 'report.html')).href);
    try {
      const bars = await page.$$eval('svg[data-chart="leaderboard"] .mark', (els) => els.map((e) => ({ kind: e.getAttribute('class')!.split(' ').at(-1), title: e.querySelector('title')!.textContent, y: Number(e.getAttribute('y')), w: Number(e.getAttribute('width')) })));
      expect(bars.map((b) => b.kind)).toEqual(['paper', 'trained', 'shipped', 'shipped']);
      expect(bars.every((b, i) => i === 0 || (b.y > bars[i - 1]!.y && b.w <= bars[i - 1]!.w))).toBe(true);
      expect(bars[1]!.title).toMatch(/^behaviorsft \(token, lora\): macro-F1 [\d.]+ \[[\d.]+, [\d.]+\]$/);
      expect(errors).toEqual([]);
    } finally {
      await close();
    }
  });
});

describe.skipIf(!torchPython())('a model as it ships, loaded by the trainer (train.method none, the bsft-toy model)', () => {
  it('bsft run predicts with the untrained model (no training, no final/), and a worker makes the same file', async () => {
    const py = torchPython()!;
    const dir = mkdtempSync(path.join(tmpdir(), 'bsft-untrained-'));
    const file = path.join(dir, 'zero-shot.yaml');
    writeFileSync(file, `extends: ${path.join(FIXTURES, 'recipes', 'toy-run.yaml')}\nname: toy-zero-shot\ndata: { conditioning: none }\ntrain: { method: none }\neval: { max_new_tokens: 3 }\n`);
    const args = [file, '--allow', dir, '--set', `store.path=${dir}/local`];
    const local = await bsft(['run', ...args], { env: { BSFT_PYTHON: py } });
    expect(local.code, local.stderr.slice(-2000)).toBe(0);
    const runId = /run (toy-zero-shot-[0-9a-f]{8}) ->/.exec(local.stdout)![1]!;
    const runDir = path.join(dir, 'local', runId);
    const steps = JSON.parse(readFileSync(path.join(runDir, 'run.json'), 'utf8')).steps.map((s: { step: string; state: string }) => `${s.step}:${s.state}`);
    expect(steps).toEqual(['build:done', 'train:skipped', 'predict:done', 'judge:skipped', 'score:done']);
    expect(existsSync(path.join(runDir, 'final'))).toBe(false);
    expect(local.stderr).not.toContain('"event":"step"');
    const rows = readFileSync(path.join(runDir, 'predictions', 'test.jsonl'), 'utf8').trim().split('\n').map((l) => JSON.parse(l));
    expect(rows.map((r) => r.id)).toEqual(JSON.parse(readFileSync(path.join(runDir, 'dataset', 'manifest.json'), 'utf8')).documents.test);
    expect(rows.every((r) => r.predicted_behavior === null && r.raw_token_ids.length >= 1)).toBe(true);

    const qenv = { ...queueEnv({ BSFT_ALLOW_PATHS: dir }), BSFT_PYTHON: py };
    const sub = await bsft(['submit', file, '--allow', dir, '--set', `store.path=${dir}/queued`], { env: qenv });
    expect(sub.stdout).toContain(`submitted run ${runId}`);
    const worker = startWorkerProc('', qenv);
    try {
      await worker.ready;
      expect((await waitForRun(qenv, runId, (v) => ['completed', 'failed'].includes(v.state), 120_000)).state).toBe('completed');
    } finally {
      await stop(worker, 'SIGKILL');
    }
    expect(readFileSync(path.join(dir, 'queued', runId, 'predictions', 'test.jsonl'), 'utf8')).toBe(readFileSync(path.join(runDir, 'predictions', 'test.jsonl'), 'utf8'));
  }, limit(300_000));
});
