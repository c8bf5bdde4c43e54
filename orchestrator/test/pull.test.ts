import { mkdirSync, mkdtempSync, readFileSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import path from 'node:path';
import { describe, expect, it } from 'vitest';
import { resolveRecipe } from '../src/recipe/resolve.js';
import { listFiles, readComplete, sha256File, verifyFolder } from '../src/store/complete.js';
import { writeModelCard } from '../src/store/model-card.js';
import { bsft, ROOT } from './helpers/cli.js';

/** Issue 18: the model card is part of what `final/COMPLETE` covers, and `pull --out` is the destination. */

async function runWithFinal(): Promise<{ runs: string; runId: string; runDir: string }> {
  const runs = mkdtempSync(path.join(tmpdir(), 'bsft-pull-'));
  const recipe = resolveRecipe(path.join(ROOT, 'recipes', 'smoke.yaml'), { policy: { workspace: ROOT, allow: [runs] }, set: [`store.path=${runs}`] });
  const runDir = path.join(runs, recipe.run_id);
  const final = path.join(runDir, 'final');
  mkdirSync(final, { recursive: true });
  writeFileSync(path.join(runDir, 'recipe.json'), JSON.stringify(recipe));
  // What the trainer leaves: weights, and peft's own README.md, all listed in COMPLETE.
  writeFileSync(path.join(final, 'adapter_model.safetensors'), 'weights');
  writeFileSync(path.join(final, 'README.md'), '---\nlibrary_name: peft\n---\n');
  const files: Record<string, string> = {};
  for (const f of listFiles(final)) files[f] = await sha256File(path.join(final, f));
  writeFileSync(path.join(final, 'COMPLETE'), JSON.stringify({ files, run_id: recipe.run_id }));
  return { runs, runId: recipe.run_id, runDir };
}

describe('model card and pull', () => {
  it('writing the model card keeps final/ verifiable (its hash goes into COMPLETE)', async () => {
    const { runDir } = await runWithFinal();
    const card = (await writeModelCard(runDir))!;
    expect(readFileSync(card, 'utf8')).toContain('<|behavior:proactive|>');
    expect(await verifyFolder(path.join(runDir, 'final'))).toBeUndefined();
    expect(readComplete(path.join(runDir, 'final'))!.run_id).toBeDefined(); // the trainer's extra fields stay
  });

  it('bsft pull --final succeeds on the first pull of a run, and --out is the destination folder', async () => {
    const { runs, runId, runDir } = await runWithFinal();
    await writeModelCard(runDir); // what the score step does at the end of bsft run
    const first = await bsft(['pull', runId, '--final', '--runs', runs]);
    expect(first.code, first.stderr).toBe(0);
    const dest = path.join(mkdtempSync(path.join(tmpdir(), 'bsft-dest-')), 'model');
    const second = await bsft(['pull', runId, '--final', '--runs', runs, '--out', dest]);
    expect(second.code, second.stderr).toBe(0);
    expect(second.stdout).toContain(`into ${path.relative(process.cwd(), dest)}`);
    expect(readFileSync(path.join(dest, 'adapter_model.safetensors'), 'utf8')).toBe('weights');
    expect(readFileSync(path.join(dest, 'README.md'), 'utf8')).toContain(runId);
    expect(await verifyFolder(dest)).toBeUndefined();
  });
});
