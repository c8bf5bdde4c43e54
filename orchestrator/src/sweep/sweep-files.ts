import { existsSync, mkdirSync, readdirSync, readFileSync, renameSync, writeFileSync } from 'node:fs';
import path from 'node:path';
import type { Redis } from 'ioredis';
import { InputError } from '../errors.js';
import { keys } from '../queue/names.js';
import type { SweepRecord } from './resolve-sweep.js';

/** Where a sweep's record lives: `<runs>/_sweeps/<name>.json`, beside the runs it names. */
export const sweepFile = (runsDir: string, name: string) => path.join(runsDir, '_sweeps', `${name}.json`);

/** Writes the record whole (beside, then renamed). */
export function writeSweep(record: SweepRecord): string {
  const file = sweepFile(record.runs_dir, record.name);
  mkdirSync(path.dirname(file), { recursive: true });
  writeFileSync(`${file}.tmp`, `${JSON.stringify(record, null, 2)}\n`);
  renameSync(`${file}.tmp`, file);
  return file;
}

/** The sweeps recorded in a runs folder, by name. */
export function localSweeps(runsDir: string): string[] {
  const dir = path.join(runsDir, '_sweeps');
  return existsSync(dir) ? readdirSync(dir).filter((f) => f.endsWith('.json')).map((f) => f.slice(0, -5)).sort() : [];
}

export function readSweep(runsDir: string, name: string): SweepRecord {
  const file = sweepFile(runsDir, name);
  if (!existsSync(file)) {
    const known = localSweeps(runsDir);
    throw new InputError(`no sweep ${name} in ${runsDir}${known.length ? ` (sweeps there: ${known.join(', ')})` : ' (no sweeps there; --runs-dir names another runs folder)'}`);
  }
  return JSON.parse(readFileSync(file, 'utf8')) as SweepRecord;
}

/**
 * The record to write where one may exist under the name already: the same points (the same command again) are the
 * same sweep, which keeps its creation time; other points cannot replace it (the report would mix two sweeps).
 */
export function sameSweep(existing: SweepRecord | undefined, record: SweepRecord): SweepRecord {
  if (!existing) return record;
  const ids = (r: SweepRecord) => r.points.map((p) => p.run_id).join(',');
  if (ids(existing) !== ids(record)) {
    throw new InputError(`sweep ${record.name} already exists with other points (${existing.points.length} points, created ${existing.created_at}): choose another --name`);
  }
  return { ...record, created_at: existing.created_at };
}

/** The record of a queued sweep in Redis (any machine's `bsft status --sweep` reads it) and the list of sweeps. */
export async function saveQueuedSweep(redis: Redis, record: SweepRecord): Promise<void> {
  await redis.multi().set(keys.sweep(record.name), JSON.stringify(record)).zadd(keys.sweeps(), Date.parse(record.created_at), record.name).exec();
}

export async function queuedSweep(redis: Redis, name: string): Promise<SweepRecord | undefined> {
  const text = await redis.get(keys.sweep(name));
  return text ? (JSON.parse(text) as SweepRecord) : undefined;
}

/** Removes a queued sweep's record and its name from the list. */
export async function forgetQueuedSweep(redis: Redis, name: string): Promise<void> {
  await redis.multi().del(keys.sweep(name)).zrem(keys.sweeps(), name).exec();
}

/** The queued sweeps' names, newest first. */
export async function queuedSweeps(redis: Redis, limit = 20): Promise<string[]> {
  return redis.zrevrange(keys.sweeps(), 0, limit - 1);
}

/** A queued sweep by name, or an error naming the sweeps there are. */
export async function findQueuedSweep(redis: Redis, name: string): Promise<SweepRecord> {
  const found = await queuedSweep(redis, name);
  if (found) return found;
  const known = await queuedSweeps(redis);
  throw new InputError(`no sweep ${name} in the queue${known.length ? ` (sweeps: ${known.join(', ')})` : ''}`);
}
