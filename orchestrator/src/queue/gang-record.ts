import type { Redis } from 'ioredis';
import { keys } from './names.js';

/** The record of a run's gang in Redis, as machines of a run across machines (worker/gang.ts) and `bsft status` read it. */
export type GangState = 'forming' | 'running' | 'broken' | 'ended' | 'dissolved';

/** How a machine's trainer ended, as it reported it. */
export interface NodeReport {
  worker: string;
  exit: number | null;
  outcome: string;
  message?: string;
}

export interface GangRecord {
  epoch: number;
  nodes: number;
  /** GPUs of each machine (resources.gpus). */
  gpus: number;
  endpoint: string;
  state: GangState;
  /** Why the gang broke or dissolved, and whether a machine was lost or failed (worker/gang.ts GangProblem). */
  why?: string;
  cause?: 'lost' | 'failed';
  /** The worker of each machine that joined (0: the run's own job). */
  joined: Record<number, string>;
  reports: Record<number, NodeReport>;
}

export async function readGang(redis: Redis, runId: string): Promise<GangRecord | undefined> {
  const h = await redis.hgetall(keys.gang(runId));
  if (!h.epoch) return undefined;
  const joined: Record<number, string> = {};
  const reports: Record<number, NodeReport> = {};
  for (const [k, v] of Object.entries(h)) {
    if (k.startsWith('joined:')) joined[Number(k.slice(7))] = v;
    if (k.startsWith('report:')) reports[Number(k.slice(7))] = JSON.parse(v) as NodeReport;
  }
  return { epoch: Number(h.epoch), nodes: Number(h.nodes), gpus: Number(h.gpus ?? 1), endpoint: h.endpoint ?? '', state: h.state as GangState, ...(h.why ? { why: h.why } : {}),
    ...(h.cause === 'lost' || h.cause === 'failed' ? { cause: h.cause } : {}), joined, reports };
}
