/**
 * npm run bench:cli — how long `bsft --help` and `bsft validate --help` take to start (target < 0.3 s), side by side
 * with `node -e 0` measured in the same run (the floor: Node's own start-up). Commands load their code only when
 * they run, so help never imports BullMQ, Bull Board, express or the tokenizer.
 *
 * Then, where Redis answers (REDIS_URL, default 127.0.0.1:6379), the wall time of the queue commands a user runs
 * often (`status`, `status --json`, `logs`, `cancel` of a run that is not there) beside a Node process that connects
 * to the same Redis with ioredis and pings it (the floor for a command that talks to Redis).
 */
import { spawnSync } from 'node:child_process';
import path from 'node:path';
import { PACKAGE_ROOT } from '../util/package-root.js';

const RUNS = 7;
const BSFT = path.join(PACKAGE_ROOT, 'bin', 'bsft.js');

/** Median wall time of `node <args>`; a failing run is an error unless `mayFail` (a command about a missing run). */
function medianMs(args: string[], opts: { env?: NodeJS.ProcessEnv; mayFail?: boolean } = {}): number {
  const times: number[] = [];
  for (let i = 0; i < RUNS; i++) {
    const t = process.hrtime.bigint();
    const res = spawnSync(process.execPath, args, { cwd: PACKAGE_ROOT, stdio: 'ignore', env: opts.env ?? process.env });
    times.push(Number(process.hrtime.bigint() - t) / 1e6);
    if (res.status !== 0 && !opts.mayFail) throw new Error(`node ${args.join(' ')} exited ${res.status ?? res.signal}`);
  }
  return times.sort((a, b) => a - b)[Math.floor(RUNS / 2)]!;
}

const rows: [string, number][] = [
  ['node -e 0 (baseline)', medianMs(['-e', '0'])],
  ['bsft --help', medianMs([BSFT, '--help'])],
  ['bsft validate --help', medianMs([BSFT, 'validate', '--help'])],
  ['bsft status --help', medianMs([BSFT, 'status', '--help'])],
];
console.log(`CLI start-up, median of ${RUNS} runs (target: bsft --help < 300 ms)`);
for (const [what, ms] of rows) console.log(`  ${what.padEnd(24)} ${ms.toFixed(0).padStart(5)} ms   ${(ms - rows[0]![1]).toFixed(0).padStart(4)} ms over node`);

const env = { ...process.env, BSFT_QUEUE_PREFIX: `bench-cli-${process.pid}`, BSFT_LOG_LEVEL: 'warn' };
const url = process.env.REDIS_URL ?? 'redis://127.0.0.1:6379';
const ping = `import { Redis } from 'ioredis'; const r = new Redis(${JSON.stringify(url)}, { lazyConnect: true, maxRetriesPerRequest: 1 }); await r.connect(); await r.ping(); r.disconnect();`;
if (spawnSync(process.execPath, ['--input-type=module', '-e', ping], { cwd: PACKAGE_ROOT, stdio: 'ignore', env }).status !== 0) {
  console.log(`queue commands: no Redis answers at ${url.replace(/\/\/[^@]*@/, '//***@')}; not measured`);
} else {
  const timed = (args: string[]): number => medianMs(args, { env, mayFail: true });
  const queue: [string, number][] = [
    ['node + ioredis ping (baseline)', timed(['--input-type=module', '-e', ping])],
    ['bsft status', timed([BSFT, 'status'])],
    ['bsft status --json', timed([BSFT, 'status', '--json'])],
    ['bsft logs <no such run>', timed([BSFT, 'logs', 'none-00000000'])],
    ['bsft cancel <no such run>', timed([BSFT, 'cancel', 'none-00000000'])],
  ];
  console.log(`queue commands against Redis, median of ${RUNS} runs (an empty queue)`);
  for (const [what, ms] of queue) console.log(`  ${what.padEnd(32)} ${ms.toFixed(0).padStart(5)} ms   ${(ms - queue[0]![1]).toFixed(0).padStart(4)} ms over the baseline`);
}
