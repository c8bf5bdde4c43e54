import { UsageError } from '../errors.js';
import { existsSync, readFileSync, writeFileSync } from 'node:fs';
import path from 'node:path';
import { PACKAGE_ROOT } from '../util/package-root.js';
import { EXIT, type CommandImpl } from './command.js';

const FEW_CATEGORIES = `    error_correction: proactive
    omission_detection: proactive
    consistency_check: proactive
    differential_diagnosis: reactive`;

/** Starter presets: `behaviorbench` maps BehaviorBench's 13 categories to their behaviors (one source: the bundled file). */
const PRESETS: Record<string, () => string> = {
  behaviorbench: () => {
    const text = readFileSync(path.join(PACKAGE_ROOT, 'recipes', 'behaviorbench-categories.yaml'), 'utf8');
    return text.slice(text.indexOf('  categories:\n') + '  categories:\n'.length).trimEnd();
  },
};

const starter = (name: string, model: string, tasks: string, categories: string) => `# bsft recipe: BehaviorSFT fine-tuning. Check it with \`bsft validate\`, see it resolved with \`bsft show\`.
# Paths are relative to this file. Secrets never go here: HF_TOKEN and REDIS_URL come from the environment.
name: ${name}

model:
  name_or_path: ${model}      # a Hub id, or a local directory starting with ./ or ../
  dtype: bfloat16

data:
  tasks: [${JSON.stringify(tasks)}]   # JSONL task files or globs (.jsonl.gz too)
  conditioning: token        # token (BehaviorSFT) | none (standard SFT) | instruction (system prompt)
  # behaviors default to reactive / proactive / restraint with tokens <|behavior:NAME|>
  categories:                # category -> behavior, for tasks without a behavior field
${categories}
  splits: { train: 0.8, val: 0.1, test: 0.1 }
  seed: 42
  max_seq_len: 4096

train:
  method: lora               # lora | full
  lora: { r: 16, alpha: 32, dropout: 0.05, targets: all-linear }
  lr: 2.0e-4
  schedule: cosine
  warmup_ratio: 0.03
  epochs: 3
  batch_tokens: 16384
  checkpoint_every: 200
  preempt_grace_s: 60

eval:
  splits: [test]

store:
  kind: local                # local | hub (set repo: owner/name; token from HF_TOKEN)
`;

export const init: CommandImpl = {
  async run([file = 'bsft.yaml'], values, { out }) {
    if (existsSync(file) && !values.force) {
      throw new UsageError(`${file} exists; pass --force to overwrite it`);
    }
    const name = values.name as string;
    if (!/^[A-Za-z0-9][A-Za-z0-9._-]{0,63}$/.test(name)) throw new UsageError(`--name: letters, digits, ".", "_" and "-"`);
    const preset = values.preset as string | undefined;
    if (preset !== undefined && !PRESETS[preset]) throw new UsageError(`--preset: unknown preset "${preset}" (${Object.keys(PRESETS).join(', ')})`);
    writeFileSync(file, starter(name, values.model as string, values.tasks as string, preset ? PRESETS[preset]!() : FEW_CATEGORIES));
    out(`wrote ${file}; next: bsft validate ${file}`);
    return EXIT.ok;
  },
};
