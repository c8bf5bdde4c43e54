import { spawn } from 'node:child_process';
import { existsSync, mkdtempSync, readdirSync, rmSync, utimesSync, writeFileSync } from 'node:fs';
import { hostname, tmpdir } from 'node:os';
import path from 'node:path';
import { describe, expect, it } from 'vitest';
import { withLock, type LockHolder } from '../src/util/file-lock.js';
import { bsft, BSFT, ROOT } from './helpers/cli.js';
import { limit } from './helpers/time-scale.js';

/** The pid of a process that has exited (and been reaped). */
async function deadPid(): Promise<number> {
  const p = spawn('true');
  await new Promise((r) => p.once('exit', r));
  return p.pid!;
}

describe('file locks (one build of a folder at a time)', () => {
  it("a lock whose holder on this machine is gone is taken over, and said so; an empty old one too; a live holder's is waited for", async () => {
    const dir = mkdtempSync(path.join(tmpdir(), 'bsft-lock-'));
    const target = path.join(dir, 'dataset');
    const taken: Array<LockHolder | undefined> = [];
    const onTakeOver = (h: LockHolder | undefined) => taken.push(h);
    const dead = { pid: await deadPid(), host: hostname(), since: new Date().toISOString() };
    writeFileSync(`${target}.lock`, JSON.stringify(dead));
    expect(await withLock(target, async () => 'built', { onTakeOver, pollMs: 20 })).toBe('built');
    expect(taken).toEqual([dead]);
    expect(existsSync(`${target}.lock`)).toBe(false);

    // Created, never written (killed between open and write), and old: taken over. A fresh empty one is being written.
    writeFileSync(`${target}.lock`, '');
    const old = (Date.now() - 60_000) / 1000;
    utimesSync(`${target}.lock`, old, old);
    expect(await withLock(target, async () => 'again', { onTakeOver, pollMs: 20 })).toBe('again');
    expect(taken).toHaveLength(2);
    expect(taken[1]).toBeUndefined();

    // A live holder (this process, as another would be): waited for until it lets go.
    writeFileSync(`${target}.lock`, JSON.stringify({ pid: process.pid, host: hostname(), since: new Date().toISOString() }));
    const waited: LockHolder[] = [];
    setTimeout(() => rmSync(`${target}.lock`), 400);
    const started = Date.now();
    expect(await withLock(target, async () => 'last', { onWait: (h) => waited.push(h), onTakeOver, pollMs: 20 })).toBe('last');
    expect(Date.now() - started).toBeGreaterThanOrEqual(350);
    expect(waited.map((h) => h.pid)).toEqual([process.pid]);
    expect(taken).toHaveLength(2);
  });

  it('kill -9 of a build that holds its lock: the same command takes the lock over, says so, and builds', async () => {
    const runs = mkdtempSync(path.join(tmpdir(), 'bsft-lock-build-'));
    const args = ['dataset', 'build', 'recipes/smoke.yaml', '--allow', runs, '--set', `store.path=${runs}`];
    const child = spawn(process.execPath, [BSFT, ...args], { cwd: ROOT, stdio: 'ignore', env: { ...process.env, BSFT_LOG_LEVEL: 'info' } });
    const lock = () => (existsSync(runs) ? readdirSync(runs).map((d) => path.join(runs, d, 'dataset.lock')).find(existsSync) : undefined);
    const end = Date.now() + limit(60_000);
    while (!lock() && Date.now() < end && child.exitCode === null) await new Promise((r) => setTimeout(r, 5));
    expect(lock(), 'the build took its lock').toBeDefined();
    child.kill('SIGKILL');
    await new Promise((r) => child.once('exit', r));
    const left = lock();
    expect(left).toBeDefined(); // what a kill -9 leaves
    const again = await bsft(args, { env: { BSFT_LOG_LEVEL: 'info' } });
    expect(again.code, again.stderr).toBe(0);
    expect(again.stderr).toMatch(/took over .*dataset\.lock: (the build of .* that held it is gone|left empty by a process killed as it took it)/);
    expect(again.stdout).toMatch(/built: .*dataset/);
    expect(existsSync(left!)).toBe(false);
  }, limit(120_000));
});
