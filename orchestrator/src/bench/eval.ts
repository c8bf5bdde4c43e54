/**
 * npm run bench:eval — a model evaluated through its chat endpoint (train.method none, eval.engine openai-chat) at
 * the paper's scale: 14,000 test prompts (conversations of about 2,000 tokens) against a local server that answers
 * each request after 300–800 ms (uniform), at concurrency 32 and 128. For each: requests/s beside the ideal
 * (concurrency / mean latency), the peak RSS of this process; and the same at 3,500 prompts, to show memory flat in
 * the number of tasks. Each measurement runs in a process of its own (its peak RSS is its own: VmHWM), and says
 * what its heap holds once the run is over (after a full collection).
 */
import { execFile } from 'node:child_process';
import { promisify } from 'node:util';
import { appendFileSync, mkdirSync, mkdtempSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { createServer, type IncomingMessage, type ServerResponse } from 'node:http';
import { tmpdir } from 'node:os';
import path from 'node:path';
import { fileURLToPath } from 'node:url';
import { createLogger } from '../log.js';
import { predictViaChat } from '../predict/chat-predict.js';
import type { ResolvedRecipe } from '../recipe/resolve.js';
import { Rng } from '../util/rng.js';

const LATENCY = [300, 800];
const rng = new Rng(5);
const words = 'potassium lisinopril creatinine hold recheck the team dose plan ECG urine sodium continue review allergy'.split(' ');
const text = (n: number) => Array.from({ length: n }, () => words[Math.floor(rng.next() * words.length)]).join(' ');

async function server(): Promise<{ url: string; close: () => Promise<void> }> {
  const s = createServer((req: IncomingMessage, res: ServerResponse) => {
    const chunks: Buffer[] = [];
    req.on('data', (c: Buffer) => chunks.push(c));
    req.on('end', () => {
      const send = (body: unknown) => {
        res.writeHead(200, { 'content-type': 'application/json' });
        res.end(JSON.stringify(body));
      };
      if (req.url === '/v1/models') return send({ object: 'list', data: [{ id: 'served', object: 'model', created: 0, owned_by: 'bench' }] });
      const wait = LATENCY[0]! + Math.random() * (LATENCY[1]! - LATENCY[0]!);
      setTimeout(() => send({
        id: 'x', object: 'chat.completion', created: 0, model: 'served',
        choices: [{ index: 0, message: { role: 'assistant', content: '[proactive] Hold the lisinopril and recheck potassium before the next dose.' }, finish_reason: 'stop' }],
        usage: { prompt_tokens: 2000, completion_tokens: 16, total_tokens: 2016 },
      }), wait);
    });
  });
  s.maxConnections = 4096;
  await new Promise<void>((r) => s.listen(0, '127.0.0.1', r));
  return { url: `http://127.0.0.1:${(s.address() as { port: number }).port}/v1`, close: () => new Promise((r) => { s.closeAllConnections(); s.close(() => r()); }) };
}

/** A run folder whose test split has `n` tasks of three speakers' turns (about 2,000 tokens each). */
function runDir(root: string, n: number): string {
  const dir = path.join(root, `run-${n}`);
  mkdirSync(path.join(dir, 'dataset'), { recursive: true });
  const file = path.join(dir, 'dataset', 'test.messages.jsonl');
  writeFileSync(file, '');
  for (let start = 0; start < n; start += 500) {
    const lines: string[] = [];
    for (let i = start; i < Math.min(n, start + 500); i++) {
      const prompt = [
        { role: 'system', content: 'You are a clinical assistant. Behaviors: reactive, proactive, restraint. Start with the behavior in brackets.' },
        { role: 'user', content: `Dr. Patel: ${text(500)}` }, { role: 'user', content: `Nurse Rivera: ${text(500)}` }, { role: 'user', content: `Dr. Okafor: ${text(400)} (${i})` },
      ];
      lines.push(JSON.stringify({ id: `t${i}`, case_id: `c${i >> 3}`, category: 'omission_detection', behavior: 'proactive', prompt }));
    }
    appendFileSync(file, `${lines.join('\n')}\n`);
  }
  return dir;
}

/** In a process of its own: predicts the split at `concurrency`; prints tasks, seconds and the process's peak RSS. */
async function measure(url: string, dir: string, concurrency: number): Promise<void> {
  const recipe = {
    eval: { endpoint: { base_url: url, model: 'served', max_concurrency: concurrency, timeout_s: 60, max_retries: 2 }, max_new_tokens: 64, reply_tag: true },
    data: { behaviors: { reactive: {}, proactive: {}, restraint: {} } },
  } as unknown as ResolvedRecipe;
  const t0 = performance.now();
  const r = await predictViaChat(recipe, dir, 'test', createLogger('warn'));
  const s = (performance.now() - t0) / 1000;
  const hwm = /VmHWM:\s+(\d+) kB/.exec(readFileSync('/proc/self/status', 'utf8'))?.[1];
  // What the run keeps once it is over (a full collection first): grows with the tasks only if something is held per task.
  global.gc?.();
  const retainedMib = process.memoryUsage().heapUsed / 1024 / 1024;
  console.log(JSON.stringify({ n: r.tasks, s, peakMib: hwm ? Number(hwm) / 1024 : process.memoryUsage().rss / 1024 / 1024, retainedMib }));
}

/** The measurement in a child process (async: this process serves the requests meanwhile). */
async function measured(url: string, dir: string, concurrency: number): Promise<{ n: number; s: number; peakMib: number; retainedMib: number }> {
  rmSync(path.join(dir, 'predict-progress'), { recursive: true, force: true });
  rmSync(path.join(dir, 'predictions'), { recursive: true, force: true });
  const { stdout: out } = await promisify(execFile)(process.execPath, ['--expose-gc', fileURLToPath(import.meta.url), 'measure', url, dir, String(concurrency)], { encoding: 'utf8' });
  return JSON.parse(out.trim().split('\n').at(-1)!);
}

async function main(): Promise<void> {
  const root = mkdtempSync(path.join(tmpdir(), 'bsft-bench-eval-'));
  const srv = await server();
  try {
    const big = runDir(root, 14_000);
    const small = runDir(root, 3_500);
    const mean = (LATENCY[0]! + LATENCY[1]!) / 2 / 1000;
    console.log(`bench:eval — chat endpoint predictions (eval.engine openai-chat) against a local server answering in ${LATENCY[0]}–${LATENCY[1]} ms`);
    console.log(`${'prompts'.padStart(8)} ${'concurrency'.padStart(12)} ${'seconds'.padStart(8)} ${'requests/s'.padStart(11)} ${'ideal'.padStart(7)} ${'of ideal'.padStart(9)} ${'peak RSS'.padStart(9)} ${'heap after'.padStart(11)}`);
    for (const c of [32, 128]) {
      for (const dir of [small, big]) {
        const m = await measured(srv.url, dir, c);
        const rps = m.n / m.s;
        const ideal = c / mean;
        console.log(`${m.n.toLocaleString('en').padStart(8)} ${String(c).padStart(12)} ${m.s.toFixed(1).padStart(8)} ${rps.toFixed(1).padStart(11)} ${ideal.toFixed(1).padStart(7)} ${`${((100 * rps) / ideal).toFixed(0)}%`.padStart(9)} ${`${m.peakMib.toFixed(0)} MiB`.padStart(9)} ${`${m.retainedMib.toFixed(1)} MiB`.padStart(11)}`);
      }
    }
  } finally {
    await srv.close();
    rmSync(root, { recursive: true, force: true });
  }
}

(process.argv[2] === 'measure' ? measure(process.argv[3]!, process.argv[4]!, Number(process.argv[5])) : main()).catch((e) => {
  console.error(e);
  process.exit(1);
});
