import { existsSync, readFileSync } from 'node:fs';
import path from 'node:path';
import { PACKAGE_ROOT } from '../util/package-root.js';
import type { ResolvedRecipe } from './resolve.js';
import { RecipeError } from './recipe-error.js';

/**
 * GPU memory arithmetic of a recipe: what one GPU holds for weights, gradients, optimizer states and activations
 * at the recipe's `batch_tokens`, for the way the trainer runs it (trainer-python: one process with fp32 master
 * copies or compensated bf16; FSDP2 over several GPUs with fp32 sharded masters; `cpu_offload`). An estimate for
 * planning and for refusing a recipe that cannot fit before anything is queued; the trainer's `mem_gib` figures
 * are the measurement.
 */

/** The architecture figures the arithmetic needs (a transformers config.json). */
export interface ModelShape {
  vocab_size: number;
  hidden_size: number;
  intermediate_size: number;
  num_hidden_layers: number;
  num_attention_heads: number;
  num_key_value_heads?: number;
  tie_word_embeddings?: boolean;
}

/** Hub ids whose config.json ships with bsft (for plans made before the weights are downloaded). */
const BUNDLED_SHAPES: Record<string, string> = {
  'Qwen/Qwen2.5-7B-Instruct': 'recipes/models/qwen2.5-7b-shape/config.json',
  'Qwen/Qwen2.5-7B': 'recipes/models/qwen2.5-7b-shape/config.json',
};

/** The model's shape (config.json of a local folder or a bundled one), overrides applied; undefined when unknown. */
export function modelShape(recipe: ResolvedRecipe): ModelShape | undefined {
  const name = recipe.model.name_or_path;
  const local = path.join(name, 'config.json');
  const file = existsSync(local) ? local : BUNDLED_SHAPES[name] ? path.join(PACKAGE_ROOT, BUNDLED_SHAPES[name]) : undefined;
  if (!file) return undefined;
  const config = { ...(JSON.parse(readFileSync(file, 'utf8')) as Record<string, unknown>), ...(recipe.model.config_overrides ?? {}) };
  const need = ['vocab_size', 'hidden_size', 'intermediate_size', 'num_hidden_layers', 'num_attention_heads'];
  return need.every((k) => typeof config[k] === 'number') ? (config as unknown as ModelShape) : undefined;
}

const GB = 1e9;
/** Activations saved per token and decoder layer without recomputation, in bf16 elements: 12 x hidden + 6.6 x
 * intermediate, calibrated on Qwen2.5-7B packed at 8k tokens (../shared/GPU-NOTES.md: 92 GB peak, LoRA). */
const ACT_HIDDEN = 12;
const ACT_INTERMEDIATE = 6.6;
/** Positions of the loss computed at once (trainer loss.py): their fp32 logits are the loss's working memory. */
const LOSS_CHUNK = 4096;
/** Share of a card a plan may use (allocator fragmentation, CUDA context). */
export const USABLE_SHARE = 0.9;
/** The cards the plan is shown for: 80 GB (H100, A100 80GB) and 141 GB (H200). */
export const CARDS_GB = [80, 141];

export interface MemoryPlan {
  params: number;
  trainable: number;
  gpus: number;
  /** Bytes per GPU. */
  weights: number;
  gradients: number;
  optimizer: number;
  activations: number;
  /** Gathered layers, loss logits: what a step needs besides its saved activations. */
  working: number;
  total: number;
  /** How the trainer runs it, in words. */
  layout: string;
  /** Whether activations assume every layer recomputed (activation_checkpointing true or auto). */
  recompute: boolean;
}

/** Width of the key (and value) projection: KV heads x head size. */
function kvWidth(s: ModelShape): number {
  return (s.num_key_value_heads ?? s.num_attention_heads) * (s.hidden_size / s.num_attention_heads);
}

function counts(s: ModelShape): { params: number; embed: number; layer: number } {
  const h = s.hidden_size;
  const kv = kvWidth(s);
  const layer = h * h * 2 + 2 * h * kv + h + 2 * kv + 3 * h * s.intermediate_size + 2 * h;
  const embed = s.vocab_size * h * (s.tie_word_embeddings ? 1 : 2);
  return { params: embed + s.num_hidden_layers * layer + h, embed, layer };
}

function loraParams(s: ModelShape, r: number): number {
  const h = s.hidden_size;
  const kv = kvWidth(s);
  // all-linear: q, k, v, o, gate, up, down; each adds r x (in + out)
  const perLayer = r * ((h + h) * 2 + (h + kv) * 2 + (h + s.intermediate_size) * 3);
  return s.num_hidden_layers * perLayer;
}

