import { describe, expect, it } from 'vitest';
import { alreadySubmitted, retryHint } from '../src/queue/advice.js';
import type { RunView } from '../src/queue/runs.js';

/** Issue 18: what a second submit and a retry say, by where the run stands. */

const view = (state: RunView['state'], stages: RunView['stages'], failedReason?: string): RunView =>
  ({ runId: 'r-1', state, stages, submittedAt: 0, attempts: 1, ...(failedReason ? { failedReason } : {}) }) as RunView;

describe('messages for runs already submitted', () => {
  it('a failed build: says it failed, why, and to fix the data and retry', () => {
    const text = alreadySubmitted('r-1', view('failed', { build: 'failed', train: 'waiting-children' }, '2 problem(s) in the task data\n  a.jsonl:3 ...'));
    expect(text).toBe(
      'run r-1 failed at build: 2 problem(s) in the task data\n  submitting it again does nothing (same run id). fix the task data, then run the build again: bsft retry r-1',
    );
    expect(text).not.toContain('nothing to do');
  });

  it('a failed training resumes from its checkpoint; cancelled, completed and queued runs say so', () => {
    expect(alreadySubmitted('r-1', view('failed', { build: 'completed', train: 'failed' }))).toContain('training resumes from its newest checkpoint: bsft retry r-1');
    expect(alreadySubmitted('r-1', view('cancelled', {}))).toBe('run r-1 was cancelled; bring it back with: bsft retry r-1 (or start it afresh: bsft rm r-1, then submit)');
    expect(alreadySubmitted('r-1', view('completed', {}))).toBe('run r-1 has already completed; its results: bsft report r-1');
    expect(alreadySubmitted('r-1', view('training', { train: 'active' }))).toBe('run r-1 is already in the queue (training); nothing to do. Watch it with: bsft watch r-1');
  });

  it('retry says what running each stage again means', () => {
    expect(retryHint('train')).toBe('training resumes from its newest checkpoint');
    expect(retryHint('score')).toBe('score runs again');
  });
});
