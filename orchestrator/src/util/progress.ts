import type { Logger } from '../log.js';

/**
 * One stage's live progress: a bar, done/total, rate and ETA, and the stage's own figures (loss, tok/s).
 *
 * On a terminal the line is redrawn in place; elsewhere (a log file, CI) a structured record goes to `record` at
 * most every tenth of the way or every 30 s, and at the end. The rate and the ETA come from the recent samples (the
 * last minute), not from the time since the start, so a resumed run or a slow first step does not skew them.
 */

/** What a non-terminal gets: numbers, not a drawing. */
export interface ProgressRecord {
  stage: string;
  done: number;
  total: number;
  rate_per_s?: number;
  eta_s?: number;
  [figure: string]: number | string | undefined;
}

export interface ProgressOptions {
  /** Redraw in place on `write` (a terminal), or send sparse records to `record`. */
  tty: boolean;
  record?: (r: ProgressRecord) => void;
  /** Terminal width for the bar (default 100). */
  columns?: number;
  now?: () => number;
}

const WINDOW_MS = 60_000;
const PLAIN_EVERY_MS = 30_000;

/** 42s, 3m05s, 1h02m. */
export function formatDuration(seconds: number): string {
  const s = Math.max(0, Math.round(seconds));
  if (s < 60) return `${s}s`;
  if (s < 3600) return `${Math.floor(s / 60)}m${String(s % 60).padStart(2, '0')}s`;
  return `${Math.floor(s / 3600)}h${String(Math.floor((s % 3600) / 60)).padStart(2, '0')}m`;
}

/** 2.5 step/s, or 4.1 s/step below one a second. */
export function formatRate(perSecond: number, unit: string): string {
  if (perSecond >= 1) return `${perSecond >= 100 ? Math.round(perSecond).toLocaleString('en') : perSecond.toFixed(1)} ${unit}/s`;
  return `${(1 / perSecond).toFixed(1)} s/${unit}`;
}

/** loss 2.3140, tok/s 8,041, mem 48.0 GiB (device memory in use), peak 61.2 GiB (its peak), or `name value`. */
function figure(name: string, value: number): string {
  if (name === 'loss') return `loss ${value.toFixed(4)}`;
  if (name === 'tokens_per_s') return `tok/s ${Math.round(value).toLocaleString('en')}`;
  if (name === 'mem_alloc_gib') return `mem ${formatGib(value)}`;
  if (name === 'mem_gib') return `peak ${formatGib(value)}`;
  return `${name} ${Number.isInteger(value) ? value : value.toPrecision(4)}`;
}

/** 61.2 GiB */
export function formatGib(gib: number): string {
  return `${gib.toFixed(1)} GiB`;
}

export class ProgressLine {
  private total = 0;
  private done = 0;
  private started = false;
  private samples: { t: number; done: number }[] = [];
  /** The newest update: the end of the rate's window. */
  private latest: { t: number; done: number } | undefined;
  private figures: Record<string, number> = {};
  private lastPlain = { t: 0, done: -1 };
  private drawn = false;
  private readonly now: () => number;

  constructor(
    private readonly label: string,
    private readonly unit: string,
    private readonly write: (text: string) => void,
    private readonly opts: ProgressOptions,
  ) {
    this.now = opts.now ?? Date.now;
  }

  get isStarted(): boolean {
    return this.started;
  }

  /** (Re)starts the line at `done` of `total`: the rate is measured from here. */
  start(total: number, done = 0): void {
    this.total = total;
    this.done = done;
    this.started = true;
    this.samples = [{ t: this.now(), done }];
    this.latest = this.samples[0];
    this.show(true);
  }

  /** `figures`: loss and tokens_per_s are shown as such, others as `name value`; an undefined one is not known yet. */
  update(done: number, figures: Record<string, number | undefined> = {}): void {
    if (!this.started) this.start(this.total, 0);
    this.done = done;
    for (const [k, v] of Object.entries(figures)) if (v !== undefined) this.figures[k] = v;
    const t = this.now();
    this.latest = { t, done };
    // The window keeps at most ten samples a second (thousands of ticks a second would make it the cost).
    if (t - this.samples[this.samples.length - 1]!.t >= 100) this.samples.push({ t, done });
    while (this.samples.length > 2 && t - this.samples[0]!.t > WINDOW_MS) this.samples.shift();
    this.show(false);
  }

