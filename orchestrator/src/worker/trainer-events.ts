import { z } from 'zod';

/** Contract 4: the trainer's stdout carries only these events, one JSON object per line. */
export const trainerEventSchema = z.discriminatedUnion('event', [
  z.object({ event: z.literal('start'), total_steps: z.number().int().nonnegative(), resumed_from_step: z.number().int().nonnegative(), world_size: z.number().int().positive() }),
  z.object({ event: z.literal('step'), step: z.number().int(), loss: z.number(), lr: z.number(), grad_norm: z.number(), tokens_per_s: z.number(), mem_gib: z.number(), mem_alloc_gib: z.number().optional() }),
  z.object({ event: z.literal('eval'), step: z.number().int(), loss: z.number() }),
  /** size_bytes and save_s: what the checkpoint weighs and how long it took to write (not in older trainers). */
  z.object({ event: z.literal('checkpoint'), step: z.number().int(), path: z.string(), size_bytes: z.number().int().nonnegative().optional(), save_s: z.number().nonnegative().optional() }),
  /** predict: documents done out of total. */
  z.object({ event: z.literal('progress'), done: z.number().int(), total: z.number().int() }),
  z.object({ event: z.literal('done'), final_path: z.string() }),
  z.object({ event: z.literal('error'), kind: z.enum(['config', 'data', 'oom', 'disk', 'internal']), message: z.string() }),
]);

export type TrainerEvent = z.infer<typeof trainerEventSchema>;

/** The trainer's commands the orchestrator runs (Contract 4; `merge` is a user's). */
export type TrainerCommand = 'train' | 'predict' | 'judge';

/**
 * Contract 4 exit codes. leaseLost: the trainer lost its lease, or a newer attempt owns the run (it wrote nothing).
 * diskFull: this machine's disk is full (nothing half-written stays); the job goes to another worker.
 */
export const TRAINER_EXIT = { done: 0, invalid: 2, diskFull: 74, preempted: 75, leaseLost: 76 } as const;

export type TrainerOutcome = 'done' | 'invalid' | 'disk-full' | 'preempted' | 'lease-lost' | 'failed';

export function outcomeOf(exitCode: number | undefined): TrainerOutcome {
  if (exitCode === TRAINER_EXIT.done) return 'done';
  if (exitCode === TRAINER_EXIT.invalid) return 'invalid';
  if (exitCode === TRAINER_EXIT.preempted) return 'preempted';
  if (exitCode === TRAINER_EXIT.leaseLost) return 'lease-lost';
  if (exitCode === TRAINER_EXIT.diskFull) return 'disk-full';
  return 'failed';
}

/** Parses one stdout line; undefined for a line that is not a valid event. */
export function parseEvent(line: string): TrainerEvent | undefined {
  try {
    const parsed = trainerEventSchema.safeParse(JSON.parse(line));
    return parsed.success ? parsed.data : undefined;
  } catch {
    return undefined;
  }
}
