import type { RunView } from './runs.js';

/** What a second submit of a run says: where the run stands and what to do about it (the submit itself does nothing). */
export function alreadySubmitted(runId: string, view: RunView | undefined): string {
  const state = view?.state ?? 'waiting';
  switch (state) {
    case 'failed': {
      const stage = Object.entries(view!.stages).find(([, s]) => s === 'failed')?.[0] ?? 'a stage';
      return (
        `run ${runId} failed at ${stage}${view!.failedReason ? `: ${view!.failedReason.split('\n')[0]}` : ''}\n` +
        `  submitting it again does nothing (same run id). ${retryHint(stage)}: bsft retry ${runId}`
      );
    }
    case 'cancelled':
      return `run ${runId} was cancelled; bring it back with: bsft retry ${runId} (or start it afresh: bsft rm ${runId}, then submit)`;
    case 'completed':
      return `run ${runId} has already completed; its results: bsft report ${runId}`;
    default:
      return `run ${runId} is already in the queue (${state}); nothing to do. Watch it with: bsft watch ${runId}`;
  }
}

/** What `bsft retry` does for a failed stage. */
export function retryHint(stage: string): string {
  if (stage === 'build') return 'fix the task data, then run the build again';
  if (stage === 'train') return 'training resumes from its newest checkpoint';
  return `${stage} runs again`;
}
