import { createReadStream } from 'node:fs';
import path from 'node:path';
import { createGunzip } from 'node:zlib';
import type { z } from 'zod';
import type { DataProblem } from './data-error.js';

/** How files are named in problems: relative to the current directory, as a user types them. */
export const displayPath = (file: string) => path.relative(process.cwd(), file) || file;

export function fieldPath(p: readonly PropertyKey[]): string {
  return p.map((x, i) => (typeof x === 'number' ? `[${x}]` : `${i ? '.' : ''}${String(x)}`)).join('');
}

export interface JsonlRecord<T> {
  value: T;
  line: number;
  /** The file as problems name it. */
  file: string;
  /** Records a problem of this line (field path, message). */
  problem(field: string, message: string): void;
}

export interface JsonlLimits {
  /** Longest line read, in bytes; longer lines are reported and skipped without being held in memory. */
  maxLineBytes: number;
  /** Longest string field, in UTF-8 bytes. */
  maxFieldBytes: number;
}

/** The defaults of `data.max_line_bytes` and `data.max_field_bytes` (Contract 1). */
export const DEFAULT_LIMITS: JsonlLimits = { maxLineBytes: 4 * 1024 * 1024, maxFieldBytes: 1024 * 1024 };

const mib = (bytes: number) => `${+(bytes / 1024 / 1024).toFixed(2)} MiB`;

interface RawLine {
  bytes: Buffer;
  /** Bytes of the whole line when it was over the limit (then `bytes` is empty). */
  oversize?: number;
}

/**
 * Splits a byte stream into lines without ever holding more than `max` bytes of one line: a longer line is
 * counted and skipped. A leading UTF-8 byte-order mark (as Python's `utf-8-sig` reads) and a trailing CR go.
 */
async function* byteLines(input: AsyncIterable<Buffer>, max: number): AsyncGenerator<RawLine> {
  let parts: Buffer[] = [];
  let held = 0;
  let skipped = 0;
  let first = true;
  const finish = (): RawLine => {
    let bytes = Buffer.concat(parts);
    if (first && bytes[0] === 0xef && bytes[1] === 0xbb && bytes[2] === 0xbf) bytes = bytes.subarray(3);
    first = false;
    if (bytes.at(-1) === 0x0d) bytes = bytes.subarray(0, -1);
    const line: RawLine = skipped ? { bytes: Buffer.alloc(0), oversize: skipped } : { bytes };
    parts = [];
    held = 0;
    skipped = 0;
    return line;
  };
  for await (const chunk of input) {
    let start = 0;
    for (;;) {
      const nl = chunk.indexOf(0x0a, start);
      const piece = chunk.subarray(start, nl < 0 ? chunk.length : nl);
      if (skipped) skipped += piece.length;
      else if (held + piece.length > max) {
        skipped = held + piece.length;
        parts = [];
        held = 0;
      } else {
        parts.push(piece);
        held += piece.length;
      }
      if (nl < 0) break;
      yield finish();
      start = nl + 1;
    }
  }
  if (held || skipped) yield finish();
}

// ignoreBOM: a byte-order mark is kept (byteLines drops the file's first one; one anywhere else is an error).
const utf8 = new TextDecoder('utf-8', { fatal: true, ignoreBOM: true });
/** A UTF-16 surrogate without its pair: JSON allows it (`"\\ud800"`), Unicode text does not. */
const LONE_SURROGATE = /[\ud800-\udbff](?![\udc00-\udfff])|(?<![\ud800-\udbff])[\udc00-\udfff]/;

/** Every string of a parsed line (keys too), with its field path. */
function* strings(value: unknown, at: PropertyKey[] = []): Generator<[PropertyKey[], string]> {
  if (typeof value === 'string') yield [at, value];
  else if (Array.isArray(value)) for (const [i, v] of value.entries()) yield* strings(v, [...at, i]);
  else if (value && typeof value === 'object') {
    for (const [k, v] of Object.entries(value)) {
      yield [[...at, k], k];
      yield* strings(v, [...at, k]);
    }
  }
}

/** Byte offset of the first invalid UTF-8 sequence (overlong forms and encoded surrogates included). */
function firstInvalidUtf8(b: Buffer): number {
  for (let i = 0; i < b.length; ) {
    const x = b[i]!;
    const tail = x < 0x80 ? 0 : x >= 0xc2 && x <= 0xdf ? 1 : x >= 0xe0 && x <= 0xef ? 2 : x >= 0xf0 && x <= 0xf4 ? 3 : -1;
    if (tail < 0 || i + tail >= b.length) return i;
    try {
      utf8.decode(b.subarray(i, i + tail + 1));
    } catch {
      return i;
    }
    i += tail + 1;
  }
  return -1;
}

