import path from 'node:path';
import { fileURLToPath } from 'node:url';
import { execa, type Options } from 'execa';

export const ROOT = path.resolve(path.dirname(fileURLToPath(import.meta.url)), '..', '..', '..');
export const BSFT = path.join(ROOT, 'bin', 'bsft.js');
export const FIXTURES = path.join(ROOT, 'orchestrator', 'test', 'fixtures');

/** Runs the real `bsft` CLI in a subprocess (the built dist/), never throwing on a non-zero exit. */
export async function bsft(args: string[], options: Options = {}) {
  const res = await execa(process.execPath, [BSFT, ...args], {
    cwd: ROOT,
    reject: false,
    env: { BSFT_LOG_LEVEL: 'warn', ...(options.env as Record<string, string> | undefined) },
    ...options,
  });
  return { code: res.exitCode, stdout: String(res.stdout), stderr: String(res.stderr) };
}
