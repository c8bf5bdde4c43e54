import { execFileSync } from 'node:child_process';
import { existsSync, readFileSync } from 'node:fs';
import path from 'node:path';
import { execa } from 'execa';
import type { ResolvedRecipe } from '../recipe/resolve.js';
import { JUDGE_KEY_ENV, PREDICT_KEY_ENV } from '../recipe/secrets.js';
import { PACKAGE_ROOT } from '../util/package-root.js';

export { PACKAGE_ROOT };

export const TRAINER_DIR = path.join(PACKAGE_ROOT, 'trainer-python');

/** The versions the trainer's suite passed with (trainer-python/pins.txt, the one place they are written). */
export function trainerPins(): string[] {
  try {
    return readFileSync(path.join(TRAINER_DIR, 'pins.txt'), 'utf8').split('\n').map((l) => l.trim()).filter((l) => l && !l.startsWith('#'));
  } catch {
    return [];
  }
}

/** How to install the trainer's Python requirements (pyproject.toml); printed when they are missing. */
export const TRAINER_INSTALL = `python3 -m pip install -e "${TRAINER_DIR}"   # torch>=2.4, transformers, peft, safetensors, tokenizers, numpy (tested: ${trainerPins().join(', ')})`;

/** The Python that runs the trainer: $BSFT_PYTHON, else the project's .venv, else python3 on PATH. */
export function trainerPython(): string {
  if (process.env.BSFT_PYTHON) return process.env.BSFT_PYTHON;
  const venv = path.join(PACKAGE_ROOT, '.venv', 'bin', 'python');
  return existsSync(venv) ? venv : 'python3';
}

/**
 * The first of `candidates` (by default the Pythons bsft looks at: $BSFT_PYTHON, the project's .venv, python3) that
 * runs `code`, or undefined.
 */
export function pythonThatRuns(code: string, candidates = [process.env.BSFT_PYTHON, path.join(PACKAGE_ROOT, '.venv', 'bin', 'python'), 'python3']): string | undefined {
  for (const py of candidates) {
    if (!py) continue;
    try {
      execFileSync(py, ['-c', code], { stdio: 'ignore' });
      return py;
    } catch {
      // the next one
    }
  }
  return undefined;
}

/** PYTHONPATH that finds the bundled trainer's sources even when it is not pip-installed. */
export function trainerPythonPath(): string {
  return [path.join(TRAINER_DIR, 'src'), process.env.PYTHONPATH].filter(Boolean).join(path.delimiter);
}

/** Variables that hold secrets no Python child of bsft uses: the judge endpoint's key (the judge that calls an
 * endpoint runs in Node) and the queue's Redis URL (its password). The Hub token and trackers' keys stay. */
const NOT_FOR_PYTHON = [JUDGE_KEY_ENV, PREDICT_KEY_ENV, 'REDIS_URL'];

/** The environment of a Python child (trainer, predict, judge, a probe): this process's, less NOT_FOR_PYTHON. */
export function pythonEnv(extra: Record<string, string | undefined> = {}): Record<string, string | undefined> {
  const env: Record<string, string | undefined> = { ...process.env, PYTHONPATH: trainerPythonPath(), ...extra };
  for (const name of NOT_FOR_PYTHON) delete env[name];
  return env;
}

/** Names of the given modules that the trainer's Python cannot import (all of them if Python itself is missing). */
export async function missingModules(modules: string[], python = trainerPython()): Promise<string[]> {
  const probe = `import importlib.util, sys\nprint(",".join(m for m in sys.argv[1:] if importlib.util.find_spec(m) is None))`;
  const res = await execa(python, ['-c', probe, ...modules], { reject: false, env: pythonEnv(), extendEnv: false });
  if (res.exitCode !== 0 || res.failed) return modules;
  return res.stdout.trim().split(',').filter(Boolean);
}

/** Python modules the trainer needs for a model (the bsft-toy test model needs no transformers). */
function trainerModules(modelPath: string): string[] {
  const base = ['bsft_trainer', 'torch', 'numpy'];
  try {
    const config = JSON.parse(readFileSync(path.join(modelPath, 'config.json'), 'utf8')) as { model_type?: string };
    if (config.model_type === 'bsft-toy') return base;
  } catch {
    // A Hub id or an unreadable folder: the real model path.
  }
  return [...base, 'transformers', 'peft', 'safetensors'];
}

/** Why the trainer cannot run this recipe's model with `python` (what is missing, how to install it), or undefined. */
export async function trainerUnavailable(recipe: ResolvedRecipe, python = trainerPython()): Promise<string | undefined> {
  const missing = await missingModules(trainerModules(recipe.model.name_or_path), python);
  if (missing.length === 0) return undefined;
  return `the trainer's Python packages are missing for ${python}: ${missing.join(', ')}.\n` +
    `Install them with:\n  ${TRAINER_INSTALL}\n(or set BSFT_PYTHON to a Python that has them), then run the same command again.`;
}
