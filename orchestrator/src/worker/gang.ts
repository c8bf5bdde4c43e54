import net from 'node:net';
import { hostname } from 'node:os';
import type { Redis } from 'ioredis';
import type { RunJobData } from '../queue/job-data.js';
import { readGang, type GangRecord, type GangState, type NodeReport } from '../queue/gang-record.js';
import { keys, nodeJobId, queueName, queuePrefix } from '../queue/names.js';
import { RunQueue } from '../queue/run-job.js';
import type { TrainerResult } from './trainer-process.js';

/**
 * A run across machines (`resources.nodes` > 1) on the queue: a gang of workers, one per machine, that torchrun joins
 * into one run (c10d rendezvous). Nothing here schedules: BullMQ hands out the jobs, torchrun does the rendezvous.
 *
 * - The run's train job is the gang's machine 0. The worker that takes it (with its GPUs) waits until no machine of
 *   the run's previous gang is alive, records the gang (a new fencing epoch, the rendezvous endpoint: this machine's
 *   address and a free port) and adds one member job per other machine to the train queue, at the most urgent
 *   priority, so that the next free worker takes them before any other run. Gangs gather one at a time
 *   (`gangForming`), so two runs across machines never hold half of the machines each.
 * - A member job's worker takes its GPUs (or waits for them, reserving them as for any run) and joins. When all have
 *   joined, every machine starts `python -m bsft_trainer train` with torchrun's `--nnodes N --rdzv-backend c10d
 *   --rdzv-endpoint <endpoint> --rdzv-id <run id>-g<epoch>` (BSFT_TORCHRUN_ARGS) and the gang's epoch: the trainer
 *   refuses to publish for a stale one (fence.py).
 * - Each machine keeps a key alive in Redis while its worker holds its job (time to live: the worker's lock), and
 *   watches the others': a machine whose key lapses without a report (its worker died, or lost Redis), a newer gang,
 *   or a gang another machine found broken stops this machine's trainer at once. The run's job then goes back to
 *   waiting without using an attempt and resumes from its newest complete checkpoint on whatever machines gather next;
 *   a member job only ever ends (it is never retried: the run's job decides).
 * - A gang that does not gather within BSFT_GANG_FORM_MS (default 10 minutes) dissolves: its member jobs are
 *   removed, machine 0 gives its GPUs back and tries again a little later.
 */

/** Sets `fields` on the gang's record only while it is still gang `epoch` (a stale machine writes nothing). */
const SET_IF_EPOCH = `
if redis.call('HGET', KEYS[1], 'epoch') ~= ARGV[1] then return 0 end
for i = 2, #ARGV, 2 do redis.call('HSET', KEYS[1], ARGV[i], ARGV[i + 1]) end
return 1`;

/**
 * Joins machine ARGV[2] as worker ARGV[3] while gang ARGV[1] is still forming, with its alive key KEYS[2] (ARGV[4] ms):
 * in one step, so that no machine ever sees it joined without its key, and calls it lost.
 */
const JOIN = `
if redis.call('HGET', KEYS[1], 'epoch') ~= ARGV[1] or redis.call('HGET', KEYS[1], 'state') ~= 'forming' then return 0 end
redis.call('HSET', KEYS[1], 'joined:' .. ARGV[2], ARGV[3])
redis.call('SET', KEYS[2], ARGV[3], 'PX', tonumber(ARGV[4]))
return 1`;

/** Takes (or renews) the gathering slot KEYS[1] for run ARGV[1] for ARGV[2] ms; 0 when another run holds it. */
const HOLD_SLOT = `
local holder = redis.call('GET', KEYS[1])
if holder and holder ~= ARGV[1] then return 0 end
redis.call('SET', KEYS[1], ARGV[1], 'PX', tonumber(ARGV[2]))
return 1`;

async function setIfEpoch(redis: Redis, runId: string, epoch: number, fields: Record<string, string>): Promise<boolean> {
  return (await redis.eval(SET_IF_EPOCH, 1, keys.gang(runId), String(epoch), ...Object.entries(fields).flat())) === 1;
}

/** The address other machines reach this one at: BSFT_NODE_ADDR, else this machine's host name. */
export function nodeAddress(): string {
  return process.env.BSFT_NODE_ADDR || hostname();
}

