import { execFileSync } from 'node:child_process';
import { existsSync, mkdtempSync, readdirSync, readFileSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import path from 'node:path';
import { execa } from 'execa';
import { describe, expect, it } from 'vitest';
import { BSFT, FIXTURES, ROOT } from './helpers/cli.js';
import { torchPython } from './helpers/python.js';
import { limit } from './helpers/time-scale.js';

/** Issue 18: Ctrl-C and SIGTERM on `bsft run` keep the training done so far. */

const py = torchPython();

/** A long toy run (400 steps, no scheduled checkpoint): whatever checkpoint exists came from the stop. */
function longRun(): { dir: string; recipe: string } {
  const dir = mkdtempSync(path.join(tmpdir(), 'bsft-stop-'));
  writeFileSync(
    path.join(dir, 'r.yaml'),
    `extends: ${path.join(FIXTURES, 'recipes', 'toy-run.yaml')}\nname: stop\ntrain: { max_steps: 400, checkpoint_every: 1000 }\n`,
  );
  return { dir, recipe: path.join(dir, 'r.yaml') };
}

const checkpointsOf = (dir: string) => {
  const runs = path.join(dir, 'runs');
  const run = readdirSync(runs)[0]!;
  const ckpt = path.join(runs, run, 'checkpoints');
  return existsSync(ckpt) ? readdirSync(ckpt).filter((n) => existsSync(path.join(ckpt, n, 'COMPLETE'))) : [];
};

/** `bsft run` on a pseudo-terminal, Ctrl-C typed `presses` times once training has started. */
function atTerminal(dir: string, recipe: string, presses: number, extra: string[] = []): { code: number; output: string } {
  // Ctrl-C once the progress line shows a step's loss; a second one once bsft says a second stops at once.
  const steps = [['loss ', '\u0003'], ['press Ctrl-C again', '\u0003']].slice(0, presses);
  const args = [path.join(FIXTURES, 'pty_script.py'), JSON.stringify(steps), process.execPath, BSFT, 'run', recipe, '--allow', ROOT, ...extra];
  const env = { ...process.env, BSFT_PYTHON: py!, BSFT_LOG_LEVEL: 'info', PTY_TIMEOUT_S: String(limit(180_000) / 1000) };
  return JSON.parse(execFileSync('python3', args, { cwd: dir, env, encoding: 'utf8', timeout: limit(200_000) }));
}

describe.skipIf(!py)('stopping bsft run (toy model on the CPU)', () => {
  it('Ctrl-C at a terminal: the trainer checkpoints, bsft says so and exits 130', () => {
    const { dir, recipe } = longRun();
    const res = atTerminal(dir, recipe, 1, ['--set', 'name=ctrlc']);
    // on a terminal: one progress line redrawn in place (bar, step/total, rate, loss), not a log block per step
    expect(res.output).toMatch(/\r\x1b\[Ktrain +\[[#-]+\] +\d+\/\d+ +\d+%.* loss \d+\.\d{4}/);
    expect(res.output).not.toContain('trainer step');
    expect(res.output).toContain('bsft run: SIGINT: stopping. The trainer finishes its step and writes a checkpoint');
    expect(res.output).toMatch(/bsft run: stopped \(kept: checkpoint step \d+\)/);
    // the exact command, --set flags included: following the hint continues this run, not another
    expect(res.output).toContain(`run the same command again to continue: bsft run ${recipe} --allow ${ROOT} --set name=ctrlc`);
    expect(readdirSync(path.join(dir, 'runs'))[0]).toMatch(/^ctrlc-/);
    expect(res.code).toBe(130);
    expect(checkpointsOf(dir).length).toBe(1);
    // The user's own stop, in the run's record and in bsft runs: how far it got, and how it was stopped.
    const runDir = path.join(dir, 'runs', readdirSync(path.join(dir, 'runs'))[0]!);
    const train = JSON.parse(readFileSync(path.join(runDir, 'run.json'), 'utf8')).steps.find((s: { step: string }) => s.step === 'train');
    expect(train).toMatchObject({ state: 'stopped', message: 'stopped by Ctrl-C' });
    const step = Number(checkpointsOf(dir)[0]!.replace('step-', ''));
    const runs = execFileSync(process.execPath, [BSFT, 'runs', '--dir', path.join(dir, 'runs')], { encoding: 'utf8', env: { ...process.env, REDIS_URL: 'redis://127.0.0.1:1' } });
    expect(runs).toMatch(new RegExp(`trained ${step} of 400 steps \\(checkpoint ${step}\\), stopped by Ctrl-C`));
    expect(runs).not.toMatch(/predicted|preempted/);
  }, limit(240_000));

  it('a second Ctrl-C stops at once and says what is lost', () => {
    const { dir, recipe } = longRun();
    const res = atTerminal(dir, recipe, 2);
    expect(res.output).toContain('bsft run: stopping at once.');
    expect(res.output).not.toMatch(/failed/); // the user's own stop is not a failure
    expect(res.output).toMatch(/train .*stopped \(at once, as asked\)/);
    expect(res.output).toMatch(/stopped at once: the training since the last checkpoint is lost \(kept: (no checkpoint yet|checkpoint step \d+)\)/);
    expect(res.code).toBe(130);
    const left = execFileSync('ps', ['-eo', 'args'], { encoding: 'utf8' }).split('\n').filter((l) => l.includes(path.join(dir, 'runs')));
    expect(left).toEqual([]); // no trainer outlives bsft run
  }, limit(240_000));

  it('SIGTERM (no terminal): checkpoint, then exit 143', async () => {
    const { dir, recipe } = longRun();
    const child = execa(process.execPath, [BSFT, 'run', recipe, '--allow', ROOT], {
      cwd: dir,
      reject: false,
      env: { BSFT_PYTHON: py!, BSFT_LOG_LEVEL: 'info' },
    });
    let stderr = '';
    await new Promise<void>((resolve) => {
      child.stderr!.on('data', (d: Buffer) => {
        stderr += d.toString();
        if (stderr.includes('"event":"step"')) resolve();
      });
    });
    process.kill(child.pid!, 'SIGTERM'); // as a service manager would (execa's own kill() would mark it "killed")
    const res = await child;
    expect(res.exitCode).toBe(143);
    expect(String(res.stderr)).toMatch(/bsft run: stopped \(kept: checkpoint step \d+\)/);
    expect(checkpointsOf(dir).length).toBe(1);
  }, limit(240_000));

  it('SIGTERM during predict: the chunk in hand finishes, bsft says what is kept, and the same command continues there', async () => {
    const dir = mkdtempSync(path.join(tmpdir(), 'bsft-stop-'));
    // Replies one prompt at a time: 61 chunks, each long enough (25 tokens) to be in hand when the signal comes.
    writeFileSync(path.join(dir, 'r.yaml'), `extends: ${path.join(FIXTURES, 'recipes', 'toy-run.yaml')}\nname: stop-predict\neval: { max_new_tokens: 25, batch_size: 1 }\n`);
    const args = [BSFT, 'run', path.join(dir, 'r.yaml'), '--allow', ROOT];
    const env = { BSFT_PYTHON: py!, BSFT_LOG_LEVEL: 'info' };
    const child = execa(process.execPath, args, { cwd: dir, reject: false, env });
    let stderr = '';
    await new Promise<void>((resolve) => {
      child.stderr!.on('data', (d: Buffer) => {
        stderr += d.toString();
        if ((stderr.match(/"event":"progress"/g) ?? []).length >= 2) resolve();
      });
    });
    process.kill(child.pid!, 'SIGTERM');
    const res = await child;
    expect(res.exitCode).toBe(143);
    const kept = /bsft run: stopped \(kept: checkpoint step 3, (\d+) chunk\(s\) of test\.jsonl\)/.exec(String(res.stderr));
    expect(kept, String(res.stderr).slice(-2000)).not.toBeNull();
    // The trainer's own lines are debug logs of bsft run.
    const again = await execa(process.execPath, args, { cwd: dir, reject: false, env: { ...env, BSFT_LOG_LEVEL: 'debug' } });
    expect(again.exitCode, String(again.stderr).slice(-2000)).toBe(0);
    expect(String(again.stderr)).toContain(`continuing after ${kept![1]} of 61 chunks`);
    expect(String(again.stdout)).toMatch(/train +skipped/);
  }, limit(300_000));
});
