import { UsageError } from '../errors.js';
import { existsSync } from 'node:fs';
import path from 'node:path';
import { readRunRecipe } from '../run/run-dir.js';
import { pullMeta } from '../store/meta.js';
import { writeModelCard } from '../store/model-card.js';
import { HubStore } from '../store/hub-store.js';
import { LocalStore, type Store } from '../store/store.js';
import { pullNewestCheckpoint } from '../store/sync.js';
import { EXIT, intOption, type CommandImpl } from './command.js';
import { checkpointDirName } from '../store/checkpoint-name.js';

export const pull: CommandImpl = {
  async run([runId], values, { log, out }) {
    if (values.step !== undefined && values.final) throw new UsageError('--step and --final exclude each other');
    const runs = path.resolve(values.runs as string);
    const runDir = path.join(runs, runId!);
    const dest = (rel: string) => (values.out ? path.resolve(values.out as string) : path.join(runDir, rel));
    const shown = (p: string) => path.relative(process.cwd(), p) || p;
    const recipe = readRunRecipe(runDir);
    let store: Store;
    if (values.repo) store = new HubStore({ repo: values.repo as string, ...(values['hub-url'] ? { hubUrl: values['hub-url'] as string } : {}) });
    else if (recipe?.store.kind === 'hub') store = new HubStore({ repo: recipe.store.repo!, hubUrl: recipe.store.hub_url });
    else if (recipe) store = new LocalStore(recipe.runs_dir);
    else throw new UsageError(`no ${path.join(runDir, 'recipe.json')}: pass --repo owner/name to pull from a Hub store`);

    if (values.final) {
      const finalDir = dest('final');
      await store.pull(runId!, 'final', finalDir);
      if (!recipe) await pullMeta(store, runId!, runDir);
      for (const rel of ['dataset', 'score']) {
        if (!existsSync(path.join(runDir, rel)) && (await store.has(runId!, rel))) await store.pull(runId!, rel, path.join(runDir, rel)).catch(() => undefined);
      }
      const card = await writeModelCard(runDir, finalDir);
      out(`pulled ${runId}/final from the ${store.describe()} into ${shown(finalDir)}${card ? ` (model card: ${shown(card)})` : ''}`);
      return EXIT.ok;
    }
    const checkpoints = path.join(runDir, 'checkpoints');
    const step = intOption(values, 'step');
    if (step !== undefined) {
      const rel = `checkpoints/${checkpointDirName(step)}`;
      if (!(await store.has(runId!, rel))) throw new UsageError(`the ${store.describe()} has no complete checkpoint ${step} of ${runId}`);
      await store.pull(runId!, rel, dest(rel));
      out(`pulled ${runId}/${rel} into ${shown(dest(rel))}`);
      return EXIT.ok;
    }
    const target = values.out ? path.resolve(values.out as string) : undefined;
    const got = await pullNewestCheckpoint(store, runId!, checkpoints, log, target);
    if (got === undefined) {
      out(`the ${store.describe()} has no complete checkpoint of ${runId}`);
      return EXIT.failure;
    }
    const rel = `checkpoints/${checkpointDirName(got)}`;
    out(`pulled ${runId}/${rel} (the newest complete one) into ${shown(target ?? path.join(runDir, rel))}`);
    return EXIT.ok;
  },
};