/** A TCP port free on this machine now (the rendezvous store binds it a moment later). */
export function freePort(): Promise<number> {
  return new Promise((resolve, reject) => {
    const server = net.createServer();
    server.once('error', reject);
    server.listen(0, () => {
      const { port } = server.address() as net.AddressInfo;
      server.close(() => resolve(port));
    });
  });
}

/** torchrun's rendezvous options for one machine of gang `g` (BSFT_TORCHRUN_ARGS; machine 0 hosts the store). */
export function torchrunArgs(runId: string, g: Pick<GangRecord, 'epoch' | 'nodes' | 'endpoint'>, node: number): string {
  return `--nnodes ${g.nodes} --rdzv-backend c10d --rdzv-endpoint ${g.endpoint} --rdzv-id ${runId}-g${g.epoch} --rdzv-conf is_host=${node === 0 ? 1 : 0}`;
}

const sleep = (ms: number) => new Promise((r) => setTimeout(r, ms));

/**
 * Why a gang is lost to a machine: `lost`, a machine gone without a report (killed, frozen, cut off; or a newer gang
 * took the run), the run goes back to waiting as after a preemption; `failed`, a machine's trainer failed, a retryable
 * failure of the run (it uses an attempt).
 */
export interface GangProblem {
  why: string;
  cause: 'lost' | 'failed';
}

export interface GangOptions {
  redis: Redis;
  runId: string;
  epoch: number;
  node: number;
  worker: string;
  /** How long a machine's alive key lives without renewal (the worker's lock duration). */
  aliveMs: number;
}

/**
 * One machine of one gang: from `start()` it renews its alive key and checks the gang every aliveMs / 4 while it is a
 * current member; `watch` tells when the gang is lost to it. `current` is false from the moment it is not: the
 * trainer's lease then stops confirming too.
 */
export class GangNode {
  current = true;
  /** Why the gang was lost to this machine, once it was. */
  lost: GangProblem | undefined;
  private timer: NodeJS.Timeout | undefined;
  private onLost: ((problem: GangProblem) => void) | undefined;
  private busy = false;

  constructor(readonly o: GangOptions) {}

  private get aliveKey(): string {
    return keys.gangAlive(this.o.runId, this.o.epoch, this.o.node);
  }

  async beat(): Promise<void> {
    if (this.current) await this.o.redis.set(this.aliveKey, this.o.worker, 'PX', this.o.aliveMs);
  }

  /** Why this machine must stop now, or undefined while its gang stands: checks the record (`read`: as just read) and
   * every joined machine. */
  async problem(read?: GangRecord): Promise<GangProblem | undefined> {
    const { redis, runId, epoch, node } = this.o;
    const g = read ?? (await readGang(redis, runId));
    if (!g || g.epoch !== epoch) return { why: `a newer gang (epoch ${g?.epoch ?? '?'}) owns the run`, cause: 'lost' };
    if (g.state === 'broken' || g.state === 'dissolved') return { why: g.why ?? `the gang ${g.state}`, cause: g.cause ?? 'lost' };
    if (g.state === 'ended') return undefined; // machine 0's trainer finished: the run is trained
    // A machine whose trainer failed: the others' ranks would wait for its ranks in a collective. (One that stopped
    // after a checkpoint, 75, stopped with all of them: every rank agreed on the step.)
    const failed = Object.entries(g.reports).find(([k, r]) => Number(k) !== node && r.outcome !== 'done' && r.outcome !== 'preempted');
    if (failed) return { why: `machine ${failed[0]} of the run (worker ${failed[1].worker}) ended: ${failed[1].message ?? `${failed[1].outcome}, exit ${failed[1].exit}`}`, cause: 'failed' };
    const others = Object.keys(g.joined).map(Number).filter((k) => k !== node && g.reports[k] === undefined);
    if (others.length === 0) return undefined;
    const alive = await redis.mget(...others.map((k) => keys.gangAlive(runId, epoch, k)));
    const lost = others.find((_k, i) => alive[i] === null);
    // Its report may have landed between the two reads: read it again before calling the machine lost.
    if (lost !== undefined && (await redis.hexists(keys.gang(runId), `report:${lost}`)) === 0) {
      return { why: `machine ${lost} of the run (worker ${g.joined[lost]}) was lost: its worker stopped renewing its place in the gang for ${this.o.aliveMs / 1000} s`, cause: 'lost' };
    }
    return undefined;
  }

