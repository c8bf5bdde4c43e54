/** Contract 5: one queue per stage; a submitted run is a flow score <- train <- build. */
export const STAGES = ['build', 'train', 'score'] as const;
export type Stage = (typeof STAGES)[number];

export function queueName(stage: Stage): string {
  return `bsft-${stage}`;
}

/** BullMQ key prefix; BSFT_QUEUE_PREFIX separates deployments (and test runs) sharing one Redis. */
export function queuePrefix(): string {
  return process.env.BSFT_QUEUE_PREFIX || 'bull';
}

/** Redis keys and channels of bsft itself (next to BullMQ's). */
export const keys = {
  cancelChannel: () => `${queuePrefix()}:bsft:cancel`,
  cancelled: (runId: string) => `${queuePrefix()}:bsft:cancelled:${runId}`,
  /** The fencing epoch of a run: INCR each time a worker takes its train job. */
  epoch: (runId: string) => `${queuePrefix()}:bsft:epoch:${runId}`,
  /** Held (SET NX) for a moment by the one `bsft submit` that creates a run, so concurrent submits agree. */
  submitting: (runId: string) => `${queuePrefix()}:bsft:submitting:${runId}`,
  /** A queued sweep's record (JSON): its points and their run ids. */
  sweep: (name: string) => `${queuePrefix()}:bsft:sweep:${name}`,
  /** Sorted set of the queued sweeps' names, scored by creation time. */
  sweeps: () => `${queuePrefix()}:bsft:sweeps`,
};
