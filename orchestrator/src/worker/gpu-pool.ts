/**
 * The GPUs of one worker (`bsft worker --gpus 0,1,2,3`), handed to train jobs by their recipe's `resources.gpus`
 * (an elastic run, `resources.min_gpus`: the most it can have, down to its minimum): each running trainer gets its own
 * GPUs as CUDA_VISIBLE_DEVICES, and no GPU is given twice.
 *
 * The rule against starving a big job: when a job finds too few GPUs free, it holds a reservation (the first such
 * job; the others wait behind it). While the reservation stands, a smaller job may start only if the GPUs left free
 * after it still cover the reserved job, so running jobs drain until the big one fits; smaller jobs keep flowing on
 * the GPUs the big job cannot use anyway. A reservation lapses when its job has not come back for `holdMs` (another
 * worker took it, or it was cancelled).
 */
export interface Reservation {
  jobId: string;
  need: number;
  until: number;
}

export type Grant = { gpus: string[] } | { wait: string };

export class GpuPool {
  private readonly free: string[];
  private reservation: Reservation | undefined;

  constructor(
    readonly ids: string[],
    private readonly holdMs = 60_000,
  ) {
    if (new Set(ids).size !== ids.length) throw new Error(`--gpus lists a GPU twice: ${ids.join(',')}`);
    this.free = [...ids];
  }

  get size(): number {
    return this.ids.length;
  }

  get freeCount(): number {
    return this.free.length;
  }

  /**
   * GPUs for a job now, or why it must wait. `need`: its one GPU count, or the counts an elastic run may train on
   * (ascending): it gets the largest that is free and leaves a standing reservation covered; it waits (and reserves)
   * for the smallest. A job needing more than the pool has must be refused before.
   */
  take(jobId: string, need: number | number[], now = Date.now()): Grant {
    const wanted = typeof need === 'number' ? [need] : need;
    const min = wanted[0]!;
    const counts = wanted.filter((n) => n <= this.size);
    if (counts.length === 0) throw new Error(`a job needing ${min} GPUs cannot run on a worker with ${this.size}`);
    const free = this.free.length;
    const held = this.reservation && this.reservation.until > now ? this.reservation : undefined;
    const other = held && held.jobId !== jobId ? held : undefined;
    if (other && free - min < other.need) {
      return { wait: `${min} GPU${min > 1 ? 's' : ''}: ${other.need} held for ${other.jobId} (${free} of ${this.size} free)` };
    }
    if (free < min) {
      if (!other) this.reservation = { jobId, need: min, until: now + this.holdMs };
      return { wait: `${min} free GPUs (${free} of ${this.size} free)` };
    }
    if (held?.jobId === jobId) this.reservation = undefined;
    const n = [...counts].reverse().find((c) => c <= free && (!other || free - c >= other.need))!;
    const ordered = this.ids.filter((id) => this.free.includes(id)).slice(0, n);
    for (const id of ordered) this.free.splice(this.free.indexOf(id), 1);
    return { gpus: ordered };
  }

  /**
   * Holds `need` GPUs back for `jobId` for `holdMs` (a gathering gang's machine: gang.ts), unless another job's
   * reservation stands; renewing one's own reservation extends it.
   */
  reserve(jobId: string, need: number, holdMs: number, now = Date.now()): void {
    const held = this.reserved(now);
    if (held && held.jobId !== jobId) return;
    this.reservation = { jobId, need: Math.min(need, this.size), until: now + holdMs };
  }

  release(gpus: string[]): void {
    for (const id of gpus) if (this.ids.includes(id) && !this.free.includes(id)) this.free.push(id);
  }

  /** The reservation standing now, if any (for logs and tests). */
  reserved(now = Date.now()): Reservation | undefined {
    return this.reservation && this.reservation.until > now ? this.reservation : undefined;
  }
}