  /** Renews and checks every aliveMs / 4 until the machine reports or ends (from when it joins the gang). */
  start(): void {
    this.timer ??= setInterval(() => void this.tick(), Math.max(50, Math.floor(this.o.aliveMs / 4)));
    void this.tick();
  }

  /** One renewal; on a problem, marks the gang broken (so that the other machines stop at once) and says so once. */
  private async tick(): Promise<void> {
    if (this.busy || !this.current) return;
    this.busy = true;
    try {
      const problem = await this.problem();
      if (problem) {
        this.current = false;
        this.lost = problem;
        clearInterval(this.timer);
        await setIfEpoch(this.o.redis, this.o.runId, this.o.epoch, { state: 'broken', ...problem }).catch(() => undefined);
        this.onLost?.(problem);
      } else {
        await this.beat();
      }
    } catch {
      // Redis unreachable: no renewal; the other machines see this one lapse, the trainer's lease runs out.
    } finally {
      this.busy = false;
    }
  }

  /** Calls `onLost` (at once when the gang is lost already) when the gang is lost to this machine. Returns the
   * function that stops telling. */
  watch(onLost: (problem: GangProblem) => void): () => void {
    if (this.lost !== undefined) onLost(this.lost);
    else this.onLost = onLost;
    return () => {
      this.onLost = undefined;
    };
  }

  /** This machine's trainer ended: its report for the others, then its alive key goes. */
  async report(res: Pick<TrainerResult, 'exitCode' | 'outcome' | 'error'>): Promise<void> {
    clearInterval(this.timer);
    const report: NodeReport = { worker: this.o.worker, exit: res.exitCode ?? null, outcome: res.outcome, ...(res.error ? { message: `${res.error.kind}: ${res.error.message}` } : {}) };
    await setIfEpoch(this.o.redis, this.o.runId, this.o.epoch, { [`report:${this.o.node}`]: JSON.stringify(report) }).catch(() => undefined);
    this.current = false;
    await this.o.redis.del(this.aliveKey).catch(() => undefined);
  }

  /**
   * After machine 0's trainer ended without finishing: the other machines' reports, waiting up to aliveMs for each
   * joined one to report or lapse. Returns the lost machines and the reports.
   */
  async othersEnded(): Promise<{ lost: string[]; reports: Record<number, NodeReport> }> {
    const { redis, runId, epoch } = this.o;
    const deadline = Date.now() + this.o.aliveMs + 1000;
    for (;;) {
      const g = await readGang(redis, runId);
      if (!g || g.epoch !== epoch) return { lost: [], reports: {} };
      const open = Object.keys(g.joined).map(Number).filter((k) => k !== this.o.node && g.reports[k] === undefined);
      const alive = open.length ? await redis.mget(...open.map((k) => keys.gangAlive(runId, epoch, k))) : [];
      const lost = open.filter((_k, i) => alive[i] === null);
      if (lost.length === open.length || Date.now() > deadline) {
        return { lost: lost.map((k) => `machine ${k} (worker ${g.joined[k]})`), reports: g.reports };
      }
      await sleep(200);
    }
  }

  async end(state: Exclude<GangState, 'forming' | 'running'>, why?: string): Promise<void> {
    clearInterval(this.timer);
    this.current = false;
    await setIfEpoch(this.o.redis, this.o.runId, this.o.epoch, { state, ...(why ? { why } : {}) }).catch(() => undefined);
    await this.o.redis.del(this.aliveKey).catch(() => undefined);
  }
}

/** The gang gathered; or the run waits (why, for bsft status); or machine 0 was cancelled or is shutting down. */
export type FormResult = { gang: GangNode; args: string } | { wait: string } | { stopped: 'cancel' | 'shutdown' };

export interface FormOptions {
  redis: Redis;
  data: RunJobData;
  epoch: number;
  worker: string;
  aliveMs: number;
  /** How long machine 0 waits for the others before the gang dissolves (BSFT_GANG_FORM_MS). */
  formMs: number;
  /** Checked while waiting: a cancel or this worker's shutdown ends the wait (the gang dissolves). */
  stopped(): Promise<'cancel' | 'shutdown' | undefined>;
  log: (record: Record<string, unknown>) => Promise<void>;
  /** What the run waits for while its gang gathers (for bsft status); undefined once it trains. */
  waiting?: (what: string | undefined) => Promise<void>;
}