  /** A terminal: a line of its own (a checkpoint, an eval) above the progress line. */
  note(text: string): void {
    if (!this.opts.tty) return;
    this.write(`${this.drawn ? '\r\x1b[K' : ''}${text}\n`);
    if (this.started) this.show(false);
  }

  /** The final state: on a terminal the line stays, with `suffix`; elsewhere a last record if it is new. */
  finish(suffix = ''): void {
    if (!this.started) return;
    if (this.opts.tty) this.write(`\r\x1b[K${this.render()}${suffix ? `  ${suffix}` : ''}\n`);
    else if (this.lastPlain.done !== this.done) this.emitRecord();
    this.started = false;
    this.drawn = false;
  }

  snapshot(): ProgressRecord {
    const rate = this.rate();
    return {
      stage: this.label,
      done: this.done,
      total: Math.max(this.total, this.done),
      ...(rate !== undefined ? { rate_per_s: Number(rate.toPrecision(4)), eta_s: Math.round((Math.max(this.total, this.done) - this.done) / rate) } : {}),
      ...this.figures,
    };
  }

  /** Units per second over the recent samples (undefined until two samples differ). */
  rate(): number | undefined {
    const first = this.samples[0];
    const last = this.latest;
    if (!first || !last || last.t <= first.t || last.done <= first.done) return undefined;
    return ((last.done - first.done) * 1000) / (last.t - first.t);
  }

  render(): string {
    const rate = this.rate();
    if (this.total <= 0) { // an unknown total: the count and the rate
      return [`${this.label.padEnd(8)} ${this.done} ${this.unit}`, ...(rate !== undefined ? [formatRate(rate, this.unit)] : [])].join('  ');
    }
    const total = Math.max(this.total, this.done);
    const share = total > 0 ? this.done / total : 0;
    const width = Math.max(10, Math.min(30, (this.opts.columns ?? 100) - 70));
    const filled = Math.round(share * width);
    const parts = [
      `${this.label.padEnd(8)} [${'#'.repeat(filled)}${'-'.repeat(width - filled)}]`,
      `${this.done}/${total} ${String(Math.floor(share * 100)).padStart(3)}%`,
    ];
    if (rate !== undefined) {
      parts.push(formatRate(rate, this.unit));
      if (this.done < total) parts.push(`ETA ${formatDuration((total - this.done) / rate)}`);
    }
    for (const [k, v] of Object.entries(this.figures)) parts.push(figure(k, v));
    return parts.join('  ');
  }

  private show(force: boolean): void {
    if (this.opts.tty) {
      this.write(`\r\x1b[K${this.render()}`);
      this.drawn = true;
      return;
    }
    const t = this.now();
    const tenth = this.total > 0 ? Math.max(1, Math.ceil(this.total / 10)) : Infinity;
    if (this.done === this.lastPlain.done) return;
    if (force || (this.total > 0 && this.done >= this.total) || this.done - this.lastPlain.done >= tenth || t - this.lastPlain.t >= PLAIN_EVERY_MS) this.emitRecord();
  }

  private emitRecord(): void {
    this.lastPlain = { t: this.now(), done: this.done };
    this.opts.record?.(this.snapshot());
  }
}

/** Long work inside a step (reading, tokenizing): a ProgressLine on stderr at a terminal, log records elsewhere. */
export interface Progress {
  /** `figures`: shown beside the rate (loss, tokens, ...). */
  tick(n?: number, figures?: Record<string, number>): void;
  /** Updates the total (when it becomes known). */
  setTotal(total: number): void;
  done(): void;
}

export function createProgress(label: string, opts: { total?: number; unit?: string; log?: Logger; stream?: NodeJS.WriteStream } = {}): Progress {
  const stream = opts.stream ?? process.stderr;
  const line: ProgressLine = new ProgressLine(label, opts.unit ?? 'items', (text) => stream.write(text), {
    tty: stream.isTTY === true,
    columns: stream.columns,
    record: (r) => opts.log?.info({ progress: r }, line.render()),
  });
  let done = 0;
  line.start(opts.total ?? 0);
  return {
    tick(n = 1, figures = {}) {
      done += n;
      line.update(done, figures);
    },
    setTotal(t) {
      line.start(t, done);
    },
    done() {
      line.finish();
    },
  };
}
