/**
 * A lease: something may run only while this worker can confirm, again and again, that it still owns a job. Every
 * `ms / 4` the worker asks `holds()` whether it owns the job for at least `ms` more (lock-lease.ts: the job's lock
 * in Redis); a trainer is sent each confirmation as a heartbeat, stamped with the monotonic time of the check
 * (lease.py ends it `ms` after the newest stamp, or at once when its stdin closes).
 */
export interface Lease {
  ms: number;
  holds(): Promise<boolean>;
}

/** A trainer, which ends itself when its lease runs out (lease.py), is killed this long after it should have. */
export const TRAINER_LAPSE_GRACE_MS = 1000;

export const monotonicMs = () => Number(process.hrtime.bigint() / 1_000_000n);

/**
 * Checks the lease every `ms / 4`: each confirmation goes to `onConfirmed` (with the monotonic time of the check),
 * and when none has come for `ms` + `graceMs`, `onLapse` runs once. Returns the function that stops it.
 */
export function watchLease(lease: Lease, onConfirmed: (checkedAt: number) => void, onLapse: () => void, graceMs = 0): () => void {
  let stopped = false;
  let busy = false;
  let lastStamp = monotonicMs();
  const check = async () => {
    if (stopped) return;
    if (monotonicMs() - lastStamp > lease.ms + graceMs) {
      stop();
      onLapse();
      return;
    }
    if (busy) return;
    busy = true;
    const checkedAt = monotonicMs();
    try {
      if ((await lease.holds()) && !stopped) {
        lastStamp = checkedAt;
        onConfirmed(checkedAt);
      }
    } catch {
      // Redis unreachable: no confirmation; the lease runs out unless a later check succeeds.
    } finally {
      busy = false;
    }
  };
  const timer = setInterval(() => void check(), Math.max(50, Math.floor(lease.ms / 4)));
  const stop = () => {
    stopped = true;
    clearInterval(timer);
  };
  void check();
  return stop;
}
