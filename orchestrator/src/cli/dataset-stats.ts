import path from 'node:path';
import { openDataset } from '../dataset/open.js';
import { readSafetensors } from '../dataset/safetensors.js';
import { SPLITS } from '../recipe/schema.js';
import { table } from '../util/table.js';
import { EXIT, type CommandImpl } from './command.js';

/** Power-of-two length buckets: 64..127, 128..255, ... */
export function lengthHistogram(offsets: BigInt64Array): Map<number, number> {
  const hist = new Map<number, number>();
  for (let i = 0; i + 1 < offsets.length; i++) {
    const len = Number(offsets[i + 1]! - offsets[i]!);
    const bucket = 2 ** Math.floor(Math.log2(Math.max(1, len)));
    hist.set(bucket, (hist.get(bucket) ?? 0) + 1);
  }
  return new Map([...hist].sort((a, b) => a[0] - b[0]));
}

export const datasetStats: CommandImpl = {
  async run([arg], values, { out }) {
    const { dir, manifest: m } = openDataset(arg!);
    if (values.json) {
      out(JSON.stringify({ counts: m.counts, cases: m.cases, lengths: m.lengths, truncation: m.truncation }, null, 2));
      return EXIT.ok;
    }
    out(`dataset ${path.relative(process.cwd(), dir) || dir}  hash ${m.dataset_hash.slice(0, 12)}  conditioning ${m.options.conditioning}`);
    const behaviors = Object.keys(m.behavior_ids);
    const categories = [...new Set(SPLITS.flatMap((s) => Object.keys(m.counts[s])))].sort();
    const header = ['category', ...SPLITS.flatMap((s) => behaviors.map((b) => `${s}:${b.slice(0, 5)}`))];
    const rows = categories.map((c) => [c, ...SPLITS.flatMap((s) => behaviors.map((b) => String(m.counts[s][c]?.[b] ?? 0)))]);
    const totals = ['total', ...SPLITS.flatMap((s) => behaviors.map((b) => String(categories.reduce((a, c) => a + (m.counts[s][c]?.[b] ?? 0), 0))))];
    out('');
    for (const line of table([header, ...rows, totals])) out(line);
    out('');
    out(table([
      ['split', 'cases', 'docs', 'tokens', 'loss tok', 'min', 'mean', 'p50', 'p90', 'p99', 'max'],
      ...SPLITS.map((s) => {
        const l = m.lengths[s];
        return [s, String(m.cases[s]), String(l.documents), String(l.tokens), String(l.loss_tokens), String(l.min), String(l.mean), String(l.p50), String(l.p90), String(l.p99), String(l.max)];
      }),
    ]).join('\n'));
    out('');
    out('token-length histogram (all splits):');
    const hist = new Map<number, number>();
    for (const s of SPLITS) {
      const offsets = readSafetensors(path.join(dir, `${s}.tokens.safetensors`)).tensors.doc_offsets as BigInt64Array;
      for (const [k, v] of lengthHistogram(offsets)) hist.set(k, (hist.get(k) ?? 0) + v);
    }
    const most = Math.max(1, ...hist.values());
    for (const [k, v] of [...hist].sort((a, b) => a[0] - b[0])) {
      out(`  ${`${k}-${k * 2 - 1}`.padStart(11)} ${String(v).padStart(7)} ${'#'.repeat(Math.ceil((v / most) * 40))}`);
    }
    const t = m.truncation;
    out('');
    out(`over max_seq_len (${m.options.max_seq_len}): ${t.truncated} shortened (${t.turns_dropped} oldest turns dropped), ${t.dropped} dropped`);
    return EXIT.ok;
  },
};