/** A line that is not UTF-8: the message names the bytes, and the field they land in when decoded leniently. */
function invalidUtf8(bytes: Buffer): [string, string] {
  const at = firstInvalidUtf8(bytes);
  const seq = [...bytes.subarray(at, at + 4)].map((b) => b.toString(16).padStart(2, '0')).join(' ');
  const message = `invalid UTF-8 (bytes ${seq} at byte ${at} of the line); the file must be UTF-8`;
  try {
    const lenient = JSON.parse(new TextDecoder().decode(bytes)) as unknown;
    for (const [field, s] of strings(lenient)) if (s.includes('\ufffd')) return [fieldPath(field), message];
  } catch {
    // not JSON either: the line is named without a field
  }
  return ['', message];
}

/**
 * Streams a JSONL file (`.gz` too) and yields the lines that parse and match `schema`. Bad JSON, invalid UTF-8,
 * lone surrogates, over-long lines and fields and schema issues are added to `problems`, each with file, line and
 * field path; blank lines are skipped. Problems never quote the line's content.
 */
export async function* readJsonl<S extends z.ZodType>(
  file: string,
  schema: S,
  problems: DataProblem[],
  onLine?: () => void,
  limits: JsonlLimits = DEFAULT_LIMITS,
): AsyncGenerator<JsonlRecord<z.infer<S>>> {
  const shown = displayPath(file);
  const raw = createReadStream(file);
  const input = file.endsWith('.gz') ? raw.pipe(createGunzip()) : raw;
  let line = 0;
  try {
    for await (const { bytes, oversize } of byteLines(input, limits.maxLineBytes)) {
      line++;
      onLine?.();
      const n = line;
      const problem = (field: string, message: string) => problems.push({ file: shown, line: n, field, message });
      if (oversize) {
        problem('', `line is ${mib(oversize)}, over the limit of ${mib(limits.maxLineBytes)} (data.max_line_bytes)`);
        continue;
      }
      let text: string;
      try {
        text = utf8.decode(bytes);
      } catch {
        problem(...invalidUtf8(bytes));
        continue;
      }
      if (!text.trim()) continue;
      if (text.charCodeAt(0) === 0xfeff) {
        problem('', 'starts with a byte-order mark (U+FEFF), which is allowed only at the start of the file');
        continue;
      }
      let json: unknown;
      try {
        json = JSON.parse(text);
      } catch (e) {
        problem('', `invalid JSON: ${jsonErrorWithoutText((e as Error).message)}`);
        continue;
      }
      let bad = false;
      for (const [at, s] of strings(json)) {
        const lone = LONE_SURROGATE.exec(s);
        if (lone) {
          problem(fieldPath(at), `lone surrogate U+${lone[0].charCodeAt(0).toString(16).toUpperCase()} (not valid Unicode text)`);
          bad = true;
        } else if (s.length > limits.maxFieldBytes / 3 && Buffer.byteLength(s) > limits.maxFieldBytes) {
          problem(fieldPath(at), `${mib(Buffer.byteLength(s))}, over the limit of ${mib(limits.maxFieldBytes)} (data.max_field_bytes)`);
          bad = true;
        }
      }
      if (bad) continue;
      const parsed = schema.safeParse(json);
      if (!parsed.success) {
        for (const issue of parsed.error.issues) problem(fieldPath(issue.path), issue.message.replace(/^Invalid input: /, ''));
        continue;
      }
      yield { value: parsed.data, line: n, file: shown, problem };
    }
  } catch (e) {
    problems.push({ file: shown, line: line + 1, field: '', message: `cannot read: ${(e as Error).message}` });
  }
}

/**
 * JSON.parse's message without the text it quotes (`Unexpected token 'r', "root:x:0:0"... is not valid JSON`):
 * errors reach logs and the queue's failedReason, which must never carry a file's contents.
 */
export function jsonErrorWithoutText(message: string): string {
  const quoted = /^Unexpected token .*? is not valid JSON$/s.test(message);
  return quoted ? 'unexpected character (the line is not a JSON object)' : message;
}
