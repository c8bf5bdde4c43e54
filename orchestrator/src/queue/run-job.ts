import { Job, Queue, Worker, type JobJson } from 'bullmq';

/**
 * Jobs whose stored data is not JSON, readable all the same. BullMQ parses a job's `data` from Redis whenever it
 * reads the job; text that is not JSON (written to Redis by hand, or by a broken client) made that parse throw: in
 * a worker before its processor ran, so the job stayed active until the stall checker moved it back, again and
 * again, with no failed reason; in `bsft status` and the other readers, which then failed. A RunJob's data is then
 * `{ [UNPARSEABLE]: what is wrong }` (never the text itself): the worker fails the job at once (`unparseableJob`)
 * and readers show it. RunWorker and RunQueue are BullMQ's classes with RunJob for Job.
 */
export class RunJob extends Job {
  static override fromJSON<T = unknown, R = unknown, N extends string = string>(queue: Parameters<typeof Job.fromJSON>[0], json: JobJson, jobId?: string): Job<T, R, N> {
    try {
      return super.fromJSON<T, R, N>(queue, json, jobId);
    } catch (e) {
      if (!(e instanceof SyntaxError)) throw e;
      return super.fromJSON<T, R, N>(queue, { ...json, data: JSON.stringify({ [UNPARSEABLE]: describe(json.data) }) }, jobId);
    }
  }
}

// Job's constructor is generic over its progress type, which a subclass cannot restate: the class is the same.
const RUN_JOB = RunJob as unknown as typeof Job;

export class RunWorker<DataType = unknown, ResultType = unknown> extends Worker<DataType, ResultType> {
  protected override get Job(): typeof Job {
    return RUN_JOB;
  }
}

export class RunQueue<DataType = unknown> extends Queue<DataType> {
  protected override get Job(): typeof Job {
    return RUN_JOB;
  }
}

/** The key of the data a RunJob has when its stored data could not be parsed. */
export const UNPARSEABLE = '__bsft_unparseable__';

/** What is wrong with the data, without quoting it (it may hold anything). */
function describe(text: string): string {
  let where = '';
  try {
    JSON.parse(text);
  } catch (e) {
    const at = /at position (\d+)/.exec((e as Error).message);
    if (at) where = `, the error at character ${at[1]}`;
  }
  return `job data is not valid JSON (${Buffer.byteLength(text)} bytes${where})`;
}

/** Why a job's stored data could not be read (a RunJob's marker), or undefined for a readable job. */
export function unparseableJob(data: unknown): string | undefined {
  if (data === null || typeof data !== 'object' || !(UNPARSEABLE in data)) return undefined;
  return String((data as Record<string, unknown>)[UNPARSEABLE]);
}
