import type { Logger } from '../log.js';
import { ProgressLine } from '../util/progress.js';
import type { TrainerCommand, TrainerEvent } from '../worker/trainer-events.js';

export interface TrainerProgressOptions {
  /** A terminal: the line is redrawn in place and the events go to the log at debug level. */
  tty: boolean;
  columns?: number;
  write: (text: string) => void;
  log: Logger;
  /** Put before the stage on the line (a worker names the run). */
  prefix?: string;
}

/** The stage a trainer command shows: train, predict, or predict forced to one behavior. */
export function trainerStage(command: TrainerCommand, args: string[]): string {
  return command === 'predict' && args[0] === '--force' ? `predict (forced ${args[1]})` : command;
}

/**
 * A trainer's events as one progress line (bar, rate, ETA, loss, tok/s) with checkpoints and evals above it on a
 * terminal; elsewhere each event as a log record plus a sparse `progress` record with the rate and the ETA.
 * `bsft run` and `bsft worker` both show their trainers through this.
 */
export function trainerProgress(command: TrainerCommand, args: string[], opts: TrainerProgressOptions): { onEvent: (e: TrainerEvent) => void; bar: ProgressLine } {
  const { tty, log } = opts;
  const label = `${opts.prefix ? `${opts.prefix} ` : ''}${trainerStage(command, args)}`;
  const bar = new ProgressLine(label, command === 'train' ? 'step' : command === 'judge' ? 'reply' : 'task', opts.write, {
    tty,
    ...(opts.columns !== undefined ? { columns: opts.columns } : {}),
    record: (r) => log.info(r, 'progress'),
  });
  const onEvent = (e: TrainerEvent) => {
    if (tty) log.debug(e, `trainer ${e.event}`);
    else log.info(e, `trainer ${e.event}`);
    switch (e.event) {
      case 'start':
        bar.start(e.total_steps, e.resumed_from_step);
        if (e.resumed_from_step > 0) bar.note(`resumed from the checkpoint of step ${e.resumed_from_step}`);
        break;
      case 'step':
        bar.update(e.step, { loss: e.loss, tokens_per_s: e.tokens_per_s, mem_alloc_gib: e.mem_alloc_gib, mem_gib: e.mem_gib });
        break;
      case 'progress': // the first batch's event starts the line: its rate would include loading the model
        if (!bar.isStarted) bar.start(e.total, e.done);
        else bar.update(e.done);
        break;
      case 'eval':
        bar.note(`eval at step ${e.step}: val loss ${e.loss.toFixed(4)}`);
        break;
      case 'checkpoint':
        bar.note(`checkpoint at step ${e.step}: ${e.path}`);
        break;
      case 'done':
        bar.finish();
        break;
      case 'error':
        bar.finish(`${e.kind} error`);
        break;
    }
  };
  return { onEvent, bar };
}
