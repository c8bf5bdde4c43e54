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
  /** A run across machines (resources.nodes > 1): its gang's record (hash: epoch, endpoint, state, joined:<node>, ...). */
  gang: (runId: string) => `${queuePrefix()}:bsft:gang:${runId}`,
  /** Set (with a time to live) by each machine of a gang while its worker is alive and holds its job. */
  gangAlive: (runId: string, epoch: number, node: number) => `${queuePrefix()}:bsft:gang:${runId}:${epoch}:alive:${node}`,
  /** The workers that hold GPUs back for a gathering gang (a set, as many as it still needs machines). */
  gangPledges: (runId: string, epoch: number) => `${queuePrefix()}:bsft:gang:${runId}:${epoch}:pledged`,
  /** The one run across machines gathering its machines now (SET NX with a time to live): gangs form one at a time. */
  gangForming: () => `${queuePrefix()}:bsft:gang-forming`,
};

/** The job id of machine `node` (1 .. nodes-1) of a run's gang `epoch`, in the train queue ("@": never in a run id). */
export function nodeJobId(runId: string, epoch: number, node: number): string {
  return `${runId}@${epoch}.${node}`;
}

/** Whether a train-queue job id is a gang member's (nodeJobId), not a run's. */
export function isNodeJobId(id: string): boolean {
  return id.includes('@');
}
