import { CancelledError, DiskFullError, PreemptedError, TrainerFailedError, TrainerInputError } from '../errors.js';
import type { TrainerCommand } from '../worker/trainer-events.js';
import type { TrainerRun } from './host.js';

/**
 * How a trainer run ended, as the one mapping both `bsft run` and the queue use (Contract 4 exit codes plus the
 * host's own stops): returns for a finished run, else throws CancelledError, TrainerInputError (exit 2, never
 * retried), DiskFullError (exit 74: this machine's disk), PreemptedError (resume from the checkpoint) or
 * TrainerFailedError (retryable).
 */
export function checkTrainerRun(command: TrainerCommand, run: TrainerRun): void {
  if (run.stopReason === 'cancel') throw new CancelledError();
  if (run.outcome === 'done' && run.finalPath !== undefined) return;
  if (run.stopReason === 'node-lost') throw new PreemptedError('node lost', run.nodeLost);
  if (run.outcome === 'invalid') {
    throw new TrainerInputError(`trainer ${command}: ${run.error?.kind ?? 'invalid'} error: ${run.error?.message ?? run.stderrTail.slice(-3).join(' ')}`);
  }
  if (run.outcome === 'disk-full') throw new DiskFullError(`trainer ${command}: ${run.error?.message ?? 'no space left on the disk of the run'}`);
  if (run.outcome === 'preempted' || run.stopReason === 'shutdown') throw new PreemptedError(run.stopReason === 'shutdown' ? 'worker shutdown' : 'preempted');
  const next = run.lostLock ?? 'the job runs again from its newest checkpoint if attempts remain';
  if (run.outcome === 'lease-lost') {
    throw new TrainerFailedError(`trainer ${command} stopped: its lease ran out (this worker could not confirm it still holds the job) or a newer attempt owns the run; ${next}`);
  }
  if (run.stopReason === 'lost-lock') throw new TrainerFailedError(`trainer ${command} stopped: ${next}`);
  if (run.stopReason === 'silent') throw new TrainerFailedError(`trainer ${command} emitted no event for ${Math.round((run.silenceMs ?? 0) / 1000)} s and was stopped`);
  const why = run.error ? `${run.error.kind}: ${run.error.message}` : run.outcome === 'done' ? 'exited 0 without a done event' : run.stderrTail.slice(-5).join(' | ');
  throw new TrainerFailedError(`trainer ${command} failed (exit ${run.exitCode ?? run.signal}): ${why}`);
}
