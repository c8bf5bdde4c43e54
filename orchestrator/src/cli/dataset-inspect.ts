import { UsageError } from '../errors.js';
import { readFileSync } from 'node:fs';
import path from 'node:path';
import { openDataset } from '../dataset/open.js';
import { readSafetensors } from '../dataset/safetensors.js';
import { loadChatTokenizer } from '../dataset/tokenizer.js';
import { SPLITS, type SplitName } from '../recipe/schema.js';
import { EXIT, type CommandImpl } from './command.js';

export const datasetInspect: CommandImpl = {
  async run([arg], values, { out }) {
    const split = values.split as SplitName;
    if (!SPLITS.includes(split)) throw new UsageError(`--split must be one of ${SPLITS.join(', ')}`);
    const n = Number(values.n as string);
    if (!Number.isInteger(n) || n < 1) throw new UsageError('--n must be a positive integer');
    const { dir, manifest, recipe } = openDataset(arg!);
    const tokDir = (values.tokenizer as string | undefined) ?? recipe?.tokenizer;
    if (!tokDir) throw new UsageError('this dataset has no run recipe beside it; pass --tokenizer DIR');
    // Add the behavior tokens in ID order, so that each gets the ID the dataset was built with.
    const tokens = Object.entries(manifest.behavior_tokens).sort((a, b) => a[1] - b[1]).map(([t]) => t);
    const tok = loadChatTokenizer(tokDir, tokens);
    if (tok.hash !== manifest.tokenizer_hash || tokens.some((t) => tok.addedIds[t] !== manifest.behavior_tokens[t])) {
      out('warning: this tokenizer differs from the one the dataset was built with');
    }
    const { tensors } = readSafetensors(path.join(dir, `${split}.tokens.safetensors`));
    const ids = tensors.input_ids as Int32Array;
    const mask = tensors.loss_mask as Uint8Array;
    const offsets = tensors.doc_offsets as BigInt64Array;
    const tty = process.stdout.isTTY;
    const [open, close] = tty ? ['\x1b[32m⟦', '⟧\x1b[0m'] : ['⟦', '⟧'];
    const docs = manifest.documents[split];
    const records = readFileSync(path.join(dir, `${split}.messages.jsonl`), 'utf8').split('\n').filter(Boolean).map((l) => JSON.parse(l));
    for (let d = 0; d < Math.min(n, docs.length); d++) {
      const start = Number(offsets[d]);
      const end = Number(offsets[d + 1]);
      const r = records[d];
      out(`── ${split} #${d} ${docs[d]} (${r.category}, ${r.behavior}${r.hard ? ', hard' : ''}) ${end - start} tokens, ${mask.slice(start, end).reduce((a, b) => a + b, 0)} in the loss`);
      let text = '';
      let i = start;
      while (i < end) {
        let j = i;
        while (j < end && mask[j] === mask[i]) j++;
        const piece = await tok.decode(Array.from(ids.subarray(i, j)));
        text += mask[i] ? `${open}${piece}${close}` : piece;
        i = j;
      }
      out(text);
    }
    if (docs.length === 0) out(`split ${split} is empty`);
    return EXIT.ok;
  },
};
