import { readSafetensors } from './safetensors.js';

/**
 * Each document of a shard (Contract 3) as [start, end) of its prompt: from the document's first token up to its
 * first loss token (the behavior token, or the reply's first token without one), which predict generates from.
 */
export function shardPromptSpans(file: string): { ids: Int32Array; spans: Array<[number, number]> } {
  const { tensors } = readSafetensors(file);
  const ids = tensors.input_ids as Int32Array;
  const mask = tensors.loss_mask as Uint8Array;
  const offsets = tensors.doc_offsets as BigInt64Array;
  const spans: Array<[number, number]> = [];
  for (let d = 0; d + 1 < offsets.length; d++) {
    const start = Number(offsets[d]);
    const end = Number(offsets[d + 1]);
    let first = start;
    while (first < end && mask[first] === 0) first++;
    spans.push([start, first]);
  }
  return { ids, spans };
}

/** The prompt tokens of a shard's documents, all together: what predict runs forward for one predictions file. */
export function shardPromptTokens(file: string): number {
  return shardPromptSpans(file).spans.reduce((a, [start, end]) => a + end - start, 0);
}
