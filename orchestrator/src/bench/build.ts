/**
 * npm run bench:build -- [--short N] [--long N] [--turns MIN-MAX] [--out DIR] [--no-hf]
 *
 * The dataset build at paper scale, side by side with the baseline a user would otherwise write (Hugging Face
 * `datasets.map` with the fast tokenizer and apply_chat_template: trainer-python/bench/hf_dataset_build.py), in one
 * run on the same generated tasks:
 *   --short N  tasks like the bundled sample (two to four short turns), 142,496 by default (BehaviorBench's count);
 *   --long N   long multi-party conversations (--turns 24-80 turns of about 60 tokens: 1,500-5,000 tokens), 0 by default.
 * Each build runs in a process of its own; CPU time (user + system, children included), wall time and peak RSS are
 * read from the process itself. The baseline runs where a Python with `datasets`, `transformers` and `jinja2` is found
 * ($BSFT_PYTHON, the project's .venv, python3); elsewhere the figures the audit of issue 29 recorded (142,496 short
 * tasks) are printed beside bsft's, marked as recorded. The first 200 documents' token IDs are compared with the
 * baseline's.
 */
import { spawn } from 'node:child_process';
import { closeSync, existsSync, mkdirSync, mkdtempSync, openSync, readFileSync, rmSync, writeSync } from 'node:fs';
import { tmpdir } from 'node:os';
import path from 'node:path';
import { fileURLToPath } from 'node:url';
import { buildDataset } from '../dataset/build.js';
import { readManifest } from '../dataset/manifest.js';
import { readSafetensors } from '../dataset/safetensors.js';
import { createLogger } from '../log.js';
import { resolveRecipe } from '../recipe/resolve.js';
import { pythonThatRuns } from '../run/python-env.js';
import { PACKAGE_ROOT } from '../util/package-root.js';
import { Rng } from '../util/rng.js';
import { table } from '../util/table.js';

interface Measured {
  cpu_s: number;
  wall_s: number;
  peak_rss_mib: number;
  documents: number;
  tokens: number;
  check?: Record<string, number[]>;
}

const SAMPLE = path.join(PACKAGE_ROOT, 'recipes', 'data', 'behaviorbench-sample.jsonl');
const TOKENIZER = path.join(PACKAGE_ROOT, 'recipes', 'models', 'qwen2.5-tokenizer');
const HF_SCRIPT = path.join(PACKAGE_ROOT, 'trainer-python', 'bench', 'hf_dataset_build.py');
/** The audit of issue 29 (142,496 short tasks, 18.3M tokens, a 2-core machine; its own generator): the fallback baseline. */
const RECORDED_HF: Record<string, Measured> = {
  'num_proc 1': { cpu_s: 126, wall_s: NaN, peak_rss_mib: 1.9 * 1024, documents: 142_496, tokens: 18_300_000 },
  'num_proc 2': { cpu_s: 142, wall_s: NaN, peak_rss_mib: 2.5 * 1024, documents: 142_496, tokens: 18_300_000 },
};

const WORDS = ('potassium creatinine lisinopril spironolactone warfarin INR heparin ECG troponin sepsis lactate blood cultures ' +
  'antibiotics vancomycin renal dosing allergy penicillin rash fever tachycardia hypotension fluids bolus oxygen saturation ' +
  'chest x-ray consolidation discharge plan follow-up clinic glucose insulin sliding scale hypoglycemia delirium haloperidol ' +
  'falls risk anticoagulation bleeding hemoglobin transfusion platelets MRI CT scan contrast kidney injury the patient was ' +
  'reviewed on the ward round this morning and we should consider whether the dose is right given the latest results').split(' ');
const NAMES = ['Dr. Patel', 'Dr. Okafor', 'Nurse Rivera', 'Dr. Schmidt', 'Pharmacist Nguyen', 'Dr. Mensah'];

