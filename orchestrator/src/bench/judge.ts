/**
 * npm run bench:judge — the judge's own overhead, against a local OpenAI-compatible server that answers every chat
 * request after 20 ms (a stand-in for a fast inference server; no network):
 *   10,000 judgments (5,000 replies of a no-token run + their 5,000 gold replies) at max_concurrency 64, through the
 *   real path (bsft's judge step code: prompt, cache, pool, files), target < 10 s of wall time;
 *   beside the same work one request at a time (max_concurrency 1), in the same run.
 * BENCH_JUDGMENTS changes the count (even), BENCH_DELAY_MS the server's delay; BENCH_ONE_AT_A_TIME=0 skips the baseline.
 */
import { mkdirSync, mkdtempSync, writeFileSync } from 'node:fs';
import { spawn } from 'node:child_process';
import { tmpdir } from 'node:os';
import path from 'node:path';
import { pino } from 'pino';
import { OpenAIJudge } from '../judge/openai-judge.js';
import { runJudge } from '../judge/run-judge.js';
import type { ResolvedRecipe } from '../recipe/resolve.js';
import type { OpenAIJudgeSettings } from '../recipe/schema.js';

const JUDGMENTS = Number(process.env.BENCH_JUDGMENTS ?? 10_000);
const DELAY_MS = Number(process.env.BENCH_DELAY_MS ?? 20);
const BEHAVIORS = ['reactive', 'proactive', 'restraint'];


/**
 * The two routes a judge calls, each answer after DELAY_MS, in a child process of its own (as a real server is on
 * another machine: its CPU is not the orchestrator's). Prints its port, counts chat requests (GET /count).
 */
const SERVER = `
import { createServer } from 'node:http';
let n = 0;
const s = createServer((req, res) => {
  req.resume();
  req.on('end', () => {
    res.setHeader('content-type', 'application/json');
    if (req.url === '/count') return res.end(String(n));
    setTimeout(() => {
      if (req.url === '/v1/models') return res.end(JSON.stringify({ object: 'list', data: [{ id: 'judge', object: 'model', created: 0, owned_by: 'bench' }] }));
      n++;
      const label = ['reactive', 'proactive', 'restraint'][n % 3];
      res.end(JSON.stringify({ id: 'c' + n, object: 'chat.completion', created: 0, model: 'judge', choices: [{ index: 0, message: { role: 'assistant', content: '{"label": "' + label + '"}' }, finish_reason: 'stop' }], usage: { prompt_tokens: 200, completion_tokens: 6, total_tokens: 206 } }));
    }, ${DELAY_MS});
  });
});
s.keepAliveTimeout = 60000;
s.listen(0, '127.0.0.1', () => console.log(s.address().port));
`;

async function server(): Promise<{ url: string; close: () => void; count: () => Promise<number> }> {
  const child = spawn(process.execPath, ['--input-type=module', '-e', SERVER], { stdio: ['ignore', 'pipe', 'inherit'] });
  const port = await new Promise<string>((resolve, reject) => {
    child.stdout!.once('data', (d: Buffer) => resolve(d.toString().trim()));
    child.once('exit', (c) => reject(new Error(`bench server exited ${c}`)));
  });
  const root = `http://127.0.0.1:${port}`;
  return { url: `${root}/v1`, close: () => child.kill(), count: async () => Number(await (await fetch(`${root}/count`)).text()) };
}

/** A no-token run folder with JUDGMENTS / 2 test tasks and a reply for each. */
function runFolder(url: string, concurrency: number): { recipe: ResolvedRecipe; dir: string } {
  const dir = mkdtempSync(path.join(tmpdir(), 'bsft-bench-judge-'));
  mkdirSync(path.join(dir, 'dataset'));
  mkdirSync(path.join(dir, 'predictions'));
  const n = JUDGMENTS / 2;
  const docs: string[] = [];
  const preds: string[] = [];
  for (let i = 0; i < n; i++) {
    const b = BEHAVIORS[i % 3]!;
    docs.push(JSON.stringify({ id: `t${i}`, case_id: `c${Math.floor(i / 12)}`, category: `k${i % 13}`, behavior: b, messages: [
      { role: 'user', content: `Dr. Patel: Mrs. Chen, 74, INR ${(i % 50) / 10 + 1}, admitted after a fall; plan: continue warfarin, discharge tomorrow.` },
      { role: 'user', content: `Nurse Ali: Noted, bed ${i % 30} is ready.` },
      { role: 'assistant', content: `<|behavior:${b}|>Gold reply ${i}.` },
    ] }));
    preds.push(JSON.stringify({ id: `t${i}`, predicted_behavior: null, reply: `Model reply ${i}: hold warfarin tonight and recheck the INR.` }));
  }
  writeFileSync(path.join(dir, 'dataset', 'test.messages.jsonl'), `${docs.join('\n')}\n`);
  writeFileSync(path.join(dir, 'predictions', 'test.jsonl'), `${preds.join('\n')}\n`);
  const recipe = {
    run_id: 'bench-00000000',
    data: { conditioning: 'none', behaviors: Object.fromEntries(BEHAVIORS.map((b) => [b, { token: `<|behavior:${b}|>`, description: `the ${b} behavior` }])) },
    eval: { splits: ['test'] },
    judge: { kind: 'openai', base_url: url, model: 'judge', max_concurrency: concurrency, timeout_s: 60, max_retries: 2, prompt_version: 'v1', also_token_runs: false },
  } as unknown as ResolvedRecipe;
  return { recipe, dir };
}

async function timed(concurrency: number): Promise<{ seconds: number; requests: number }> {
  const s = await server();
  try {
    const { recipe, dir } = runFolder(s.url, concurrency);
    const t = performance.now();
    const summary = await runJudge(recipe, dir, pino({ level: 'silent' }), new OpenAIJudge(recipe.judge as OpenAIJudgeSettings, BEHAVIORS));
    const seconds = (performance.now() - t) / 1000;
    const seen = await s.count();
    if (summary.requested !== JUDGMENTS || seen !== JUDGMENTS) throw new Error(`expected ${JUDGMENTS} requests, made ${summary.requested} (server saw ${seen})`);
    return { seconds, requests: summary.requested };
  } finally {
    s.close();
  }
}

const pooled = await timed(64);
console.log(`judging ${JUDGMENTS.toLocaleString('en')} replies against a local server answering in ${DELAY_MS} ms (prompt, cache, files included)`);
console.log(`  max_concurrency 64      ${pooled.seconds.toFixed(2)} s  ${Math.round(pooled.requests / pooled.seconds).toLocaleString('en')} judgments/s   target < 10 s: ${pooled.seconds < 10 ? 'met' : 'NOT met'}`);
if (process.env.BENCH_ONE_AT_A_TIME === '0') process.exit(0); // profiling the pooled path alone
const one = await timed(1);
console.log(`  one request at a time   ${one.seconds.toFixed(2)} s  ${Math.round(one.requests / one.seconds).toLocaleString('en')} judgments/s   (the same work)`);
console.log(`  speed-up                ${(one.seconds / pooled.seconds).toFixed(1)}x   (bound: ${DELAY_MS} ms x ${JUDGMENTS.toLocaleString('en')} = ${((DELAY_MS * JUDGMENTS) / 1000).toFixed(0)} s one at a time, ${((DELAY_MS * JUDGMENTS) / 64 / 1000).toFixed(1)} s at 64)`);
