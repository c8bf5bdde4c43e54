import path from 'node:path';
import { buildDataset } from '../dataset/build.js';
import { SPLITS } from '../recipe/schema.js';
import { writeRunRecipe } from '../run/pipeline.js';
import { datasetDir } from '../run/trainer-config.js';
import { EXIT, recipeOptionHelp, recipeOptions, type CommandImpl } from './command.js';
import { resolveFromArgs } from './recipe-args.js';

export const datasetBuild: CommandImpl = {
  async run([file], values, { log, out }) {
    const recipe = resolveFromArgs(file!, values);
    const runDir = path.join(recipe.runs_dir, recipe.run_id);
    const dir = values.out ? path.resolve(values.out as string) : datasetDir(runDir);
    // The run's recipe.json is written after a successful build: a failed build leaves nothing behind.
    const { manifest, built } = await buildDataset(recipe, dir, log);
    if (!values.out) writeRunRecipe(runDir, recipe);
    out(`${built ? 'built' : 'up to date'}: ${path.relative(process.cwd(), dir) || dir}  (dataset ${manifest.dataset_hash.slice(0, 12)})`);
    for (const s of SPLITS) {
      const l = manifest.lengths[s];
      out(`  ${s.padEnd(5)} ${String(l.documents).padStart(7)} docs ${String(manifest.cases[s]).padStart(5)} cases ${String(l.tokens).padStart(10)} tokens`);
    }
    const t = manifest.truncation;
    if (t.truncated || t.dropped) out(`  over max_seq_len: ${t.truncated} shortened (${t.turns_dropped} old turns dropped), ${t.dropped} dropped`);
    if (t.dropped) out(`  dropped: ${t.dropped_ids.slice(0, 20).join(', ')}${t.dropped > 20 ? `, ... (all ${t.dropped} in manifest.json)` : ''}`);
    out(`  behavior tokens: ${Object.entries(manifest.behavior_tokens).map(([k, v]) => `${k}=${v}`).join(' ')}`);
    return EXIT.ok;
  },
};