/** Writes the benchmark's task file: `short` sample-like tasks, then `long` long conversations (deterministic). */
function writeTasks(file: string, short: number, long: number, turns: [number, number]): void {
  const sample = readFileSync(SAMPLE, 'utf8').trim().split('\n').map((l) => JSON.parse(l) as Record<string, unknown> & { id: string; case_id: string });
  const fd = openSync(file, 'w');
  try {
    for (let n = 0, k = 0; n < short; k++) {
      for (const t of sample) {
        if (n++ >= short) break;
        writeSync(fd, `${JSON.stringify({ ...t, id: `${t.id}-x${k}`, case_id: `${t.case_id}-x${k}` })}\n`);
      }
    }
    const rng = new Rng(29);
    const pick = <T>(xs: T[]) => xs[Math.floor(rng.next() * xs.length)]!;
    const sentence = (n: number) => Array.from({ length: n }, () => pick(WORDS)).join(' ');
    const categories = [['omission_detection', 'proactive'], ['error_correction', 'proactive'], ['differential_diagnosis', 'reactive'], ['acknowledgement', 'restraint']];
    for (let i = 0; i < long; i++) {
      const n = turns[0] + Math.floor(rng.next() * (turns[1] - turns[0] + 1));
      const context = Array.from({ length: n }, () => ({ role: 'user', name: pick(NAMES), content: `${sentence(40)}.` }));
      const [category, behavior] = pick(categories);
      writeSync(fd, `${JSON.stringify({ id: `long-${i}`, case_id: `long-c${Math.floor(i / 8)}`, category, behavior, context, target: `${sentence(30)}.` })}\n`);
    }
  } finally {
    closeSync(fd);
  }
}

/** In the child process: the build, and what it cost this process. */
async function child(tasks: string, out: string): Promise<void> {
  const recipe = resolveRecipe(path.join(PACKAGE_ROOT, 'recipes', 'smoke.yaml'), {
    policy: { workspace: PACKAGE_ROOT, allow: [path.dirname(tasks), path.dirname(out)] },
    set: [`data.tasks=["${tasks}"]`, 'data.max_seq_len=8192', 'train.batch_tokens=8192'],
  });
  const started = performance.now();
  const built = await buildDataset(recipe, out, createLogger('warn'));
  const wall = (performance.now() - started) / 1000;
  const u = process.resourceUsage();
  const splits = Object.values(built.manifest.lengths);
  const result: Measured = {
    cpu_s: (u.userCPUTime + u.systemCPUTime) / 1e6,
    wall_s: wall,
    peak_rss_mib: u.maxRSS / 1024,
    documents: splits.reduce((a, s) => a + s.documents, 0),
    tokens: splits.reduce((a, s) => a + s.tokens, 0),
  };
  process.stdout.write(`${JSON.stringify(result)}\n`);
}

function run(cmd: string, args: string[]): Promise<Measured> {
  return new Promise((resolve, reject) => {
    const p = spawn(cmd, args, { stdio: ['ignore', 'pipe', 'inherit'] });
    let out = '';
    p.stdout.on('data', (d: Buffer) => (out += d.toString()));
    p.on('error', reject);
    p.on('exit', (code) => (code === 0 ? resolve(JSON.parse(out.trim().split('\n').at(-1)!) as Measured) : reject(new Error(`${cmd} exited ${code}`))));
  });
}

/** The token IDs of `ids` in bsft's shards, by task id. */
function bsftIds(dir: string, ids: string[]): Map<string, number[]> {
  const manifest = readManifest(dir)!;
  const out = new Map<string, number[]>();
  for (const split of ['train', 'val', 'test'] as const) {
    const { tensors } = readSafetensors(path.join(dir, `${split}.tokens.safetensors`));
    const offsets = tensors.doc_offsets as BigInt64Array;
    const tokens = tensors.input_ids as Int32Array;
    manifest.documents[split].forEach((id, d) => {
      if (ids.includes(id)) out.set(id, Array.from(tokens.subarray(Number(offsets[d]), Number(offsets[d + 1]))));
    });
  }
  return out;
}

function option(name: string, fallback: string): string {
  const i = process.argv.indexOf(name);
  return i >= 0 ? process.argv[i + 1]! : fallback;
}

