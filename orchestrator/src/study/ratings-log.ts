import { createHash } from 'node:crypto';
import { closeSync, existsSync, fdatasyncSync, ftruncateSync, openSync, readFileSync, writeSync } from 'node:fs';
import { InputError } from '../errors.js';
import { studyFile, type Rating } from './study-files.js';

/**
 * The ratings of a study: an append-only log, one record per line, `<json>\t<first 16 hex of its sha256>`. A rating
 * is acknowledged only after its line is written and fsynced, so a server killed at any moment (kill -9, power)
 * keeps every acknowledged rating. A line cut short by the kill (no newline: never acknowledged) is dropped when the
 * log is opened; a complete line whose checksum fails is damage, and opening the log says where.
 * The same rating sent twice (a page retrying after a lost answer) is stored once, by `rating_id`; a rater who
 * answers a pair again replaces their earlier answer (the newest line counts).
 */
export class RatingsLogError extends InputError {}

const checksum = (json: string) => createHash('sha256').update(json).digest('hex').slice(0, 16);

export function formatRecord(r: Rating): string {
  const json = JSON.stringify(r);
  return `${json}\t${checksum(json)}\n`;
}

interface Parsed {
  ratings: Rating[];
  /** Bytes of the complete lines (a torn tail starts here). */
  goodBytes: number;
  tornBytes: number;
}

function parse(file: string): Parsed {
  if (!existsSync(file)) return { ratings: [], goodBytes: 0, tornBytes: 0 };
  const buf = readFileSync(file);
  const end = buf.lastIndexOf(0x0a) + 1;
  const ratings: Rating[] = [];
  let line = 0;
  for (const text of buf.subarray(0, end).toString('utf8').split('\n').slice(0, -1)) {
    line++;
    const tab = text.lastIndexOf('\t');
    const json = tab < 0 ? '' : text.slice(0, tab);
    if (tab < 0 || checksum(json) !== text.slice(tab + 1)) throw new RatingsLogError(`${file}:${line}: checksum does not match: the log is damaged at this line (earlier lines are intact)`);
    ratings.push(JSON.parse(json) as Rating);
  }
  return { ratings, goodBytes: end, tornBytes: buf.length - end };
}

/** Every stored rating of a log, read only (a torn tail is left alone). */
export function readRatingsLog(file: string): Rating[] {
  return parse(file).ratings;
}

/** The rating that counts for each rater and pair: the newest line. */
export function latestRatings(all: Rating[]): Rating[] {
  const latest = new Map<string, Rating>();
  for (const r of all) latest.set(`${r.rater}\0${r.item}`, r);
  return [...latest.values()];
}

/** The ratings that count in a study folder, read only. */
export function studyRatings(dir: string): Rating[] {
  return latestRatings(readRatingsLog(studyFile(dir, 'ratings.log')));
}

export class RatingsLog {
  private readonly byId = new Map<string, Rating>();
  private readonly all: Rating[] = [];

  private constructor(private readonly fd: number, ratings: Rating[], readonly droppedTornBytes: number) {
    for (const r of ratings) this.remember(r);
  }

  /** Opens the log for appending (one writer: the caller holds the study's lock), cutting off a torn last line. */
  static open(file: string): RatingsLog {
    const { ratings, goodBytes, tornBytes } = parse(file);
    const fd = openSync(file, 'a+');
    if (tornBytes) {
      ftruncateSync(fd, goodBytes);
      fdatasyncSync(fd);
    }
    return new RatingsLog(fd, ratings, tornBytes);
  }

  private remember(r: Rating): void {
    this.byId.set(r.rating_id, r);
    this.all.push(r);
  }

  /** Stores a rating durably; `stored` is false when the same rating_id is already there (nothing written). */
  append(r: Rating): { stored: boolean; rating: Rating } {
    const known = this.byId.get(r.rating_id);
    if (known) return { stored: false, rating: known };
    const line = Buffer.from(formatRecord(r));
    let off = 0;
    while (off < line.length) off += writeSync(this.fd, line, off, line.length - off);
    fdatasyncSync(this.fd);
    this.remember(r);
    return { stored: true, rating: r };
  }

  /** The ratings that count (newest per rater and pair). */
  latest(): Rating[] {
    return latestRatings(this.all);
  }

  close(): void {
    closeSync(this.fd);
  }
}
