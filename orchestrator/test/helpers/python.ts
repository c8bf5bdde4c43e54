import { execFileSync } from 'node:child_process';
import path from 'node:path';
import { ROOT } from './cli.js';

/** A Python with torch and numpy for tests that run the real trainer (Debian's python3-torch in CI), or undefined. */
export function torchPython(): string | undefined {
  for (const py of [process.env.BSFT_PYTHON, '/usr/bin/python3', 'python3']) {
    if (!py) continue;
    try {
      execFileSync(py, ['-c', 'import torch, numpy'], { stdio: 'ignore' });
      return py;
    } catch {
      // try the next one
    }
  }
  return undefined;
}

/** A Python that runs `code` without error ($BSFT_PYTHON, the project's .venv, python3), or undefined. */
export function pythonThatRuns(code: string): string | undefined {
  for (const py of [process.env.BSFT_PYTHON, path.join(ROOT, '.venv', 'bin', 'python'), 'python3']) {
    if (!py) continue;
    try {
      execFileSync(py, ['-c', code], { stdio: 'ignore' });
      return py;
    } catch {
      // try the next one
    }
  }
  return undefined;
}

/** A Python that imports all of `modules`, or undefined. */
export function pythonWith(modules: string[]): string | undefined {
  return pythonThatRuns(`import ${modules.join(', ')}`);
}
