import { pythonThatRuns } from '../../src/run/python-env.js';

/** A Python with torch and numpy for tests that run the real trainer (Debian's python3-torch in CI), or undefined. */
export function torchPython(): string | undefined {
  return pythonThatRuns('import torch, numpy', [process.env.BSFT_PYTHON, '/usr/bin/python3', 'python3']);
}

/** A Python that runs `code` without error ($BSFT_PYTHON, the project's .venv, python3), or undefined. */
export { pythonThatRuns };

/** A Python that imports all of `modules`, or undefined. */
export function pythonWith(modules: string[]): string | undefined {
  return pythonThatRuns(`import ${modules.join(', ')}`);
}