/** Machine 0 (the run's train job): gathers the gang (see the top of this file). */
export async function formGang(o: FormOptions): Promise<FormResult> {
  const { redis, data, epoch } = o;
  const runId = data.run_id;
  const nodes = data.recipe.resources.nodes;
  // One gang gathers at a time: machines held by two half-gathered runs would wait on each other.
  // The slot lives one lock duration unless renewed: a machine 0 that dies while gathering frees it that soon.
  const slot = keys.gangForming();
  const holdSlot = async () => (await redis.eval(HOLD_SLOT, 1, slot, runId, String(o.aliveMs + 1000))) === 1;
  if (!(await holdSlot())) return { wait: `its machines: another run across machines (${await redis.get(slot)}) is gathering its own` };
  // No machine of the previous gang may still train: its alive keys lapse within aliveMs once it sees the new epoch.
  const previous = await readGang(redis, runId);
  // Machine 0 joins with its record, its alive key with it (see JOIN).
  await redis.multi().del(keys.gang(runId)).hset(keys.gang(runId), { epoch: String(epoch), nodes: String(nodes), endpoint: `${nodeAddress()}:${await freePort()}`, state: 'forming', gpus: String(data.recipe.resources.gpus), 'joined:0': o.worker })
    .set(keys.gangAlive(runId, epoch, 0), o.worker, 'PX', o.aliveMs).exec();
  const gang = new GangNode({ redis, runId, epoch, node: 0, worker: o.worker, aliveMs: o.aliveMs });
  gang.start();
  if (previous) {
    const old = Array.from({ length: previous.nodes }, (_, k) => keys.gangAlive(runId, previous.epoch, k));
    const until = Date.now() + o.aliveMs + 1000;
    while ((await redis.exists(...old)) > 0 && Date.now() < until) await sleep(100);
  }
  const record = (await readGang(redis, runId))!;
  await o.log({ event: 'gang', epoch, nodes, endpoint: record.endpoint, worker: o.worker });
  const queue = new RunQueue<RunJobData>(queueName('train'), { connection: redis, prefix: queuePrefix() });
  const memberIds = Array.from({ length: nodes - 1 }, (_, i) => nodeJobId(runId, epoch, i + 1));
  const dissolve = async (why: string) => {
    await gang.end('dissolved', why);
    for (const id of memberIds) await (await queue.getJob(id))?.remove().catch(() => undefined); // a member at work ends by itself
    if ((await redis.get(slot)) === runId) await redis.del(slot);
  };
  try {
    const { progress: _p, waiting_for: _w, preemptions: _n, disk_full: _d, ...base } = data;
    for (let node = 1; node < nodes; node++) {
      await queue.add('train', { ...base, node, gang_epoch: epoch }, {
        jobId: nodeJobId(runId, epoch, node), priority: 1, attempts: 1,
        removeOnComplete: { age: 24 * 3600 }, removeOnFail: { age: 24 * 3600 },
      });
    }
    const since = Date.now();
    const told = new Set<number>([0]);
    for (;;) {
      const stop = await o.stopped();
      if (stop) {
        await dissolve(stop === 'cancel' ? 'cancelled' : 'machine 0 shut down while the gang gathered');
        return { stopped: stop };
      }
      await holdSlot();
      const g = await readGang(redis, runId);
      if (!g || g.epoch !== epoch) return { wait: 'its machines: a newer gang took the run' };
      const problem = await gang.problem(g); // a machine that joined and left, or was lost
      if (problem) {
        await dissolve(problem.why);
        return { wait: `its machines: ${problem.why}` };
      }
      let news = told.size === 1;
      for (const k of Object.keys(g.joined).map(Number)) {
        if (!told.has(k)) {
          told.add(k);
          news = true;
          await o.log({ event: 'node-joined', epoch, node: k, worker: g.joined[k] });
        }
      }
      if (told.size === nodes) break;
      if (news) await o.waiting?.(`its machines: ${told.size} of ${nodes} joined (${Object.values(g.joined).join(', ')})`);
      if (Date.now() - since > o.formMs) {
        const have = told.size;
        await dissolve(`${have} of ${nodes} machines joined within ${Math.round(o.formMs / 1000)} s`);
        return { wait: `${nodes - have} more machine(s) with ${data.recipe.resources.gpus} free GPU(s): ${have} of ${nodes} joined within ${Math.round(o.formMs / 1000)} s` };
      }
      await sleep(250);
    }
    await setIfEpoch(redis, runId, epoch, { state: 'running' });
    await o.waiting?.(undefined);
    if ((await redis.get(slot)) === runId) await redis.del(slot);
    return { gang, args: torchrunArgs(runId, record, 0) };
  } catch (e) {
    await dissolve(`machine 0 failed while the gang gathered: ${(e as Error).message}`).catch(() => undefined);
    throw e;
  } finally {
    await queue.close();
  }
}

