import { existsSync } from 'node:fs';
import path from 'node:path';
import { readRunRecipe } from '../run/run-dir.js';
import { pullMeta } from '../store/meta.js';
import { writeModelCard } from '../store/model-card.js';
import { HubStore } from '../store/hub-store.js';
import { LocalStore, type Store } from '../store/store.js';
import { pullNewestCheckpoint } from '../store/sync.js';
import { EXIT, intOption, UsageError, type Command } from './command.js';

export const pull: Command = {
  name: 'pull',
  summary: 'bring a run\'s checkpoint or final model back from its store (sha256-checked), for predict and scoring',
  usage: 'bsft pull <run-id> [--step N | --final] [--repo owner/name] [--hub-url URL] [--out DIR]',
  details: 'The store comes from runs/<run-id>/recipe.json, or --repo for a Hub store on a machine that has nothing of the run.\nThe final model gets a model card (README.md). HF_TOKEN from the environment.',
  options: { step: { type: 'string' }, final: { type: 'boolean' }, repo: { type: 'string' }, 'hub-url': { type: 'string' }, out: { type: 'string' } },
  optionHelp: {
    step: 'this checkpoint step (default: the newest complete one)',
    final: 'the final model instead of a checkpoint',
    repo: 'Hub model repo owner/name',
    'hub-url': 'Hub endpoint (default https://huggingface.co)',
    out: 'runs folder to pull into (default ./runs)',
  },
  positionals: [1, 1],
  async run([runId], values, { log, out }) {
    if (values.step !== undefined && values.final) throw new UsageError('--step and --final exclude each other');
    const runs = path.resolve((values.out as string | undefined) ?? 'runs');
    const runDir = path.join(runs, runId!);
    const recipe = readRunRecipe(runDir);
    let store: Store;
    if (values.repo) store = new HubStore({ repo: values.repo as string, ...(values['hub-url'] ? { hubUrl: values['hub-url'] as string } : {}) });
    else if (recipe?.store.kind === 'hub') store = new HubStore({ repo: recipe.store.repo!, hubUrl: recipe.store.hub_url });
    else if (recipe) store = new LocalStore(recipe.runs_dir);
    else throw new UsageError(`no ${path.join(runDir, 'recipe.json')}: pass --repo owner/name to pull from a Hub store`);

    if (values.final) {
      await store.pull(runId!, 'final', path.join(runDir, 'final'));
      if (!recipe) await pullMeta(store, runId!, runDir);
      for (const rel of ['dataset', 'score']) {
        if (!existsSync(path.join(runDir, rel)) && (await store.has(runId!, rel))) await store.pull(runId!, rel, path.join(runDir, rel)).catch(() => undefined);
      }
      const card = writeModelCard(runDir);
      out(`pulled ${runId}/final from the ${store.describe()} into ${path.relative(process.cwd(), path.join(runDir, 'final'))}${card ? ` (model card: ${path.relative(process.cwd(), card)})` : ''}`);
      return EXIT.ok;
    }
    const checkpoints = path.join(runDir, 'checkpoints');
    const step = intOption(values, 'step');
    if (step !== undefined) {
      const rel = `checkpoints/step-${String(step).padStart(6, '0')}`;
      if (!(await store.has(runId!, rel))) throw new UsageError(`the ${store.describe()} has no complete checkpoint ${step} of ${runId}`);
      await store.pull(runId!, rel, path.join(runDir, rel));
      out(`pulled ${runId}/${rel}`);
      return EXIT.ok;
    }
    const got = await pullNewestCheckpoint(store, runId!, checkpoints, log);
    if (got === undefined) {
      out(`the ${store.describe()} has no complete checkpoint of ${runId}`);
      return EXIT.failure;
    }
    out(`pulled ${runId}/checkpoints/step-${String(got).padStart(6, '0')} (the newest complete one)`);
    return EXIT.ok;
  },
};
