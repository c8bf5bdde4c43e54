import { closeSync, openSync, readSync, fsyncSync, writeSync } from 'node:fs';

/** The dtypes of Contract 3 shards. */
export type Dtype = 'I32' | 'U8' | 'I64';
type TypedArray = Int32Array | Uint8Array | BigInt64Array;

const ITEM: Record<Dtype, number> = { I32: 4, U8: 1, I64: 8 };

function dtypeOf(a: TypedArray): Dtype {
  if (a instanceof Int32Array) return 'I32';
  if (a instanceof Uint8Array) return 'U8';
  return 'I64';
}

/** A tensor to write: its name, dtype and length, and its bytes (an array in memory, or a file of raw data). */
export interface TensorSource {
  name: string;
  dtype: Dtype;
  length: number;
  data: TypedArray | { file: string };
}

/**
 * Writes tensors in the safetensors format: u64 little-endian header length, JSON header (keys sorted, padded with
 * spaces to 8 bytes), then the raw little-endian data in the given order (largest item size first keeps alignment).
 * A tensor's data may come from a file of raw values (a build's temporary stream), copied a chunk at a time.
 */
export function writeSafetensorsFrom(file: string, tensors: TensorSource[], metadata: Record<string, string> = {}): void {
  const header: Record<string, unknown> = {};
  if (Object.keys(metadata).length) header.__metadata__ = metadata;
  let offset = 0;
  const entries: Record<string, unknown> = {};
  for (const t of tensors) {
    const bytes = t.length * ITEM[t.dtype];
    entries[t.name] = { dtype: t.dtype, shape: [t.length], data_offsets: [offset, offset + bytes] };
    offset += bytes;
  }
  for (const name of Object.keys(entries).sort()) header[name] = entries[name];
  let json = JSON.stringify(header);
  json += ' '.repeat((8 - (Buffer.byteLength(json) % 8)) % 8);
  const len = Buffer.alloc(8);
  len.writeBigUInt64LE(BigInt(Buffer.byteLength(json)));
  const fd = openSync(file, 'w');
  try {
    writeSync(fd, len);
    writeSync(fd, json);
    for (const t of tensors) {
      if (!('file' in t.data)) {
        writeSync(fd, new Uint8Array(t.data.buffer, t.data.byteOffset, t.data.byteLength));
        continue;
      }
      const src = openSync(t.data.file, 'r');
      try {
        const chunk = Buffer.allocUnsafe(1 << 22);
        for (let n; (n = readSync(src, chunk, 0, chunk.length, null)) > 0; ) writeSync(fd, chunk, 0, n);
      } finally {
        closeSync(src);
      }
    }
    fsyncSync(fd);
  } finally {
    closeSync(fd);
  }
}

/** Writes tensors held in memory (writeSafetensorsFrom). */
export function writeSafetensors(file: string, tensors: [string, TypedArray][], metadata: Record<string, string> = {}): void {
  writeSafetensorsFrom(file, tensors.map(([name, data]) => ({ name, dtype: dtypeOf(data), length: data.length, data })), metadata);
}

export interface SafetensorsFile {
  metadata: Record<string, string>;
  tensors: Record<string, TypedArray>;
}

/** Reads a whole safetensors file (the shards of Contract 3 are small enough to read at once). */
export function readSafetensors(file: string): SafetensorsFile {
  const fd = openSync(file, 'r');
  try {
    const len = Buffer.alloc(8);
    readSync(fd, len, 0, 8, 0);
    const headerLen = Number(len.readBigUInt64LE());
    const headerBuf = Buffer.alloc(headerLen);
    readSync(fd, headerBuf, 0, headerLen, 8);
    const header = JSON.parse(headerBuf.toString('utf8')) as Record<string, { dtype: Dtype; shape: number[]; data_offsets: [number, number] }>;
    const { __metadata__: metadata = {}, ...entries } = header as Record<string, any>;
    const tensors: Record<string, TypedArray> = {};
    for (const [name, e] of Object.entries(entries) as [string, { dtype: Dtype; data_offsets: [number, number] }][]) {
      const bytes = e.data_offsets[1] - e.data_offsets[0];
      const buf = new ArrayBuffer(bytes);
      readSync(fd, new Uint8Array(buf), 0, bytes, 8 + headerLen + e.data_offsets[0]);
      const n = bytes / ITEM[e.dtype];
      tensors[name] = e.dtype === 'I32' ? new Int32Array(buf, 0, n) : e.dtype === 'U8' ? new Uint8Array(buf, 0, n) : new BigInt64Array(buf, 0, n);
    }
    return { metadata, tensors };
  } finally {
    closeSync(fd);
  }
}