/** Machine `node` joins gang `epoch` in its record, with its alive key (JOIN); false when that gang no longer forms. */
export async function joinRecord(redis: Redis, runId: string, epoch: number, node: number, worker: string, aliveMs: number): Promise<boolean> {
  return (await redis.eval(JOIN, 2, keys.gang(runId), keys.gangAlive(runId, epoch, node), String(epoch), String(node), worker, String(aliveMs))) === 1;
}

/**
 * A member job: joins its gang and waits until every machine has joined. Returns undefined when the gang is gone (a
 * stale member job: it ends), else the machine's gang and torchrun options.
 */
export async function joinGang(o: { redis: Redis; data: RunJobData; worker: string; aliveMs: number; stopped(): Promise<unknown> }): Promise<{ gang: GangNode; args: string } | undefined> {
  const { redis, data } = o;
  const runId = data.run_id;
  const epoch = data.gang_epoch!;
  const node = data.node!;
  if (!(await joinRecord(redis, runId, epoch, node, o.worker, o.aliveMs))) return undefined;
  const gang = new GangNode({ redis, runId, epoch, node, worker: o.worker, aliveMs: o.aliveMs });
  gang.start();
  for (;;) {
    const g = await readGang(redis, runId);
    const problem = g && (await gang.problem(g));
    if (!g || problem || (await o.stopped())) {
      await gang.end('dissolved', problem?.why ?? `machine ${node} (worker ${o.worker}) left while the gang gathered`).catch(() => undefined);
      return undefined;
    }
    if (g.state === 'running') return { gang, args: torchrunArgs(runId, g, node) };
    await sleep(200);
  }
}

/** The run across machines gathering now (the slot's holder): its epoch, GPUs per machine, the machines it still needs
 * and the workers that joined; undefined when none gathers. */
export async function gathering(redis: Redis): Promise<{ runId: string; epoch: number; gpus: number; missing: number; workers: string[] } | undefined> {
  const runId = await redis.get(keys.gangForming());
  const g = runId ? await readGang(redis, runId) : undefined;
  if (!runId || !g || g.state !== 'forming') return undefined;
  const workers = Object.values(g.joined);
  return { runId, epoch: g.epoch, gpus: g.gpus, missing: g.nodes - workers.length, workers };
}

/** Adds worker ARGV[1] to the pledges KEYS[1] when it is there already or fewer than ARGV[2] have pledged. */
const PLEDGE = `
if redis.call('SISMEMBER', KEYS[1], ARGV[1]) == 1 then return 1 end
if redis.call('SCARD', KEYS[1]) >= tonumber(ARGV[2]) then return 0 end
redis.call('SADD', KEYS[1], ARGV[1])
redis.call('PEXPIRE', KEYS[1], tonumber(ARGV[3]))
return 1`;

/**
 * Whether `worker` holds GPUs back for the gathering gang: the first `missing` workers that could host one of its
 * machines (and are not in it) pledge, so that smaller runs do not take what the gang waits for, on as many workers
 * as it still needs and no more (a pledge lives as long as the gathering may).
 */
export async function pledge(redis: Redis, g: { runId: string; epoch: number; missing: number }, worker: string, ttlMs: number): Promise<boolean> {
  return (await redis.eval(PLEDGE, 1, keys.gangPledges(g.runId, g.epoch), worker, String(g.missing), String(ttlMs))) === 1;
}