/** The plan of one recipe on `gpus` GPUs (default: its resources.gpus). */
export function memoryPlan(recipe: ResolvedRecipe, shape: ModelShape, gpus = Math.max(1, recipe.resources.gpus)): MemoryPlan {
  const t = recipe.train;
  const { params, embed, layer } = counts(shape);
  const n = gpus;
  const sharded = n > 1;
  const lora = t.method === 'lora';
  const rows = shape.hidden_size * 2 * 8; // a few behavior-token rows: negligible
  const trainable = lora ? loraParams(shape, t.lora.r) + rows : params;
  let weights: number;
  let gradients: number;
  let optimizer: number;
  let layout: string;
  if (!sharded) {
    const compensated = t.master_weights === 'bf16_compensated' && !lora;
    weights = 2 * params + (compensated ? 0 : 4 * trainable); // bf16 model + fp32 masters of what trains
    gradients = compensated ? 2 * trainable : 4 * trainable; // fp32 on the masters (bf16 ones freed one by one)
    optimizer = compensated ? 6 * trainable : 8 * trainable; // AdamW: 2 states (+ the compensation buffer)
    layout = compensated ? 'one GPU, bf16 weights, compensated bf16 AdamW' : 'one GPU, bf16 weights, fp32 master copies and AdamW';
  } else {
    const offload = t.cpu_offload ? 0 : 1;
    weights = (4 * params * offload) / n; // fp32 shards: the master weights
    gradients = (4 * trainable * offload) / n;
    optimizer = (8 * trainable * offload) / n;
    layout = `FSDP2 over ${n} GPUs, fp32 sharded masters${t.cpu_offload ? ' offloaded to host memory' : ''}`;
  }
  const recompute = t.activation_checkpointing !== false;
  const tokens = t.batch_tokens;
  const perTokenLayer = 2 * (ACT_HIDDEN * shape.hidden_size + ACT_INTERMEDIATE * shape.intermediate_size);
  const activations = recompute
    ? tokens * (shape.num_hidden_layers * 2 * shape.hidden_size + perTokenLayer) // every layer's input + one layer
    : tokens * shape.num_hidden_layers * perTokenLayer;
  // Loss: a chunk of fp32 logits; full fine-tuning also sums the output weight's gradient in fp32.
  let working = LOSS_CHUNK * shape.vocab_size * 4 * 2 + (lora ? 0 : (embed / (shape.tie_word_embeddings ? 1 : 2)) * 4);
  // Sharded: the root (embeddings, output weight) stays gathered in bf16 through a step, two layers at a time too.
  if (sharded) working += 2 * embed + 2 * 2 * layer;
  return { params, trainable, gpus: n, weights, gradients, optimizer, activations, working, total: weights + gradients + optimizer + activations + working, layout, recompute };
}

export function fits(plan: MemoryPlan, cardGb: number): boolean {
  return plan.total <= USABLE_SHARE * cardGb * GB;
}

/** The fewest GPUs (1, 2, 4, 8, ... 64) on which the recipe fits cards of `cardGb`, undefined when none. */
export function gpusNeeded(recipe: ResolvedRecipe, shape: ModelShape, cardGb: number): number | undefined {
  for (let n = 1; n <= 64; n *= 2) if (fits(memoryPlan(recipe, shape, n), cardGb)) return n;
  return undefined;
}

export const gb = (bytes: number) => `${(bytes / GB).toFixed(1)} GB`;

/** The plan as table rows (one per recipe). */
export function planRow(recipe: ResolvedRecipe): string[] {
  const shape = modelShape(recipe);
  if (!shape) return [recipe.run_id, `${recipe.resources.gpus}`, 'unknown model shape', '', '', '', '', '', '', ''];
  const p = memoryPlan(recipe, shape);
  const need = CARDS_GB.map((c) => gpusNeeded(recipe, shape, c));
  return [recipe.run_id, String(p.gpus), `${(p.params / 1e9).toFixed(2)} B`, gb(p.weights), gb(p.gradients), gb(p.optimizer),
    `${gb(p.activations)}${p.recompute ? ' (recompute)' : ''}`, gb(p.total), ...need.map((n) => (n ? String(n) : '>64'))];
}

export const PLAN_COLUMNS = ['run', 'gpus', 'params', 'weights/GPU', 'grads/GPU', 'optimizer/GPU', 'activations/GPU', 'total/GPU', ...CARDS_GB.map((c) => `GPUs@${c}GB`)];

/**
 * Refuses (RecipeError) a recipe whose plan on its `resources.gpus` does not fit `resources.gpu_memory_gb`, naming
 * the GPU count that would; a recipe of unknown shape or without GPUs passes (the trainer's own out-of-memory
 * error, exit 2, is then the answer).
 */
export function checkFits(recipe: ResolvedRecipe): void {
  const shape = modelShape(recipe);
  if (!shape || recipe.resources.gpus < 1) return;
  const card = recipe.resources.gpu_memory_gb;
  const plan = memoryPlan(recipe, shape);
  if (fits(plan, card)) return;
  const need = gpusNeeded(recipe, shape, card);
  const single = recipe.train.method === 'full' && recipe.resources.gpus === 1 && recipe.train.master_weights === 'fp32'
    ? '; or train.master_weights: bf16_compensated on one card of 141 GB' : '';
  throw new RecipeError([{
    path: 'resources.gpus',
    message: `${recipe.run_id} needs about ${gb(plan.total)} per GPU on ${plan.gpus} GPU(s) (${plan.layout}: weights ${gb(plan.weights)}, ` +
      `gradients ${gb(plan.gradients)}, optimizer ${gb(plan.optimizer)}, activations ${gb(plan.activations)}), more than ${USABLE_SHARE * 100}% of ` +
      `resources.gpu_memory_gb (${card}); ${need ? `set resources.gpus: ${need}` : 'no GPU count up to 64 fits'}${single}`,
  }]);
}
