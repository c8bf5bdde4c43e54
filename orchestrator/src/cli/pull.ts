import { UsageError } from '../errors.js';
import { existsSync } from 'node:fs';
import path from 'node:path';
import { readRunRecipe } from '../run/run-dir.js';
import { pullMeta } from '../store/meta.js';
import { writeModelCard } from '../store/model-card.js';
import { HubStore } from '../store/hub-store.js';
import { LocalStore, type Store } from '../store/store.js';
import { pullNewestCheckpoint } from '../store/sync.js';
import { EXIT, intOption, type Command } from './command.js';
import { checkpointDirName } from '../store/checkpoint-name.js';

export const pull: Command = {
  name: 'pull',
  summary: 'bring a run\'s checkpoint or final model back from its store (sha256-checked), for predict and scoring',
  usage: 'bsft pull <run-id> [--step N | --final] [--repo owner/name] [--hub-url URL] [--runs DIR] [--out DIR]',
  details:
    'The store comes from <runs>/<run-id>/recipe.json, or --repo for a Hub store on a machine that has nothing of the run.\n' +
    'The final model gets a model card (README.md), recorded in its COMPLETE. HF_TOKEN from the environment.',
  options: {
    step: { type: 'string' },
    final: { type: 'boolean' },
    repo: { type: 'string' },
    'hub-url': { type: 'string' },
    runs: { type: 'string' },
    out: { type: 'string' },
  },
  optionHelp: {
    step: 'this checkpoint step (default: the newest complete one)',
    final: 'the final model instead of a checkpoint',
    repo: 'Hub model repo owner/name',
    'hub-url': 'Hub endpoint (default https://huggingface.co)',
    runs: 'the runs folder that holds (or will hold) the run (default ./runs)',
    out: 'where the pulled folder goes (default <runs>/<run-id>/final or <runs>/<run-id>/checkpoints/step-N)',
  },
  positionals: [1, 1],
  async run([runId], values, { log, out }) {
    if (values.step !== undefined && values.final) throw new UsageError('--step and --final exclude each other');
    const runs = path.resolve((values.runs as string | undefined) ?? 'runs');
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
