import type { Job } from 'bullmq';

/** Job log lines are JSON (one event each) so `bsft logs` can print them and tools can parse them. */
export async function logJobEvent(job: Job, record: Record<string, unknown>): Promise<void> {
  await job.log(JSON.stringify({ t: new Date().toISOString(), ...record }));
}
