import { existsSync, readFileSync, writeFileSync } from 'node:fs';
import { recordInComplete } from './complete.js';
import path from 'node:path';
import { DEFAULT_BEHAVIORS } from '../recipe/schema.js';

interface CardInputs {
  recipe: { name: string; run_id: string; model: { name_or_path: string }; data: { conditioning: string; behaviors: Record<string, { token: string; description: string }> }; train: { method: string; lr: number; max_steps?: number; epochs?: number } };
  manifest?: { dataset_hash: string; behavior_ids: Record<string, number> };
  scores: Record<string, { overall: { macro_f1: { value: number; ci?: [number, number] }; accuracy: { value: number } } }>;
}

const pct = (v: number) => (100 * v).toFixed(1);

/** README.md of a run's final model: recipe, dataset hash, metrics, behavior tokens and how to use them. */
export function modelCard({ recipe, manifest, scores }: CardInputs): string {
  const behaviors = Object.entries(recipe.data.behaviors);
  const rows = behaviors.map(([name, b]) => `| \`${name}\` | \`${b.token}\` | ${manifest?.behavior_ids[name] ?? '?'} | ${b.description} |`);
  const metrics = Object.entries(scores).map(([split, s]) =>
    `| ${split} | ${pct(s.overall.macro_f1.value)}${s.overall.macro_f1.ci ? ` [${pct(s.overall.macro_f1.ci[0])}, ${pct(s.overall.macro_f1.ci[1])}]` : ''} | ${pct(s.overall.accuracy.value)} |`);
  const first = behaviors[0]?.[1].token ?? '<|behavior:proactive|>';
  return `---
base_model: ${recipe.model.name_or_path}
tags: [bsft, behaviorsft, clinical, behavior-tokens]
---

# ${recipe.name} — BehaviorSFT

Fine-tuned from \`${recipe.model.name_or_path}\` with BehaviorSFT (${recipe.train.method}, conditioning \`${recipe.data.conditioning}\`,
${Number.isFinite(recipe.train.lr) ? `lr ${recipe.train.lr}, ${recipe.train.max_steps ? `${recipe.train.max_steps} steps` : `${recipe.train.epochs} epochs`}` : 'settings in the run recipe'}) by bsft, run \`${recipe.run_id}\`.
Dataset hash: \`${manifest?.dataset_hash ?? 'unknown'}\`.

## Behavior tokens

Every assistant reply starts with one behavior token, a special token of the tokenizer:

| behavior | token | id | meaning |
|---|---|---|---|
${rows.join('\n')}

- **Let the model choose**: generate from the chat-template prompt (\`add_generation_prompt=True\`); the first generated
  token is the behavior. Read it as a token ID (decoders with \`skip_special_tokens=True\` drop it).
- **Steer it**: append a token to the prompt, e.g. \`...<|im_start|>assistant\\n${first}\`, and generate the reply.

## BehaviorBench metrics

${metrics.length ? `| split | behavior macro-F1 [95% CI] | accuracy |\n|---|---|---|\n${metrics.join('\n')}` : 'Not scored yet (`bsft score`).'}
`;
}

/** The card's recipe part from final/bsft.json, for a final model pulled onto a machine without the run's recipe. */
function recipeFromFinal(meta: { run_id: string; base_model: string; method: string; conditioning: string; behavior_ids: Record<string, number>; behavior_tokens: Record<string, number> }): CardInputs['recipe'] {
  const tokenOf = Object.fromEntries(Object.entries(meta.behavior_tokens).map(([t, id]) => [id, t]));
  const behaviors = Object.fromEntries(Object.entries(meta.behavior_ids).map(([name, id]) => [
    name,
    { token: tokenOf[id] ?? '?', description: (DEFAULT_BEHAVIORS as Record<string, { description: string }>)[name]?.description ?? '' },
  ]));
  return { name: meta.run_id, run_id: meta.run_id, model: { name_or_path: meta.base_model }, data: { conditioning: meta.conditioning, behaviors }, train: { method: meta.method, lr: NaN } };
}

/**
 * Writes `<final>/README.md` (default `<run>/final`) from what the run folder holds (its recipe.json, or the final
 * folder's bsft.json), and records the card's sha256 in the folder's COMPLETE, so that the folder still verifies.
 */
export async function writeModelCard(runDir: string, final = path.join(runDir, 'final')): Promise<string | undefined> {
  if (!existsSync(final)) return undefined;
  const read = (p: string) => (existsSync(p) ? JSON.parse(readFileSync(p, 'utf8')) : undefined);
  const meta = read(path.join(final, 'bsft.json'));
  const recipe = read(path.join(runDir, 'recipe.json')) ?? (meta ? recipeFromFinal(meta) : undefined);
  if (!recipe) return undefined;
  const scores: CardInputs['scores'] = {};
  for (const split of recipe.eval?.splits ?? []) {
    const s = read(path.join(runDir, 'score', `${split}.json`));
    if (s) scores[split] = s;
  }
  const file = path.join(final, 'README.md');
  writeFileSync(file, modelCard({ recipe, manifest: read(path.join(runDir, 'dataset', 'manifest.json')) ?? meta, scores }));
  await recordInComplete(final, 'README.md');
  return file;
}
