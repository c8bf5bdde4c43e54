/**
 * npm run bench:study — a blind study at the paper's scale, each figure beside a baseline measured in the same run:
 * - create: 4 runs x 14,000 test predictions (replies of ~256 tokens, conversations of several thousand tokens),
 *   200 tasks sampled by group, against the floor of reading and parsing the same files once;
 * - the ratings log: durable appends (write + fdatasync per rating) against the same appends without fsync, and
 *   reopening a 100,000-rating log;
 * - statistics: 4 runs (6 pairs) x 300 tasks, three raters each (5,400 ratings), 1,000 resamples of raters and
 *   tasks with the Bradley–Terry ranking and agreement, against the point estimates alone.
 */
import { appendFileSync, mkdirSync, mkdtempSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import path from 'node:path';
import { createStudy } from '../study/create.js';
import { RatingsLog } from '../study/ratings-log.js';
import { DEFAULT_RUBRIC } from '../study/rubric.js';
import { studyStats } from '../study/stats.js';
import type { Rating } from '../study/study-files.js';
import { syntheticStudy } from '../study/synthetic.js';
import { Rng } from '../util/rng.js';

const TASKS = 14_000;
const RUNS = 4;
const root = mkdtempSync(path.join(tmpdir(), 'bsft-bench-study-'));
const rng = new Rng(1);
const words = 'potassium lisinopril creatinine hold recheck the team dose plan ECG urine sodium continue review allergy'.split(' ');
const text = (n: number) => Array.from({ length: n }, () => words[Math.floor(rng.next() * words.length)]).join(' ');
const B = ['reactive', 'proactive', 'restraint'];
const secs = (t: number) => ((performance.now() - t) / 1000).toFixed(2);
const mib = (b: number) => `${(b / 1024 / 1024).toFixed(0)} MiB`;

// Runs: the same test split, each with its replies.
const conversations = Array.from({ length: 50 }, () => [
  { role: 'user', content: `Dr. Patel: ${text(900)}` },
  { role: 'user', content: `Nurse Rivera: ${text(900)}` },
  { role: 'user', content: `Dr. Okafor: ${text(600)}` },
]);
const dirs: string[] = [];
for (let r = 0; r < RUNS; r++) {
  const dir = path.join(root, `run${r}`);
  dirs.push(dir);
  mkdirSync(path.join(dir, 'dataset'), { recursive: true });
  mkdirSync(path.join(dir, 'predictions'), { recursive: true });
  writeFileSync(path.join(dir, 'recipe.json'), JSON.stringify({
    name: `run${r}`, run_id: `run${r}-0000000${r}`, data: { behaviors: Object.fromEntries(B.map((b) => [b, { token: `<|behavior:${b}|>`, description: b }])), categories: {}, conditioning: 'token', instruction: '' },
    train: { method: 'lora', seed: 1 }, eval: { bootstrap: 0 },
  }));
  const msg = [];
  const pred = [];
  for (let i = 0; i < TASKS; i++) {
    const behavior = B[i % 3]!;
    msg.push(JSON.stringify({ id: `t${i}`, case_id: `c${i >> 3}`, category: `category_${i % 13}`, behavior, prompt: conversations[i % 50] }));
    pred.push(JSON.stringify({ id: `t${i}`, predicted_behavior: behavior, reply: `<|behavior:${behavior}|>${text(200)}` }));
  }
  writeFileSync(path.join(dir, 'dataset', 'test.messages.jsonl'), `${msg.join('\n')}\n`);
  writeFileSync(path.join(dir, 'predictions', 'test.jsonl'), `${pred.join('\n')}\n`);
}
const bytes = dirs.reduce((a, d) => a + readFileSync(path.join(d, 'predictions', 'test.jsonl')).length + readFileSync(path.join(d, 'dataset', 'test.messages.jsonl')).length, 0);

let t = performance.now();
for (const d of dirs) for (const f of ['predictions/test.jsonl', 'dataset/test.messages.jsonl']) for (const l of readFileSync(path.join(d, f), 'utf8').split('\n')) if (l) JSON.parse(l);
const floor = secs(t);
const rss0 = process.memoryUsage().rss;
t = performance.now();
const created = await createStudy({ name: 'bench', dir: path.join(root, 'studies', 'bench'), runDirs: dirs, split: 'test', n: 200, seed: 1, stratify: 'group', rubric: DEFAULT_RUBRIC });
const createS = secs(t);
console.log(`study create: ${RUNS} runs x ${TASKS.toLocaleString('en')} predictions (${mib(bytes)} of predictions and conversations), ${created.study.tasks} tasks sampled, ${created.study.items.toLocaleString('en')} pairs`);
console.log(`  bsft study create                 ${createS} s   (rss ${mib(process.memoryUsage().rss)}, was ${mib(rss0)})`);
console.log(`  baseline: read + JSON.parse once  ${floor} s`);

// The ratings log.
const N = 2000;
const rating = (i: number): Rating => ({ rating_id: `r${i}-0123456789`, rater: `rater${i % 5}`, item: `p${i}`, answers: { overall: 'A', realism: 'tie', proactivity: 'B', restraint: 'A' }, comment: i % 10 ? '' : text(30), ms: 20_000, submitted_at: new Date().toISOString(), source: 'web' });
const logFile = path.join(root, 'ratings.log');
const log = RatingsLog.open(logFile);
t = performance.now();
for (let i = 0; i < N; i++) log.append(rating(i));
const durable = (performance.now() - t) / N;
log.close();
const plain = path.join(root, 'plain.log');
t = performance.now();
for (let i = 0; i < N; i++) appendFileSync(plain, `${JSON.stringify(rating(i))}\n`);
const unsynced = (performance.now() - t) / N;
console.log(`ratings log: ${N.toLocaleString('en')} ratings appended one by one (in ${root}; fsync costs what that disk costs)`);
console.log(`  bsft (write + fdatasync, acknowledged after)  ${durable.toFixed(3)} ms/rating (${Math.round(1000 / durable).toLocaleString('en')}/s)`);
console.log(`  baseline: appendFileSync, no fsync            ${unsynced.toFixed(3)} ms/rating`);
const big = RatingsLog.open(path.join(root, 'big.log'));
big.close();
writeFileSync(path.join(root, 'big.log'), readFileSync(logFile, 'utf8').repeat(50));
t = performance.now();
const reopened = RatingsLog.open(path.join(root, 'big.log'));
console.log(`  reopen a ${(N * 50).toLocaleString('en')}-record log (checksums verified): ${secs(t)} s`);
reopened.close();

// Statistics.
const T = 300;
const { study, key, ratings } = syntheticStudy({ runs: RUNS, tasks: T, raters: 10, perPair: () => 3, seed: 1 });
t = performance.now();
const s = studyStats(study, key, ratings, 1000, 1);
const withBootstrap = secs(t);
t = performance.now();
studyStats(study, key, ratings, 0, 1);
const point = secs(t);
console.log(`statistics: ${RUNS} runs (${s.pairs.length} pairs) x ${T} tasks, ${ratings.length.toLocaleString('en')} ratings by 10 raters`);
console.log(`  with 1,000 resamples (win/tie/loss, Bradley–Terry, alpha, kappa, position bias)  ${withBootstrap} s`);
console.log(`  baseline: point estimates only                                                  ${point} s`);
rmSync(root, { recursive: true, force: true });
