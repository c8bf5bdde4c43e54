import path from 'node:path';
import { describe, expect, it } from 'vitest';
import { execFileSync } from 'node:child_process';
import { mkdtempSync, readFileSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import {
  checkFits, fits, gpusNeeded, memoryPlan, modelShape, recomputeToFit, SAVED_BYTES, savedBytesPerToken, savedVariant, type SavedVariant,
} from '../src/recipe/memory-plan.js';
import { trainerConfig } from '../src/run/trainer-config.js';
import { RecipeError } from '../src/recipe/recipe-error.js';
import { resolveRecipe } from '../src/recipe/resolve.js';
import { bsft, ROOT } from './helpers/cli.js';
import { pythonWith } from './helpers/python.js';
import { limit } from './helpers/time-scale.js';

const paper = (name: string, set: string[] = []) =>
  resolveRecipe(path.join(ROOT, 'recipes', 'paper', `${name}.yaml`), { policy: { workspace: ROOT, allow: [] }, set });
const GIB = 2 ** 30;

describe('GPU memory plan of a recipe (weights, gradients, optimizer, activations per GPU)', () => {
  it('counts the 7.6 B parameters of Qwen2.5-7B and plans LoRA at 16k tokens on one GPU near the measured 31 GiB', () => {
    const r = paper('behaviorsft-lora');
    const shape = modelShape(r)!;
    const allLayers = memoryPlan(paper('behaviorsft-lora', ['train.activation_checkpointing=true']), shape);
    expect(allLayers.params / 1e9).toBeCloseTo(7.62, 2);
    expect(allLayers.recomputed).toBe(28);
    // ../shared/GPU-NOTES.md: packed 16k, varlen attention, checkpointing, chunked CE: 31 GiB (33.3 GB) on the H200.
    expect(allLayers.total / GIB).toBeGreaterThan(25);
    expect(allLayers.total / GIB).toBeLessThan(36);
    expect(gpusNeeded(r, shape, 80)).toBe(1);
    // auto: the fewest recomputed layers that fit 90% of the card; fewer on a bigger card; none without a need.
    const auto80 = memoryPlan(r, shape);
    const auto141 = memoryPlan(r, shape, 1, 141);
    expect(auto80.recomputed).toBeGreaterThan(0);
    expect(auto80.recomputed).toBeLessThan(28);
    expect(auto80.total).toBeLessThanOrEqual(0.9 * 80 * GIB);
    expect(auto141.recomputed).toBeLessThan(auto80.recomputed);
    expect(memoryPlan(r, shape, 1, 1000).recomputed).toBe(0);
    expect(memoryPlan(paper('behaviorsft-lora', ['train.activation_checkpointing=false']), shape).recomputed).toBe(0);
  });

  it('says what the working term holds, adds the loss backward and the reduce buffer, and names the optimizer step', () => {
    const r = paper('behaviorsft-full', ['train.activation_checkpointing=true']);
    const shape = modelShape(r)!;
    const p = memoryPlan(r, shape);
    const { vocab_size: v, hidden_size: h } = shape;
    expect(Object.values(p.working_parts).reduce((a, b) => a + b, 0)).toBeCloseTo(p.working, -3);
    expect(p.working_parts.output_grad).toBe(4 * v * h); // the fp32 output-weight gradient, 2.18e9 bytes
    expect(p.working_parts.output_grad / GIB).toBeCloseTo(2.03, 2);
    expect(p.working_parts.loss_backward).toBe(6 * v * h + r.train.batch_tokens * 2 * h); // fp32 scaled copy + its bf16 cast
    expect(p.working_parts.reduce / GIB).toBeCloseTo(1.3, 1); // a 233 M-parameter layer's bf16 gradients + fp32 copy
    expect(p.working_parts.loss_state).toBe(r.train.batch_tokens * (2 * h + 8)); // H bf16 values + an index per loss token
    expect(p.optimizer_step / GIB).toBeCloseTo(p.params * 4 / 4 / GIB, 3); // foreach AdamW: fp32 per trainable on this GPU
    expect(p.total).toBeCloseTo(p.weights + p.gradients + p.optimizer + p.activations + p.working, -3);
    // LoRA: the output weight is frozen, so neither its gradient nor its backward copies are there.
    const lora = memoryPlan(paper('behaviorsft-lora'), shape);
    expect(lora.working_parts.output_grad).toBe(0);
    expect(lora.working_parts.loss_backward).toBe(r.train.batch_tokens * 2 * h);
  });

  it('train.json carries the plan by recomputed layers, and the trainer\'s rule is the plan\'s (shared cases)', () => {
    const cases = JSON.parse(readFileSync(path.join(ROOT, 'orchestrator', 'test', 'fixtures', 'recompute-cases.json'), 'utf8')) as
      { peaks: number[]; budget: number; recomputed: number }[];
    for (const c of cases) expect(recomputeToFit(c.peaks, c.budget)).toBe(c.recomputed);
    const r = paper('behaviorsft-lora');
    const config = trainerConfig(r, '/tmp/run');
    expect(config.memory_plan!.gpus).toBe(1);
    expect(config.memory_plan!.peak_bytes).toHaveLength(29);
    expect(recomputeToFit(config.memory_plan!.peak_bytes, 0.9 * 80 * GIB)).toBe(memoryPlan(r, modelShape(r)!).recomputed);
    const full = trainerConfig(paper('behaviorsft-full'), '/tmp/run');
    expect(full.memory_plan!.gpus).toBe(4);
    expect(trainerConfig(resolveRecipe(path.join(ROOT, 'recipes', 'smoke.yaml'), { policy: { workspace: ROOT, allow: [] } }), '/tmp/run')
      .memory_plan!.peak_bytes.length).toBeGreaterThan(1);
  });

  it('full fine-tuning: fp32 masters and AdamW do not fit one card; FSDP2 over 4 x 80 GiB or 2 x 141 GiB does', () => {
    const r = paper('behaviorsft-full');
    const shape = modelShape(r)!;
    const one = memoryPlan(r, shape, 1);
    expect(one.optimizer / GIB).toBeCloseTo(56.7, 1); // 8 bytes x 7.6 B
    expect(fits(one, 141)).toBe(false);
    expect(gpusNeeded(r, shape, 80)).toBe(4);
    expect(gpusNeeded(r, shape, 141)).toBe(2);
    const four = memoryPlan(r, shape, 4);
    expect(four.weights + four.gradients + four.optimizer).toBeCloseTo((16 * four.params) / 4, -6);
    const compensated = memoryPlan(paper('behaviorsft-full', ['train.master_weights=bf16_compensated', 'resources.gpus=1']), shape);
    expect(fits(compensated, 141)).toBe(true);
    expect(fits(compensated, 80)).toBe(false);
  });

  it('a recipe that cannot fit its GPUs is refused with the GPU count that would; bsft run stops before any step', async () => {
    expect(() => checkFits(paper('behaviorsft-full'))).not.toThrow(); // the recipe asks for 4 GPUs
    let err: unknown;
    try {
      checkFits(paper('behaviorsft-full', ['resources.gpus=1']));
    } catch (e) {
      err = e;
    }
    expect(err).toBeInstanceOf(RecipeError);
    expect((err as RecipeError).problems[0]!.path).toBe('resources.gpus');
    expect((err as RecipeError).message).toMatch(/needs about \d+\.\d GiB per GPU on 1 GPU.*set resources.gpus: 4.*bf16_compensated/);
    const res = await bsft(['run', 'recipes/paper/behaviorsft-full.yaml', '--set', 'resources.gpus=2']);
    expect(res.code).toBe(2);
    expect(res.stderr).toMatch(/resources.gpus: .*set resources.gpus: 4/);
    expect(res.stderr).not.toMatch(/build|dataset/i);
  });
});

describe('past 7B: the plan for Qwen2.5-32B and 72B (issue 38)', () => {
  it('knows their shapes (the published parameter counts) and says how many 80 GiB and 141 GiB cards each recipe needs', () => {
    const on = (name: string, model: string) => resolveRecipe(path.join(ROOT, 'recipes', 'paper', `${name}.yaml`),
      { policy: { workspace: ROOT, allow: [] }, set: [`model.name_or_path=${model}`], allowMissing: true });
    const need = (name: string, model: string) => { const r = on(name, model); return [gpusNeeded(r, modelShape(r)!, 80), gpusNeeded(r, modelShape(r)!, 141)]; };
    expect(memoryPlan(on('behaviorsft-lora', 'Qwen/Qwen2.5-32B-Instruct'), modelShape(on('behaviorsft-lora', 'Qwen/Qwen2.5-32B-Instruct'))!).params / 1e9).toBeCloseTo(32.76, 2);
    expect(memoryPlan(on('behaviorsft-lora', 'Qwen/Qwen2.5-72B-Instruct'), modelShape(on('behaviorsft-lora', 'Qwen/Qwen2.5-72B-Instruct'))!).params / 1e9).toBeCloseTo(72.71, 2);
    // 16,384 tokens a GPU step, as the paper recipes: the bf16 32B base (61 GiB) leaves too little of one 80 GiB card.
    expect(need('behaviorsft-lora', 'Qwen/Qwen2.5-32B-Instruct')).toEqual([4, 1]);
    expect(need('behaviorsft-full', 'Qwen/Qwen2.5-32B-Instruct')).toEqual([16, 8]);
    expect(need('behaviorsft-lora', 'Qwen/Qwen2.5-72B-Instruct')).toEqual([16, 4]);
    // Full 72B at 16k tokens a GPU: on 64 cards of 80 GiB the shards are 17 GiB, but every layer's kept input (26 GiB
    // with all 80 recomputed) and the unsharded working memory (30 GiB: the gathered root and layers, the loss's fp32
    // logits and output-weight gradient) still come to 72.7 GiB, over 90% of the card; 16 x 141 GiB fit.
    expect(need('behaviorsft-full', 'Qwen/Qwen2.5-72B-Instruct')).toEqual([undefined, 16]);
  });
});

const pyHF = pythonWith(['torch', 'transformers', 'peft']);

describe('the activations a decoder layer keeps for backward (issue 38: measured, not calibrated)', () => {
  const lora = (set: string[] = []) => paper('behaviorsft-lora', set).train;
  const full = paper('behaviorsft-full').train;

  it('picks the measured variant of a recipe: full, LoRA with or without dropout, in the model dtype or fp32', () => {
    expect(savedVariant(full)).toBe('full');
    expect(savedVariant(lora())).toBe('lora'); // the paper recipe: dropout 0.05, adapters in the model's dtype
    expect(savedVariant(lora(['train.lora.dropout=0']))).toBe('lora-no-dropout');
    expect(savedVariant(lora(['train.lora.compute_dtype=float32']))).toBe('lora-float32');
    expect(savedVariant(lora(['train.lora.compute_dtype=float32', 'train.lora.dropout=0']))).toBe('lora-float32-no-dropout');
    const shape = modelShape(paper('behaviorsft-full'))!;
    // The hand count for full fine-tuning at the 7B shape (the calibrated constant was 336,077, 1.49x).
    expect(savedBytesPerToken(shape, full)).toBe(225_400);
    // The paper recipes' plans use it: 16,384 tokens x 28 layers kept, nothing recomputed.
    const none = memoryPlan(paper('behaviorsft-full', ['train.activation_checkpointing=false']), shape);
    expect(none.activations).toBe(16_384 * 28 * 225_400);
    expect(memoryPlan(paper('behaviorsft-lora', ['train.activation_checkpointing=false']), shape).activations).toBe(16_384 * 28 * 280_408);
  });

  it.skipIf(!pyHF)('equal the bytes one 7B-shaped layer keeps, measured by the trainer-side benchmark for every variant', () => {
    const shape = modelShape(paper('behaviorsft-full'))!;
    const trains: Record<SavedVariant, ReturnType<typeof lora>> = {
      full, lora: lora(), 'lora-no-dropout': lora(['train.lora.dropout=0']), 'lora-float32': lora(['train.lora.compute_dtype=float32']),
      'lora-float32-no-dropout': lora(['train.lora.compute_dtype=float32', 'train.lora.dropout=0']),
    };
    const dir = mkdtempSync(path.join(tmpdir(), 'bsft-saved-'));
    const plan = Object.fromEntries(Object.entries(trains).map(([k, t]) => [k, savedBytesPerToken(shape, t)]));
    writeFileSync(path.join(dir, 'plan.json'), JSON.stringify(plan));
    const out = execFileSync(pyHF!, [path.join(ROOT, 'trainer-python', 'bench', 'saved_activations.py'), '--tokens', '8',
      '--plan-json', path.join(dir, 'plan.json'), '--json', path.join(dir, 'measured.json')], {
      encoding: 'utf8', timeout: limit(240_000), env: { ...process.env, OMP_NUM_THREADS: '1' },
    });
    const measured = JSON.parse(readFileSync(path.join(dir, 'measured.json'), 'utf8')) as Record<string, { per_token: number }>;
    expect(Object.keys(measured).sort()).toEqual(Object.keys(SAVED_BYTES).sort());
    for (const [variant, bytes] of Object.entries(plan)) expect(measured[variant]!.per_token, `${variant}\n${out}`).toBe(bytes);
  });
});

describe('the GPU hours of prediction (bsft reproduce --dry-run)', () => {
  it('counts every predictions file, the replies at max_new_tokens and a model judge, at the paper scale', async () => {
    const { predictPlan } = await import('../src/recipe/predict-plan.js');
    const r = paper('behaviorsft-lora');
    // BehaviorBench's test split at the paper's scale: about 14,000 tasks, 600 prompt tokens and a 100-token reply each.
    const test = { documents: 14_000, tokens: 14_000 * 700, loss_tokens: 14_000 * 100 };
    const m = { lengths: { test } } as never;
    const p = predictPlan(r, m, { trainTokS: 9000, decodeTokS: 1000 });
    expect(r.eval.force).toEqual(['reactive', 'proactive', 'restraint']);
    expect(p).toMatchObject({ files: 4, prompts: 56_000, promptTokens: 56_000 * 600, maxGenerated: 56_000 * 256, judged: 0 });
    expect(p.hours.predict).toBeCloseTo((56_000 * 600) / 27_000 / 3600 + (56_000 * 256) / 1000 / 3600, 9); // ~4.3 h at 1,000 tok/s
    // A run without tokens, judged by a local model: every chosen reply and the gold replies, each label's line scored.
    const sft = { ...r, data: { ...r.data, conditioning: 'none' as const }, judge: { kind: 'model' as const, model: 'm', dtype: 'auto' as const, batch_size: 8, prompt_version: 'v1' as const, also_token_runs: false } };
    const q = predictPlan(sft, m, { trainTokS: 9000, decodeTokS: 1000 });
    expect(q).toMatchObject({ files: 1, prompts: 14_000, judged: 28_000, judgeTokens: 28_000 * (600 + 256) * 3 });
    expect(q.hours.judge).toBeCloseTo((28_000 * 856 * 3) / 27_000 / 3600, 9);
  });

  it("counts the shard's own prompts: up to each first loss token, plus the behavior token of a forced prompt", async () => {
    const { predictPlan } = await import('../src/recipe/predict-plan.js');
    const { shardPromptTokens } = await import('../src/dataset/shard-prompts.js');
    const { writeSafetensors } = await import('../src/dataset/safetensors.js');
    // Two documents as the template writes them: prompt, reply (loss: behavior token .. <|im_end|>), then "\n" (no loss).
    const docs = [{ prompt: 5, reply: 3 }, { prompt: 7, reply: 2 }];
    const mask = docs.flatMap((d) => [...Array(d.prompt).fill(0), ...Array(d.reply).fill(1), 0]);
    const offsets = docs.reduce((o, d) => [...o, o.at(-1)! + d.prompt + d.reply + 1], [0]);
    const file = path.join(mkdtempSync(path.join(tmpdir(), 'bsft-prompts-')), 'test.tokens.safetensors');
    writeSafetensors(file, [['input_ids', Int32Array.from(mask, (_, i) => 100 + i)], ['loss_mask', Uint8Array.from(mask)], ['doc_offsets', BigInt64Array.from(offsets, BigInt)]]);
    expect(shardPromptTokens(file)).toBe(12);
    const r = paper('behaviorsft-lora'); // chosen + forced to each of 3 behaviors
    const m = { lengths: { test: { documents: 2, tokens: mask.length, loss_tokens: 5 } } } as never;
    const p = predictPlan(r, m, { trainTokS: 9000, decodeTokS: 1000 }, (split) => (split === 'test' ? shardPromptTokens(file) : undefined));
    expect(p.promptTokens).toBe(12 + 3 * (12 + 2));
    // The manifest alone counted each document's end of line and no behavior token: 4 x 14.
    expect(predictPlan(r, m, { trainTokS: 9000, decodeTokS: 1000 }).promptTokens).toBe(4 * 14);
  });
});
