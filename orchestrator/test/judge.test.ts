import { existsSync, mkdirSync, mkdtempSync, readdirSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import path from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { judgeMessages, parseLabel } from '../src/judge/prompt.js';
import { agreement } from '../src/score/agreement.js';
import { bsft, ROOT } from './helpers/cli.js';
import { FakeOpenAI, replyOf } from './helpers/fake-openai.js';
import { pythonWith } from './helpers/python.js';
import { limit } from './helpers/time-scale.js';

const B = ['reactive', 'proactive', 'restraint'];
const BEHAVIORS = Object.fromEntries(B.map((b) => [b, { token: `<|behavior:${b}|>`, description: `the ${b} behavior` }]));
const KEY = 'sk-judge-SECRET-0123456789abcdef';

/**
 * A run folder of a no-token run with 30 test tasks (10 cases of 3) and a forced-proactive file: replies read
 * "<behavior> reply <id>" so that the fake judge can answer from the reply text alone.
 */
function noTokenRun(root: string, judge: Record<string, unknown>): string {
  const runDir = path.join(root, 'runs', 'none-0123abcd');
  rmSync(runDir, { recursive: true, force: true });
  mkdirSync(path.join(runDir, 'dataset'), { recursive: true });
  mkdirSync(path.join(runDir, 'predictions'), { recursive: true });
  writeFileSync(path.join(runDir, 'recipe.json'), JSON.stringify({
    name: 'none', run_id: 'none-0123abcd', model: { name_or_path: 'tiny' },
    data: { behaviors: BEHAVIORS, categories: {}, conditioning: 'none' },
    eval: { splits: ['test'], bootstrap: 200 }, train: { method: 'lora', seed: 1, lr: 1e-4, schedule: 'cosine', max_steps: 3 }, judge,
  }));
  const tasks = Array.from({ length: 30 }, (_, i) => ({ id: `t${i}`, case_id: `c${Math.floor(i / 3)}`, category: `k${i % 3}`, behavior: B[i % 3]!, hard: false }));
  writeFileSync(path.join(runDir, 'dataset', 'test.messages.jsonl'), tasks.map((t) => JSON.stringify({
    ...t, messages: [{ role: 'user', content: `Dr. Lee: case ${t.id}` }, { role: 'assistant', content: `<|behavior:${t.behavior}|>${t.behavior} reply gold ${t.id}` }],
  })).join('\n'));
  // The model's replies: right for 2 of every 3 tasks (the third says "reactive").
  writeFileSync(path.join(runDir, 'predictions', 'test.jsonl'), tasks.map((t, i) => JSON.stringify({
    id: t.id, predicted_behavior: null, reply: `${i % 3 === 2 ? 'reactive' : t.behavior} reply ${t.id}`,
  })).join('\n'));
  writeFileSync(path.join(runDir, 'predictions', 'test.forced-proactive.jsonl'), tasks.map((t, i) => JSON.stringify({
    id: t.id, predicted_behavior: 'proactive', forced: true, reply: `${i < 24 ? 'proactive' : 'restraint'} reply ${t.id}`,
  })).join('\n'));
  return runDir;
}

/** The fake judge's rule: the first word of the reply is its behavior. */
const byFirstWord = (user: string, constrained: boolean) => {
  const label = replyOf(user).split(' ')[0]!;
  return constrained ? JSON.stringify({ label }) : `label: ${label}`;
};

/**
 * A trained no-token smoke run's folder (the first end-to-end judge test's), for the other judge of the next test:
 * the judge is a per-run setting, so the same command with another judge reuses build, train and predict.
 */
let trainedRuns: string | undefined;

/**
 * `bsft run recipes/smoke.yaml` into `runs` without tokens, 3 steps, with `judge`: all five steps done (or, in a
 * folder where that run was trained with another judge, build, train and predict skipped); the run folder and its
 * test score.
 */
async function judgedSmokeRun(runs: string, judge: string, env: Record<string, string>, trained = false) {
  const res = await bsft(['run', 'recipes/smoke.yaml', '--allow', runs, '--set', `store.path=${runs}`, '--set', 'data.conditioning=none',
    '--set', 'train.max_steps=3', '--set', 'eval.bootstrap=50', '--set', `judge=${judge}`], { env });
  expect(res.code, res.stderr.slice(-3000)).toBe(0);
  const runDir = path.join(runs, readdirSync(runs).find((d) => d.startsWith('smoke-'))!);
  const steps = JSON.parse(readFileSync(path.join(runDir, 'run.json'), 'utf8')).steps.map((s: { step: string; state: string }) => `${s.step}:${s.state}`);
  expect(steps).toEqual([...(trained ? ['build:skipped', 'train:skipped', 'predict:skipped'] : ['build:done', 'train:done', 'predict:done']), 'judge:done', 'score:done']);
  return { res, runDir, score: JSON.parse(readFileSync(path.join(runDir, 'score', 'test.json'), 'utf8')) };
}

describe('judge prompt and answers', () => {
  it('builds the prompt from the recipe\'s behaviors, the context with speaker names, and the reply without tokens', () => {
    const m = judgeMessages({ data: { behaviors: BEHAVIORS } } as never, [{ role: 'user', content: 'Dr. Lee: INR 4.8' }], '<|behavior:proactive|>Hold warfarin.');
    expect(m[0]!.content).toContain('- proactive: the proactive behavior');
    expect(m[0]!.content).toContain('label: <reactive|proactive|restraint>');
    expect(m[1]!.content).toContain('[user] Dr. Lee: INR 4.8');
    expect(m[1]!.content).toContain('Reply to grade:\nHold warfarin.');
    expect(m[1]!.content).not.toContain('<|behavior');
    // v2: the last message set apart, and the decision procedure; the same answer line and reply section.
    const v2 = judgeMessages({ data: { behaviors: BEHAVIORS } } as never,
      [{ role: 'user', content: 'Dr. Lee: INR 4.8' }, { role: 'user', content: 'Nurse Kim: Continue warfarin?' }], '<|behavior:proactive|>Hold warfarin.', 'v2');
    expect(v2[0]!.content).toContain('1. What does the last message before the reply ask of the assistant');
    expect(v2[0]!.content).toContain('label: <reactive|proactive|restraint>');
    expect(v2[1]!.content).toBe('Conversation so far:\n[user] Dr. Lee: INR 4.8\n\nLast message before the reply:\n[user] Nurse Kim: Continue warfarin?\n\nReply to grade:\nHold warfarin.\n\nWhich behavior is the reply?');
  });

  it('parses a strict label line or a JSON label; anything else names no behavior', () => {
    expect(parseLabel('label: proactive', B)).toBe('proactive');
    expect(parseLabel('Label: `Restraint`.', B)).toBe('restraint');
    expect(parseLabel('{"label": "reactive"}', B)).toBe('reactive');
    expect(parseLabel('I think proactive', B)).toBeUndefined();
    expect(parseLabel('label: bold', B)).toBeUndefined();
    expect(parseLabel('label: reactive\nlabel: proactive', B)).toBeUndefined();
  });

  it('Cohen\'s kappa: 1 for perfect agreement, 0 at chance, hand-computed case', () => {
    const pairs = (a: string[], b: string[]) => a.map((x, i) => ({ a: x, b: b[i]!, case_id: `c${i}` }));
    expect(agreement(pairs(['reactive', 'proactive'], ['reactive', 'proactive']), B, 0, 1).kappa.value).toBe(1);
    // a: R R P P, b: R P R P -> po 0.5, pe 0.5 -> kappa 0
    expect(agreement(pairs(['reactive', 'reactive', 'proactive', 'proactive'], ['reactive', 'proactive', 'reactive', 'proactive']), B, 0, 1).kappa.value).toBeCloseTo(0, 12);
    // a: R R R P, b: R R P P -> po 0.75, pe = 0.75*0.5 + 0.25*0.5 = 0.5 -> kappa 0.5
    const k = agreement(pairs(['reactive', 'reactive', 'reactive', 'proactive'], ['reactive', 'reactive', 'proactive', 'proactive']), B, 200, 1);
    expect(k.kappa.value).toBeCloseTo(0.5, 12);
    expect(k.accuracy.value).toBe(0.75);
    expect(k.kappa.ci![0]).toBeLessThanOrEqual(0.5);
  });
});

describe('bsft judge against an OpenAI-compatible endpoint (local server)', () => {
  const server = new FakeOpenAI();
  const root = mkdtempSync(path.join(tmpdir(), 'bsft-judge-'));
  const judge = (extra: Record<string, unknown> = {}) => ({ kind: 'openai', base_url: server.url, model: 'judge-model', max_concurrency: 8, timeout_s: 5, max_retries: 2, prompt_version: 'v1', also_token_runs: false, ...extra });
  const env = { BSFT_JUDGE_API_KEY: KEY, BSFT_LOG_LEVEL: 'info' };
  beforeAll(async () => {
    await server.start();
    server.key = KEY;
  });
  afterAll(() => server.stop());

  it('labels the no-token, forced and gold replies; score uses the judged labels and prints the judge\'s validity; a re-run asks nothing', async () => {
    server.answer = byFirstWord;
    const runDir = noTokenRun(root, judge());
    const res = await bsft(['judge', runDir], { env });
    expect(res.code, res.stderr).toBe(0);
    // 30 chosen + 30 forced + 30 gold replies; 8 forced replies are word for word the chosen ones (same task, same
    // reply): the cache answers those.
    expect(server.chatRequests()).toHaveLength(82);
    expect(JSON.parse(readFileSync(path.join(runDir, 'judge', 'summary.json'), 'utf8'))).toMatchObject({ requested: 82, cached: 8 });
    expect(server.chatRequests().every((r) => r.body!.response_format)).toBe(true); // a constrained answer was asked for
    const chosen = readFileSync(path.join(runDir, 'judge', 'test.jsonl'), 'utf8').trim().split('\n').map((l) => JSON.parse(l));
    expect(chosen[0]).toMatchObject({ id: 't0', judged_behavior: 'reactive', status: 'ok', prompt_version: 'v1' });
    expect(res.stderr).not.toContain(KEY);

    const scored = await bsft(['score', runDir, '--json'], { env });
    const report = JSON.parse(scored.stdout);
    expect(report.label_source).toEqual({ token: 0, judge: 30, none: 0 });
    expect(report.overall.accuracy.value).toBeCloseTo(20 / 30, 12); // the replies were right for 2 of every 3
    expect(report.judge.validity).toMatchObject({ n: 30, accuracy: { value: 1 }, kappa: { value: 1 }, unparseable: 0 });
    expect(report.forced.proactive).toMatchObject({ n: 30, judged: 30, steering_accuracy: 24 / 30 });
    const text = await bsft(['score', runDir], { env });
    expect(text.stdout).toContain('labels: 0 from the first token, 30 from the judge, 0 without one');
    expect(text.stdout).toMatch(/judge judge-model \(prompt v1\) on the 30 gold replies: accuracy 100\.0 \[100\.0, 100\.0\], Cohen's kappa 1\.00/);

    // The cache: the same labels, no request.
    const before = server.requests.length;
    rmSync(path.join(runDir, 'judge', 'settings.json'));
    const again = await bsft(['judge', runDir], { env });
    expect(again.code, again.stderr).toBe(0);
    expect(server.requests.length).toBe(before);
    expect(JSON.parse(readFileSync(path.join(runDir, 'judge', 'summary.json'), 'utf8'))).toMatchObject({ requested: 0, cached: 90 });
    expect((await bsft(['judge', runDir], { env })).stdout).toMatch(/already judged/);

    // Another prompt version asks every reply again (the cache keys on it), and the labels record it.
    const recipeFile = path.join(runDir, 'recipe.json');
    const v1Recipe = readFileSync(recipeFile, 'utf8');
    writeFileSync(recipeFile, JSON.stringify({ ...JSON.parse(v1Recipe), judge: judge({ prompt_version: 'v2' }) }));
    const v2 = await bsft(['judge', runDir], { env });
    expect(v2.code, v2.stderr).toBe(0);
    expect(server.requests.length - before).toBe(82 + 1); // + the endpoint's model list
    expect(JSON.parse(readFileSync(path.join(runDir, 'judge', 'summary.json'), 'utf8'))).toMatchObject({ prompt_version: 'v2', requested: 82, cached: 8 });
    expect(server.chatRequests().at(-1)!.body!.messages[1].content).toContain('Last message before the reply:');
    expect(readFileSync(path.join(runDir, 'judge', 'test.jsonl'), 'utf8')).toContain('"prompt_version":"v2"');
    writeFileSync(recipeFile, v1Recipe);
    expect((await bsft(['judge', runDir], { env })).code).toBe(0); // back to v1: its labels are still in the cache
    expect(JSON.parse(readFileSync(path.join(runDir, 'judge', 'summary.json'), 'utf8'))).toMatchObject({ prompt_version: 'v1', requested: 0, cached: 90 });

    // A token run beside it in one report: both on the same behavior scale, with where their labels come from.
    const tokenRun = path.join(root, 'runs', 'token-0123abcd');
    rmSync(tokenRun, { recursive: true, force: true });
    mkdirSync(path.join(tokenRun, 'predictions'), { recursive: true });
    mkdirSync(path.join(tokenRun, 'dataset'));
    const recipe = JSON.parse(readFileSync(path.join(runDir, 'recipe.json'), 'utf8'));
    writeFileSync(path.join(tokenRun, 'recipe.json'), JSON.stringify({ ...recipe, name: 'token', run_id: 'token-0123abcd', data: { ...recipe.data, conditioning: 'token' }, judge: undefined }));
    writeFileSync(path.join(tokenRun, 'dataset', 'test.messages.jsonl'), readFileSync(path.join(runDir, 'dataset', 'test.messages.jsonl')));
    writeFileSync(path.join(tokenRun, 'predictions', 'test.jsonl'), Array.from({ length: 30 }, (_, i) => JSON.stringify({ id: `t${i}`, predicted_behavior: B[i % 3] })).join('\n'));
    const rep = await bsft(['report', tokenRun, runDir, '--out', path.join(root, 'report'), '--bootstrap', '100'], { env });
    expect(rep.code, rep.stderr).toBe(0);
    expect(rep.stdout).toMatch(/token \(token, lora\) +100\.0 /);
    expect(rep.stdout).toMatch(/none \(none, lora\) +\d+\.\d /);
    expect(rep.stdout).toMatch(/token \(token, lora\) +30 \/ 0 \/ 0 +- /);
    expect(rep.stdout).toMatch(/none \(none, lora\) +0 \/ 30 \/ 0 +judge-model \(v1\) +100\.0 \[100\.0, 100\.0\] +1\.00/);
    expect(readFileSync(path.join(root, 'report', 'report.html'), 'utf8')).toContain('<h2>Labels and the judge</h2>');
  });

  it('judges a loose predictions file against a dataset split, writes <file>.judged.jsonl and prints the score', async () => {
    server.answer = byFirstWord;
    const runDir = noTokenRun(root, judge());
    const loose = path.join(root, 'loose.jsonl');
    writeFileSync(loose, readFileSync(path.join(runDir, 'predictions', 'test.jsonl')));
    const noTasks = await bsft(['judge', loose, '--set', 'kind=openai'], { env });
    expect(noTasks.code).toBe(2);
    expect(noTasks.stderr).toContain('needs --tasks');
    const res = await bsft(['judge', loose, '--tasks', path.join(runDir, 'dataset', 'test.messages.jsonl'),
      '--set', 'kind=openai', '--set', `base_url=${server.url}`, '--set', 'model=judge-model'], { env });
    expect(res.code, res.stderr).toBe(0);
    const judged = readFileSync(path.join(root, 'loose.judged.jsonl'), 'utf8').trim().split('\n').map((l) => JSON.parse(l));
    expect(judged[2]).toMatchObject({ id: 't2', predicted_behavior: null, judged_behavior: 'reactive' });
    expect(res.stdout).toMatch(/loose\.jsonl — split test: 30 tasks[\s\S]*accuracy 66\.7[\s\S]*labels: 0 from the first token, 30 from the judge/);
    expect(res.stdout).toMatch(/judge judge-model \(prompt v1\) on the 30 gold replies: accuracy 100\.0/);

    // Other conversations and gold replies under the same ids: judged again, not answered from the first file's labels.
    const other = path.join(root, 'other.messages.jsonl');
    writeFileSync(other, readFileSync(path.join(runDir, 'dataset', 'test.messages.jsonl'), 'utf8').trim().split('\n').map((l) => {
      const d = JSON.parse(l);
      const b = B[(B.indexOf(d.behavior) + 1) % 3]!;
      return JSON.stringify({ ...d, behavior: b, messages: [{ role: 'user', content: `Dr. Kim: another case ${d.id}` }, { role: 'assistant', content: `<|behavior:${b}|>${b} other gold ${d.id}` }] });
    }).join('\n'));
    const asked = server.chatRequests().length;
    const again = await bsft(['judge', loose, '--tasks', other, '--set', 'kind=openai', '--set', `base_url=${server.url}`, '--set', 'model=judge-model'], { env });
    expect(again.code, again.stderr).toBe(0);
    expect(server.chatRequests().length - asked).toBe(60); // the 30 replies under new conversations and the 30 new gold replies
    expect(again.stdout).toMatch(/on the 30 gold replies: accuracy 100\.0/); // the new gold replies' own labels
    expect(again.stdout).toMatch(/accuracy 33\.3/); // scored against the new gold behaviors
  });

  it('malformed answers (not JSON, no choices) are counted as unparseable, never crash the run; also_token_runs gives token-vs-judge agreement', async () => {
    // Replies of t7 always get a body that is not JSON, of t8 a JSON body without choices.
    server.answer = (user, c) => {
      if (replyOf(user).endsWith(' t7')) return { status: 200, body: '<html>upstream hiccup</html>' };
      if (replyOf(user).endsWith(' t8')) return { status: 200, body: '{}' };
      return byFirstWord(user, c);
    };
    const runDir = noTokenRun(root, judge({ also_token_runs: true, max_concurrency: 1 }));
    // A token run's file: the model's own token labels, with replies the judge reads.
    const recipe = JSON.parse(readFileSync(path.join(runDir, 'recipe.json'), 'utf8'));
    writeFileSync(path.join(runDir, 'recipe.json'), JSON.stringify({ ...recipe, data: { ...recipe.data, conditioning: 'token' } }));
    const rows = readFileSync(path.join(runDir, 'predictions', 'test.jsonl'), 'utf8').trim().split('\n').map((l) => JSON.parse(l));
    writeFileSync(path.join(runDir, 'predictions', 'test.jsonl'), rows.map((r, k) => JSON.stringify({ ...r, predicted_behavior: B[k % 3] })).join('\n'));
    const res = await bsft(['judge', runDir], { env });
    expect(res.code, res.stderr).toBe(0);
    const summary = JSON.parse(readFileSync(path.join(runDir, 'judge', 'summary.json'), 'utf8'));
    const unparseable = Object.values(summary.files as Record<string, { unparseable: number }>).reduce((n, f) => n + f.unparseable, 0);
    expect(unparseable).toBe(2 * 3); // t7 and t8 in each of the three files (chosen, forced, gold), each asked twice
    const chosen = readFileSync(path.join(runDir, 'judge', 'test.jsonl'), 'utf8').trim().split('\n').map((l) => JSON.parse(l));
    expect(chosen.filter((r) => r.status === 'unparseable').map((r) => [r.id, r.judged_behavior])).toEqual([['t7', null], ['t8', null]]);
    const report = JSON.parse((await bsft(['score', runDir, '--json'], { env })).stdout);
    expect(report.label_source).toEqual({ token: 30, judge: 0, none: 0 });
    expect(report.judge.agreement.n).toBe(30);
    expect(report.judge.validity.unparseable).toBe(2);
    expect(report.judge.agreement.accuracy.value).toBeGreaterThan(0.5); // the token agrees with the reply's first word for 2 of 3
    expect(report.judge.agreement.kappa.ci).toHaveLength(2);
  });

  it('an interrupted judge resumes where it stopped', async () => {
    server.answer = byFirstWord;
    const runDir = noTokenRun(root, judge({ max_concurrency: 1 }));
    mkdirSync(path.join(runDir, 'judge'));
    // What a judge killed after 10 answers leaves: 10 cache lines and a torn eleventh.
    const first = await bsft(['judge', runDir], { env });
    expect(first.code).toBe(0);
    const lines = readFileSync(path.join(runDir, 'judge', 'cache.jsonl'), 'utf8').split('\n');
    rmSync(path.join(runDir, 'judge'), { recursive: true });
    mkdirSync(path.join(runDir, 'judge'));
    writeFileSync(path.join(runDir, 'judge', 'cache.jsonl'), `${lines.slice(0, 10).join('\n')}\n${lines[10]!.slice(0, 20)}`);
    const before = server.chatRequests().length;
    const res = await bsft(['judge', runDir], { env });
    expect(res.code, res.stderr).toBe(0);
    expect(server.chatRequests().length - before).toBe(82 - 10);
  });

  it('asks in plain text when the server refuses response formats; an answer outside the labels is asked again, then counted unparseable', async () => {
    server.rejectResponseFormat = true;
    let n = 0;
    server.answer = (user) => (replyOf(user).startsWith('restraint') && ++n ? 'I would say it holds back.' : byFirstWord(user, false));
    try {
      const runDir = noTokenRun(root, judge());
      const res = await bsft(['judge', runDir], { env });
      expect(res.code, res.stderr).toBe(0);
      const gold = readFileSync(path.join(runDir, 'judge', 'test.gold.jsonl'), 'utf8').trim().split('\n').map((l) => JSON.parse(l));
      const bad = gold.filter((r) => r.status === 'unparseable');
      expect(bad).toHaveLength(10);
      expect(bad[0]).toMatchObject({ judged_behavior: null, raw: 'I would say it holds back.' });
      expect(n).toBe(2 * (10 + 6)); // each asked twice: 10 gold, 6 forced replies read "restraint"
      const report = JSON.parse((await bsft(['score', runDir, '--json'], { env })).stdout);
      expect(report.judge.validity.unparseable).toBe(10);
      expect(report.judge.validity.accuracy.value).toBeCloseTo(20 / 30, 12);
    } finally {
      server.rejectResponseFormat = false;
    }
  });

  it('faults: a refused key and a missing model stop at once; 429 and 503 are retried, then fail naming the endpoint; an unreachable endpoint too', async () => {
    server.answer = byFirstWord;
    const runDir = noTokenRun(root, judge());
    const badKey = await bsft(['judge', runDir], { env: { ...env, BSFT_JUDGE_API_KEY: 'sk-wrong-key-zzz' } });
    expect(badKey.code).toBe(2);
    expect(badKey.stderr).toMatch(/judge endpoint http:\/\/127\.0\.0\.1:\d+\/v1 refused the key \(401\).*BSFT_JUDGE_API_KEY/);
    expect(badKey.stderr).not.toContain('sk-wrong-key-zzz');

    const before = server.chatRequests().length;
    const noSplit = await bsft(['judge', runDir, '--split', 'val'], { env });
    expect(noSplit.code).toBe(2);
    expect(noSplit.stderr).toContain('--split val: run none-0123abcd has no dataset split "val"');

    const noModel = await bsft(['judge', runDir, '--set', 'model=no-such-model', '--split', 'test'], { env });
    expect(noModel.code).toBe(2);
    expect(noModel.stderr).toMatch(/does not serve model "no-such-model" \(it serves: judge-model\)/);
    expect(server.chatRequests().length).toBe(before); // before any work

    // Two 429s (with retry-after), then answers: the run goes through.
    let busy = 2;
    server.answer = (user, c) => (busy-- > 0 ? { status: 429, headers: { 'retry-after-ms': '20' } } : byFirstWord(user, c));
    const retried = await bsft(['judge', noTokenRun(root, judge())], { env });
    expect(retried.code, retried.stderr).toBe(0);

    // 503 every time: retried max_retries times, then a retryable failure (exit 1) naming the endpoint.
    server.answer = () => ({ status: 503, headers: { 'retry-after-ms': '10' } });
    const down = await bsft(['judge', noTokenRun(root, judge())], { env });
    expect(down.code).toBe(1);
    expect(down.stderr).toMatch(/judge endpoint http:\/\/127\.0\.0\.1:\d+\/v1 answered 503 while judging a reply, after 2 retries/);
    expect(down.stderr).not.toContain(KEY);
    expect(existsSync(path.join(root, 'runs', 'none-0123abcd', 'judge', 'test.jsonl'))).toBe(false); // nothing partial as final

    // A redirect is the endpoint's address to fix, not a failure that may pass: never followed (the key stays with
    // the address the recipe names), never retried, said with where it points.
    const redirects = server.chatRequests().length;
    server.answer = () => ({ status: 307, headers: { location: 'https://elsewhere.example/v1/chat/completions' } });
    const moved = await bsft(['judge', noTokenRun(root, judge())], { env });
    expect(moved.code).toBe(2);
    expect(moved.stderr).toMatch(/judge endpoint http:\/\/127\.0\.0\.1:\d+\/v1 answered 307 \(a redirect to https:\/\/elsewhere\.example\/v1\/chat\/completions\) while judging a reply: set base_url to the address it points to/);
    expect(moved.stderr).not.toMatch(/retries/);
    expect(server.chatRequests().length - redirects).toBeLessThanOrEqual(8); // one per request in flight, none asked again

    // A request slower than timeout_s: a timeout, retried, then the same retryable failure.
    server.answer = byFirstWord;
    server.delayMs = 1500;
    const slow = await bsft(['judge', noTokenRun(root, judge({ timeout_s: 0.5, max_retries: 1 }))], { env });
    server.delayMs = 0;
    expect(slow.code).toBe(1);
    expect(slow.stderr).toMatch(/judge endpoint http:\/\/127\.0\.0\.1:\d+\/v1 unreachable while (listing its models|judging a reply) after 1 retries \(timed out\)/);

    const gone = await bsft(['judge', noTokenRun(root, judge({ base_url: 'http://127.0.0.1:9/v1', max_retries: 1 }))], { env });
    expect(gone.code).toBe(1);
    expect(gone.stderr).toMatch(/judge endpoint http:\/\/127\.0\.0\.1:9\/v1 unreachable/);
  });
});

const pyHF = pythonWith(['torch', 'transformers', 'peft']);

describe.skipIf(!pyHF)('bsft run with a judge (real trainer, tiny Qwen2 model, CPU)', () => {
  const server = new FakeOpenAI();
  beforeAll(() => server.start());
  afterAll(() => server.stop());

  it('a conditioning: none run ends with a macro-F1 from judged labels and the judge\'s validity in its score', async () => {
    const runs = mkdtempSync(path.join(tmpdir(), 'bsft-judge-run-'));
    // The fake judge knows each test task's behavior from its conversation (read from the run's own dataset).
    let known: Map<string, string> | undefined;
    server.answer = (user, constrained) => {
      known ??= new Map(readdirSync(runs).flatMap((id) => {
        const file = path.join(runs, id, 'dataset', 'test.messages.jsonl');
        return existsSync(file) ? readFileSync(file, 'utf8').trim().split('\n').map((l) => JSON.parse(l)).map((d) => [d.messages.slice(0, -1).map((m: { content: string }) => m.content).join('\n'), d.behavior] as [string, string]) : [];
      }));
      const conversation = /Conversation:\n([\s\S]*?)\n\nReply to grade:/.exec(user)![1]!.split('\n').map((l) => l.replace(/^\[\w+\] /, '')).join('\n');
      const label = known.get(conversation) ?? 'reactive';
      return constrained ? JSON.stringify({ label }) : `label: ${label}`;
    };
    const { res, score } = await judgedSmokeRun(runs, `{kind: openai, base_url: "${server.url}", model: judge-model, max_concurrency: 8}`, { BSFT_PYTHON: pyHF!, BSFT_LOG_LEVEL: 'info' });
    expect(score.label_source).toEqual({ token: 0, judge: score.n_tasks, none: 0 });
    expect(score.overall.macro_f1.value).toBe(1); // this judge answers from the conversation: every label right
    expect(score.judge).toMatchObject({ model: 'judge-model', prompt_version: 'v1', validity: { n: score.n_tasks, kappa: { value: 1 } } });
    expect(res.stdout).toMatch(/judge judge-model \(prompt v1\) on the \d+ gold replies/);
    trainedRuns = runs;
  }, limit(300_000));
});

describe.skipIf(!pyHF)('a local model as the judge (kind: model; trainer judge command, tiny random Qwen2 model)', () => {
  it("bsft run with recipes/models' tiny model as the judge: the judge step through the trainer, then score", async () => {
    // Paths relative to the recipe, as the model's: a config without weights is a seeded random model (a test judge).
    // The run the test before trained (with an endpoint as its judge), judged again by the model; alone, a new run.
    const { runDir, score } = await judgedSmokeRun(trainedRuns ?? mkdtempSync(path.join(tmpdir(), 'bsft-judge-tiny-')), '{kind: model, model: ./models/qwen2.5-tiny, tokenizer: ./models/qwen2.5-tokenizer, dtype: float32, batch_size: 16}',
      { BSFT_PYTHON: pyHF!, BSFT_LOG_LEVEL: 'info' }, trainedRuns !== undefined);
    expect(score.label_source).toEqual({ token: 0, judge: score.n_tasks, none: 0 });
    expect(score.judge).toMatchObject({ model: path.join(ROOT, 'recipes', 'models', 'qwen2.5-tiny'), prompt_version: 'v1', validity: { n: score.n_tasks } });
    expect(readFileSync(path.join(runDir, 'recipe.json'), 'utf8')).toContain(path.join(ROOT, 'recipes', 'models', 'qwen2.5-tokenizer'));
    // A judge folder that does not exist is the recipe's problem, named with its path.
    const missing = await bsft(['validate', 'recipes/smoke.yaml', '--no-data', '--set', 'judge={kind: model, model: ./models/nope}']);
    expect(missing.code).toBe(2);
    expect(missing.stderr + missing.stdout).toMatch(/judge\.model: no config\.json in .*models\/nope/);
  }, limit(300_000));

  it('labels every reply through the trainer, deterministically; scoring and the cache work as with an endpoint', async () => {
    const root = mkdtempSync(path.join(tmpdir(), 'bsft-judge-model-'));
    // The tiny model's folder holds a config and no weights: a seeded random model, the same at every load.
    const models = path.join(ROOT, 'recipes', 'models');
    const env = { BSFT_PYTHON: pyHF!, BSFT_LOG_LEVEL: 'info' };
    const runDir = noTokenRun(root, { kind: 'model', model: path.join(models, 'qwen2.5-tiny'), tokenizer: path.join(models, 'qwen2.5-tokenizer'),
      dtype: 'float32', batch_size: 8, prompt_version: 'v1', also_token_runs: false });
    const res = await bsft(['judge', runDir], { env });
    expect(res.code, res.stderr.slice(-2000)).toBe(0);
    expect(res.stderr).toMatch(/"event":"progress","done":\d+,"total":82/); // the trainer's events, each distinct reply once
    const rows = readFileSync(path.join(runDir, 'judge', 'test.jsonl'), 'utf8').trim().split('\n').map((l) => JSON.parse(l));
    expect(rows).toHaveLength(30);
    expect(rows.every((r) => B.includes(r.judged_behavior) && r.status === 'ok' && r.raw === `label: ${r.judged_behavior}`)).toBe(true);
    expect(readdirSync(path.join(runDir, 'judge')).sort()).toEqual(['cache.jsonl', 'settings.json', 'summary.json', 'test.forced-proactive.jsonl', 'test.gold.jsonl', 'test.jsonl']);
    const report = JSON.parse((await bsft(['score', runDir, '--json'], { env })).stdout);
    expect(report.label_source).toEqual({ token: 0, judge: 30, none: 0 });
    expect(report.judge.validity.n).toBe(30);

    // The same model and replies give the same labels: judged again from scratch, the files are identical.
    const first = readFileSync(path.join(runDir, 'judge', 'test.gold.jsonl'), 'utf8');
    rmSync(path.join(runDir, 'judge'), { recursive: true });
    expect((await bsft(['judge', runDir], { env })).code).toBe(0);
    expect(readFileSync(path.join(runDir, 'judge', 'test.gold.jsonl'), 'utf8')).toBe(first);
  }, limit(300_000));
});