async function main(): Promise<void> {
  const short = Number(option('--short', '142496'));
  const long = Number(option('--long', '0'));
  const turns = option('--turns', '24-80').split('-').map(Number) as [number, number];
  const work = option('--out', mkdtempSync(path.join(tmpdir(), 'bsft-bench-build-')));
  mkdirSync(work, { recursive: true });
  const tasks = path.join(work, 'tasks.jsonl');
  console.log(`generating ${short.toLocaleString('en')} short tasks and ${long.toLocaleString('en')} long conversations (${turns.join('-')} turns) in ${work}`);
  writeTasks(tasks, short, long, turns);
  const out = path.join(work, 'bsft-dataset');
  rmSync(out, { recursive: true, force: true });
  const self = fileURLToPath(import.meta.url);
  console.log('bsft dataset build ...');
  const ours = await run(process.execPath, [self, '--child', tasks, out]);
  const rows: [string, Measured, string][] = [['bsft dataset build', ours, 'measured']];
  // Everything the baseline script needs: apply_chat_template renders with jinja2, which transformers imports lazily.
  const py = process.argv.includes('--no-hf') ? undefined : pythonThatRuns('import datasets, transformers, jinja2');
  let checked = '';
  let failed = '';
  if (py && existsSync(HF_SCRIPT)) {
    for (const procs of [1, 2]) {
      console.log(`HF datasets.map, num_proc ${procs} ...`);
      const cache = path.join(work, `hf-cache-${procs}`);
      rmSync(cache, { recursive: true, force: true });
      const hf = await run(py, [HF_SCRIPT, '--tasks', tasks, '--tokenizer', TOKENIZER, '--num-proc', String(procs), '--out', cache])
        .catch((e: Error) => { failed = `the baseline failed (${e.message}; its error is above): bsft's own figure is shown alone`; });
      if (!hf) break;
      rows.push([`HF datasets.map, num_proc ${procs}`, hf, 'measured']);
      if (hf.check) {
        const mine = bsftIds(out, Object.keys(hf.check));
        const same = Object.entries(hf.check).filter(([id, ids]) => JSON.stringify(mine.get(id)) === JSON.stringify(ids)).length;
        checked = `token IDs of the first ${Object.keys(hf.check).length} tasks: ${same} identical to the baseline's`;
      }
    }
  } else {
    console.log(process.argv.includes('--no-hf') ? 'baseline not run (--no-hf): the figures the audit of issue 29 recorded (142,496 short tasks) are shown'
      : 'no Python with datasets, transformers and jinja2 here: the baseline is the figures the audit of issue 29 recorded (142,496 short tasks)');
    for (const [name, m] of Object.entries(RECORDED_HF)) rows.push([`HF datasets.map, ${name}`, m, 'recorded (issue 29)']);
  }
  const best = rows.slice(1).reduce((a, r) => (r[1].cpu_s < a[1].cpu_s ? r : a), rows[0]!);
  const fmt = (x: number, d = 1) => (Number.isFinite(x) ? x.toFixed(d) : '-');
  // A ratio only between the same work (a recorded baseline of another workload is shown for scale).
  const ratio = (m: Measured) => (m.documents === best[1].documents && m.tokens === best[1].tokens ? `${fmt(best[1].cpu_s / m.cpu_s, 2)}x` : 'other work');
  console.log('');
  console.log(table([
    ['', 'CPU s', 'wall s', 'peak RSS MiB', 'documents', 'tokens', 'CPU vs best baseline', ''],
    ...rows.map(([name, m, how]) => [name, fmt(m.cpu_s), fmt(m.wall_s), fmt(m.peak_rss_mib, 0), m.documents.toLocaleString('en'),
      m.tokens.toLocaleString('en'), ratio(m), how]),
  ]).join('\n'));
  if (checked) console.log(checked);
  if (failed) console.log(failed);
  if (!option('--out', '')) rmSync(work, { recursive: true, force: true });
}

if (process.argv.includes('--child')) {
  const i = process.argv.indexOf('--child');
  await child(process.argv[i + 1]!, process.argv[i + 2]!);
} else {
  await main();
}
