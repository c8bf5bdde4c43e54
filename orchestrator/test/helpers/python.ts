import { execFileSync } from 'node:child_process';

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
