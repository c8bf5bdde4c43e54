import { execFileSync } from 'node:child_process';
import { mkdtempSync, readdirSync } from 'node:fs';
import { tmpdir } from 'node:os';
import path from 'node:path';
import { describe, expect, it } from 'vitest';
import { BSFT, bsft, FIXTURES, ROOT } from './helpers/cli.js';
import { torchPython } from './helpers/python.js';
import { limit } from './helpers/time-scale.js';

/** Issue 32: `bsft chat` talks to a trained run at a terminal (here the bsft-toy model on the CPU, through a pty). */

const py = torchPython();

function atTerminal(steps: [string, string][], args: string[], env: Record<string, string>): { code: number; steps: number; output: string } {
  const typed = steps.map(([wait, line]) => [wait, `${line}\r`]); // each line and Enter
  return JSON.parse(execFileSync('python3', [path.join(FIXTURES, 'pty_script.py'), JSON.stringify(typed), process.execPath, BSFT, ...args], {
    cwd: ROOT, env: { ...process.env, ...env, PTY_TIMEOUT_S: String(limit(120_000) / 1000) }, encoding: 'utf8', timeout: limit(180_000),
  }));
}

describe.skipIf(!py)('bsft chat (toy model on the CPU, at a pseudo-terminal)', () => {
  it('shows the chosen behavior, steers with /force, speaks as another participant, resets and quits', async () => {
    const runs = mkdtempSync(path.join(tmpdir(), 'bsft-chat-'));
    const env = { BSFT_PYTHON: py!, BSFT_LOG_LEVEL: 'warn' };
    const trained = await bsft(['run', path.join(FIXTURES, 'recipes', 'toy-run.yaml'), '--allow', runs, '--set', `store.path=${runs}`], { env });
    expect(trained.code, trained.stderr).toBe(0);
    const runDir = path.join(runs, readdirSync(runs)[0]!);
    const before = readdirSync(runDir).sort();

    const res = atTerminal([
      ['ready on cpu', '/help'],
      ['/help, /quit', '/force proactive'],
      ['the next reply is forced to proactive', 'What should we do now?'],
      ['tok/s)', '/as Dr. Patel'],
      ['Dr. Patel> ', 'Potassium came back at 6.9'],
      ['tok/s)', '/force nonsense'],
      ['unknown behavior "nonsense"', '/reset'],
      ['(conversation reset)', '/quit'],
    ], ['chat', runDir, '--max-new-tokens', '6'], env);
    expect(res.steps, res.output).toBe(8);
    expect(res.code, res.output).toBe(0);
    // the forced reply says so; the free one shows the behavior its first token chose
    expect(res.output).toMatch(/What should we do now\?\r*\n\[proactive, forced\] [\s\S]*?\n\(\d tokens, [\d.]+ tok\/s\)/);
    // A free reply also shows how sure the model was: the three behavior tokens' probabilities at its first position.
    const free = /Potassium came back at 6\.9\r*\n\[(reactive|proactive|restraint|no behavior token) \| reactive (\d\.\d\d) proactive (\d\.\d\d) restraint (\d\.\d\d)\] [\s\S]*?\n\(\d tokens/.exec(res.output);
    expect(free, res.output).not.toBeNull();
    expect(Math.abs(Number(free![2]) + Number(free![3]) + Number(free![4]) - 1)).toBeLessThanOrEqual(0.02);
    expect(res.output).toContain('(speaking as Dr. Patel)');
    expect(res.output).toContain('one of reactive, proactive, restraint');
    expect(readdirSync(runDir).sort()).toEqual(before); // chat writes nothing into the run

    // An offset of +100 on the proactive token's logit: every free reply steps in, and chat says the point it applies.
    const shifted = atTerminal([['ready on cpu', 'Potassium came back at 6.9'], ['tok/s)', '/quit']], ['chat', runDir, '--max-new-tokens', '2', '--offset', 'proactive=100'], env);
    expect(shifted.code, shifted.output).toBe(0);
    expect(shifted.output).toContain('(operating point: proactive +100 on the behavior tokens\' logits)');
    expect(shifted.output).toMatch(/Potassium came back at 6\.9\r*\n\[proactive \| /);
    expect((await bsft(['chat', runDir, '--offset', 'bold=1'], { env })).stderr).toMatch(/--offset bold=1: expected behavior=number/);

    const untrained = await bsft(['chat', path.join(runs, 'nope')], { env });
    expect(untrained.code).toBe(2);
    expect(untrained.stderr).toContain('no run');
  }, limit(300_000));
});
