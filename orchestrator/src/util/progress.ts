import type { Logger } from '../log.js';

export interface Progress {
  tick(n?: number): void;
  /** Updates the total (when it becomes known). */
  setTotal(total: number): void;
  done(): void;
}

function duration(s: number): string {
  if (!Number.isFinite(s)) return '?';
  if (s < 60) return `${Math.round(s)}s`;
  if (s < 3600) return `${Math.floor(s / 60)}m${String(Math.round(s % 60)).padStart(2, '0')}s`;
  return `${Math.floor(s / 3600)}h${String(Math.floor((s % 3600) / 60)).padStart(2, '0')}m`;
}

/** `label [#####.....] 120/630 19%  45.2/s  ETA 11s` for a known total, or the count and rate otherwise. */
export function formatProgress(label: string, done: number, total: number | undefined, seconds: number, unit: string): string {
  const rate = seconds > 0 ? done / seconds : 0;
  const rateText = `${rate >= 100 ? Math.round(rate) : rate.toFixed(1)} ${unit}/s`;
  if (!total) return `${label} ${done} ${unit}  ${rateText}`;
  const frac = Math.min(1, done / total);
  const width = 24;
  const bar = '#'.repeat(Math.round(frac * width)).padEnd(width, '.');
  const eta = rate > 0 ? (total - done) / rate : Infinity;
  return `${label} [${bar}] ${done}/${total} ${Math.floor(frac * 100)}%  ${rateText}  ETA ${duration(eta)}`;
}

/**
 * Progress for long work: a redrawn bar on a terminal (stderr), a log line every few seconds otherwise.
 */
export function createProgress(label: string, opts: { total?: number; unit?: string; log?: Logger; stream?: NodeJS.WriteStream } = {}): Progress {
  const stream = opts.stream ?? process.stderr;
  const unit = opts.unit ?? 'items';
  const tty = stream.isTTY === true;
  let total = opts.total;
  let done = 0;
  const started = performance.now();
  let last = 0;
  const draw = (final: boolean) => {
    const now = performance.now();
    if (!final && now - last < (tty ? 100 : 5000)) return;
    last = now;
    const line = formatProgress(label, done, total, (now - started) / 1000, unit);
    if (tty) stream.write(`\r\x1b[2K${line}${final ? '\n' : ''}`);
    else opts.log?.info({ progress: { label, done, total } }, line);
  };
  return {
    tick(n = 1) {
      done += n;
      draw(false);
    },
    setTotal(t) {
      total = t;
    },
    done() {
      draw(true);
    },
  };
}
