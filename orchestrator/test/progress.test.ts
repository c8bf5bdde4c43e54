import { describe, expect, it } from 'vitest';
import { formatDuration, formatRate, ProgressLine, type ProgressRecord } from '../src/util/progress.js';

/** A progress line on a fake clock, capturing what it writes and records. */
function line(tty: boolean) {
  let t = 0;
  const written: string[] = [];
  const records: ProgressRecord[] = [];
  const bar = new ProgressLine('train', 'step', (s) => written.push(s), { tty, columns: 100, now: () => t, record: (r) => records.push(r) });
  return { bar, written, records, tick: (ms: number) => (t += ms) };
}

describe('progress line', () => {
  it('redraws one line in place on a terminal: bar, done/total, rate, ETA, loss, tok/s and memory (now and peak) at sensible precision', () => {
    const { bar, written, tick } = line(true);
    bar.start(100);
    for (let s = 1; s <= 10; s++) {
      tick(2000);
      bar.update(s, { loss: 2.345678901234, tokens_per_s: 8041.2345, mem_alloc_gib: 48.04, mem_gib: 61.2345 });
    }
    const last = written[written.length - 1]!;
    expect(last.startsWith('\r\x1b[K')).toBe(true);
    expect(last).not.toContain('\n');
    expect(last).toBe('\r\x1b[Ktrain    [###---------------------------]  10/100  10%  2.0 s/step  ETA 3m00s  loss 2.3457  tok/s 8,041  mem 48.0 GiB  peak 61.2 GiB');
    bar.note('checkpoint at step 10: /runs/x/checkpoints/step-000010');
    expect(written.at(-2)).toBe('\r\x1b[Kcheckpoint at step 10: /runs/x/checkpoints/step-000010\n');
    expect(written.at(-1)).toMatch(/^\r\x1b\[Ktrain +\[/); // the line is drawn again below the note
    bar.finish();
    expect(written.at(-1)!.endsWith('\n')).toBe(true);
  });

  it('takes the rate and ETA from the recent steps: downtime before a resume and a slow start do not count', () => {
    const { bar, tick } = line(true);
    bar.start(1000, 400); // resumed at step 400 after a preemption
    tick(300_000); // the first step after the resume loads the model: slow
    bar.update(401);
    for (let s = 402; s <= 500; s++) {
      tick(1000);
      bar.update(s);
    }
    // the last minute: one step a second, 500 steps left
    expect(bar.rate()).toBeCloseTo(1, 5);
    expect(bar.render()).toContain('ETA 8m20s');
  });

  it('sends sparse structured records when not on a terminal: every tenth of the way, and the end', () => {
    const { bar, written, records, tick } = line(false);
    bar.start(100);
    for (let s = 1; s <= 100; s++) {
      tick(500);
      bar.update(s, { loss: 1 / s });
    }
    bar.finish();
    expect(written).toEqual([]);
    expect(records.map((r) => r.done)).toEqual([0, 10, 20, 30, 40, 50, 60, 70, 80, 90, 100]);
    expect(records[5]).toMatchObject({ stage: 'train', done: 50, total: 100, rate_per_s: 2, eta_s: 25, loss: 1 / 50 });
  });

  it('writes a record at least every 30 s when the steps are slow', () => {
    const { bar, records, tick } = line(false);
    bar.start(1000);
    for (let s = 1; s <= 20; s++) {
      tick(10_000);
      bar.update(s);
    }
    expect(records.map((r) => r.done)).toEqual([0, 3, 6, 9, 12, 15, 18]);
  });

  it('formats durations and rates', () => {
    expect([formatDuration(42), formatDuration(185), formatDuration(3725)]).toEqual(['42s', '3m05s', '1h02m']);
    expect([formatRate(2.5, 'step'), formatRate(0.25, 'step'), formatRate(1234.5, 'task')]).toEqual(['2.5 step/s', '4.0 s/step', '1,235 task/s']);
  });
});
