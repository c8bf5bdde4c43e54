/**
 * npm run bench:cli — how long `bsft --help` and `bsft validate --help` take to start (target < 0.3 s), side by side
 * with `node -e 0` measured in the same run (the floor: Node's own start-up). Commands load their code only when
 * they run, so help never imports BullMQ, Bull Board, express or the tokenizer.
 */
import { execFileSync } from 'node:child_process';
import path from 'node:path';
import { PACKAGE_ROOT } from '../util/package-root.js';

const RUNS = 7;
const BSFT = path.join(PACKAGE_ROOT, 'bin', 'bsft.js');

function medianMs(args: string[]): number {
  const times: number[] = [];
  for (let i = 0; i < RUNS; i++) {
    const t = process.hrtime.bigint();
    execFileSync(process.execPath, args, { stdio: 'ignore' });
    times.push(Number(process.hrtime.bigint() - t) / 1e6);
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
