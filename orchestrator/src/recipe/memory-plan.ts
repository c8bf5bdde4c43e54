import { existsSync, readFileSync } from 'node:fs';
import path from 'node:path';
import { PACKAGE_ROOT } from '../util/package-root.js';
import type { ResolvedRecipe } from './resolve.js';
import { RecipeError } from './recipe-error.js';
import { gpuCounts, worldGpus } from './gpu-counts.js';

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
  'Qwen/Qwen2.5-32B-Instruct': 'recipes/models/qwen2.5-32b-shape/config.json',
  'Qwen/Qwen2.5-32B': 'recipes/models/qwen2.5-32b-shape/config.json',
  'Qwen/Qwen2.5-72B-Instruct': 'recipes/models/qwen2.5-72b-shape/config.json',
  'Qwen/Qwen2.5-72B': 'recipes/models/qwen2.5-72b-shape/config.json',
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

/** The plan's one unit, the trainer's (memory.py `gib`): GiB, as a device reports its memory. */
const GIB = 2 ** 30;

/** How a recipe trains, as far as what a layer keeps for backward goes (trainer-python/bench/saved_activations.py
 * METHODS, the same names). */
export type SavedVariant = 'full' | 'lora' | 'lora-no-dropout' | 'lora-float32' | 'lora-float32-no-dropout';

/**
 * Bytes one decoder layer keeps for backward per token, without recomputation: coefficients of the hidden size, the
 * MLP's intermediate size, the key/value width (key/value heads x head size), the attention heads (the attention
 * kernel's fp32 log-sum-exp) and the LoRA rank, plus a constant. Measured, not calibrated: one layer built as the
 * trainer builds it (bf16; LoRA on all linear layers), a forward under autograd's saved-tensor hooks, each storage
 * counted once, with the GPU's attention kernel (varlen flash: q, k, v, output, log-sum-exp) and dropout (a bool
 * mask) (trainer-python/bench/saved_activations.py). The formula gives the measured bytes exactly at the shapes of
 * Qwen2.5-0.5B, 7B and 32B (at 7B: full 225,400; LoRA 280,408; without dropout 211,288; peft's fp32 adapters
 * 361,528), and the orchestrator's suite measures the 7B shape again against it. LoRA on fewer than all linear
 * layers keeps less: the formula is then an upper bound.
 */
export const SAVED_BYTES: Record<SavedVariant, { hidden: number; intermediate: number; kv: number; heads: number; rank: number; constant: number }> = {
  full: { hidden: 20, intermediate: 8, kv: 4, heads: 4, rank: 0, constant: 8 },
  lora: { hidden: 30, intermediate: 9, kv: 4, heads: 4, rank: 14, constant: 8 },
  'lora-no-dropout': { hidden: 16, intermediate: 8, kv: 4, heads: 4, rank: 14, constant: 8 },
  'lora-float32': { hidden: 42, intermediate: 11, kv: 4, heads: 4, rank: 28, constant: 8 },
  'lora-float32-no-dropout': { hidden: 36, intermediate: 10, kv: 4, heads: 4, rank: 28, constant: 8 },
};

/** Which of SAVED_BYTES a recipe's training is. */
export function savedVariant(train: ResolvedRecipe['train']): SavedVariant {
  if (train.method === 'full') return 'full';
  const dtype = train.lora.compute_dtype === 'float32' ? '-float32' : '';
  return `lora${dtype}${train.lora.dropout > 0 ? '' : '-no-dropout'}` as SavedVariant;
}

/** Bytes one decoder layer of `shape` keeps for backward per token when it trains as `train` says (SAVED_BYTES). */
export function savedBytesPerToken(shape: ModelShape, train: ResolvedRecipe['train']): number {
  const c = SAVED_BYTES[savedVariant(train)];
  const rank = train.method === 'lora' ? train.lora.r : 0;
  return c.hidden * shape.hidden_size + c.intermediate * shape.intermediate_size + c.kv * kvWidth(shape) +
    c.heads * shape.num_attention_heads + c.rank * rank + c.constant;
}
/** Positions of the loss computed at once (trainer loss.py): their fp32 logits are the loss's working memory. */
const LOSS_CHUNK = 4096;
/** Share of a card a plan may use (allocator fragmentation, CUDA context); the trainer's `auto` budget is the same
 * share of the memory its process can have (trainer-python memory.py BUDGET_SHARE). */
export const USABLE_SHARE = 0.9;
/** The cards the plan is shown for, in GiB as the device reports its memory (`resources.gpu_memory_gb` is in the
 * same unit): 80 (H100, A100 80GB) and 141 (H200). */
export const CARDS_GB = [80, 141];

/** Bytes of a card of `gb` (`resources.gpu_memory_gb`): GiB, the unit the trainer reads its device's memory in. */
export const cardBytes = (gb: number) => gb * GIB;

/** What a step needs besides the saved activations (bytes per GPU), each term where the trainer allocates it. */
export interface WorkingMemory {
  /** A chunk of the loss's fp32 logits and their derivative (loss.py, LOSS_CHUNK positions). */
  loss_logits: number;
  /** The fused loss's state per loss token kept for backward: the hidden-state gradient (H values) + its index. */
  loss_state: number;
  /** The fp32 vocabulary x hidden gradient of the output weight, summed over chunks and held from the loss's
   * forward to its backward (when the output weight trains). */
  output_grad: number;
  /** The loss's backward: the gradients scaled by the step's divisor (an fp32 output-weight gradient and its cast
   * to the weight's dtype when the output weight trains; the hidden-state gradient). */
  loss_backward: number;
  /** Sharded: the root (embeddings, output weight, behavior rows) gathered in bf16 for the whole step, and two
   * decoder layers at a time (the one running and the one prefetched). */
  gathered: number;
  /** Sharded: a layer's gradients unsharded in bf16 and their fp32 copy for the reduce-scatter. */
  reduce: number;
}

export interface MemoryPlan {
  params: number;
  trainable: number;
  gpus: number;
  /** Bytes per GPU. */
  weights: number;
  gradients: number;
  optimizer: number;
  /** Saved activations at the recomputation this plan takes (`recomputed` of `layers`), and one layer's while it is
   * recomputed. */
  activations: number;
  /** Sum of the working terms (`working_parts`): a step's memory besides its saved activations. */
  working: number;
  working_parts: WorkingMemory;
  /** At the optimizer step (activations freed): AdamW's foreach temporaries, one fp32 value per trainable
   * parameter on this GPU (the compensated AdamW works a slice at a time). */
  optimizer_step: number;
  /** The larger of forward/backward (weights + gradients + optimizer + activations + working) and the optimizer
   * step (weights + gradients + optimizer + optimizer_step). */
  total: number;
  /** How the trainer runs it, in words. */
  layout: string;
  /** Decoder layers whose activations are recomputed in backward: all with activation_checkpointing true, none
   * with false, and with auto the fewest that fit the card (the trainer takes the same decision, from
   * `peakByRecomputed`, against its GPU's measured memory before step 1). */
  recomputed: number;
  layers: number;
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

/** Every term of the plan but the recomputation's, which `withRecompute` adds. */
type PlanBase = Omit<MemoryPlan, 'activations' | 'working' | 'total' | 'recomputed'> & {
  /** Bytes saved per token: by a layer that keeps its activations, by one that recomputes them (its input). */
  per_token_layer: number;
  per_token_recomputed: number;
  tokens: number;
  working_base: number;
};

function planBase(recipe: ResolvedRecipe, shape: ModelShape, gpus: number): PlanBase {
  const t = recipe.train;
  const { params, embed, layer } = counts(shape);
  const n = gpus;
  const sharded = n > 1;
  const lora = t.method === 'lora';
  const h = shape.hidden_size;
  const rows = h * 2 * 8; // a few behavior-token rows: negligible
  const trainable = lora ? loraParams(shape, t.lora.r) + rows : params;
  let weights: number;
  let gradients: number;
  let optimizer: number;
  let optimizerStep: number;
  let layout: string;
  if (!sharded) {
    const compensated = t.master_weights === 'bf16_compensated' && !lora;
    weights = 2 * params + (compensated ? 0 : 4 * trainable); // bf16 model + fp32 masters of what trains
    gradients = compensated ? 2 * trainable : 4 * trainable; // fp32 on the masters (bf16 ones freed one by one)
    optimizer = compensated ? 6 * trainable : 8 * trainable; // AdamW: 2 states (+ the compensation buffer)
    // CompensatedAdamW: SLICE (2^24) elements in fp32 at a time, about five temporaries of it.
    optimizerStep = compensated ? Math.min(trainable, 2 ** 24) * 4 * 5 : 4 * trainable;
    layout = compensated ? 'one GPU, bf16 weights, compensated bf16 AdamW' : 'one GPU, bf16 weights, fp32 master copies and AdamW';
  } else {
    const offload = t.cpu_offload ? 0 : 1;
    weights = (4 * params * offload) / n; // fp32 shards: the master weights
    gradients = (4 * trainable * offload) / n;
    optimizer = (8 * trainable * offload) / n;
    optimizerStep = (4 * trainable * offload) / n;
    layout = `FSDP2 over ${n} GPUs, fp32 sharded masters${t.cpu_offload ? ' offloaded to host memory' : ''}`;
  }
  const tokens = t.batch_tokens;
  const outputRows = embed / (shape.tie_word_embeddings ? 1 : 2); // vocabulary x hidden
  const trainsOutput = !lora;
  const parts: WorkingMemory = {
    loss_logits: LOSS_CHUNK * shape.vocab_size * 4 * 2,
    loss_state: tokens * (2 * h + 8),
    output_grad: trainsOutput ? 4 * outputRows : 0,
    loss_backward: (trainsOutput ? (4 + 2) * outputRows : 0) + tokens * 2 * h,
    gathered: sharded ? 2 * embed + 2 * 2 * layer : 0,
    reduce: sharded ? (2 + 4) * (lora ? loraParams(shape, t.lora.r) / shape.num_hidden_layers : layer) : 0,
  };
  return {
    params, trainable, gpus: n, weights, gradients, optimizer, optimizer_step: optimizerStep, layout,
    working_parts: parts, working_base: Object.values(parts).reduce((a, b) => a + b, 0), layers: shape.num_hidden_layers,
    per_token_layer: savedBytesPerToken(shape, t), per_token_recomputed: 2 * h, tokens,
  };
}

function withRecompute(b: PlanBase, recomputed: number): MemoryPlan {
  const { per_token_layer: perLayer, per_token_recomputed: perInput, tokens, working_base: working, ...rest } = b;
  // Kept activations of the other layers, the inputs of the recomputed ones, and one layer's while it recomputes.
  const activations = tokens * ((b.layers - recomputed) * perLayer + recomputed * perInput + (recomputed > 0 ? perLayer : 0));
  const fixed = b.weights + b.gradients + b.optimizer;
  const total = Math.max(fixed + activations + working, fixed + b.optimizer_step);
  return { ...rest, activations, working, total, recomputed };
}

/**
 * The plan's total per GPU for 0, 1, ... all decoder layers recomputed (index = layers recomputed, the first ones):
 * what `auto` chooses from, here against a card and in the trainer (train.json `memory_plan`) against its GPU.
 */
export function peakByRecomputed(recipe: ResolvedRecipe, shape: ModelShape, gpus = worldGpus(recipe)): number[] {
  const b = planBase(recipe, shape, gpus);
  return Array.from({ length: b.layers + 1 }, (_, n) => withRecompute(b, n).total);
}

/** `auto`'s decision: the fewest recomputed layers whose peak fits `budget` bytes (all of them when none fits). The
 * trainer's `memory.planned_recompute` is this rule. */
export function recomputeToFit(peaks: number[], budget: number): number {
  const n = peaks.findIndex((p) => p <= budget);
  return n < 0 ? peaks.length - 1 : n;
}

/** The plan of one recipe on `gpus` GPUs (default: all of its ranks, resources.gpus on each of resources.nodes machines)
 * of `cardGb` (default: its gpu_memory_gb). */
export function memoryPlan(recipe: ResolvedRecipe, shape: ModelShape, gpus = worldGpus(recipe),
  cardGb = recipe.resources.gpu_memory_gb): MemoryPlan {
  const b = planBase(recipe, shape, gpus);
  const mode = recipe.train.activation_checkpointing;
  const recomputed = mode === true ? b.layers : mode === false ? 0
    : recomputeToFit(peakByRecomputed(recipe, shape, gpus), USABLE_SHARE * cardBytes(cardGb));
  return withRecompute(b, recomputed);
}

/** train.json `memory_plan`: what the trainer's `activation_checkpointing: auto` decides from before step 1. */
export function trainerMemoryPlan(recipe: ResolvedRecipe): { gpus: number; peak_bytes: number[] } | undefined {
  const shape = modelShape(recipe);
  if (!shape) return undefined;
  const gpus = worldGpus(recipe);
  return { gpus, peak_bytes: peakByRecomputed(recipe, shape, gpus).map(Math.round) };
}

export function fits(plan: MemoryPlan, cardGb: number): boolean {
  return plan.total <= USABLE_SHARE * cardBytes(cardGb);
}

/** The fewest GPUs (1, 2, 4, 8, ... 64) on which the recipe fits cards of `cardGb`, undefined when none. */
export function gpusNeeded(recipe: ResolvedRecipe, shape: ModelShape, cardGb: number): number | undefined {
  for (let n = 1; n <= 64; n *= 2) if (fits(memoryPlan(recipe, shape, n, cardGb), cardGb)) return n;
  return undefined;
}

/** Bytes in the plan's unit (GiB), as the trainer logs them. */
export const gib = (bytes: number) => `${(bytes / GIB).toFixed(1)} GiB`;

/** The plan as table rows (one per recipe). */
export function planRow(recipe: ResolvedRecipe): string[] {
  const shape = modelShape(recipe);
  if (!shape) return [recipe.run_id, `${worldGpus(recipe)}`, 'unknown model shape', ...PLAN_COLUMNS.slice(3).map(() => '')];
  const p = memoryPlan(recipe, shape);
  const need = CARDS_GB.map((c) => gpusNeeded(recipe, shape, c));
  const machines = recipe.resources.nodes > 1 ? ` (${recipe.resources.nodes} machines x ${recipe.resources.gpus})` : '';
  return [recipe.run_id, `${p.gpus}${machines}`, `${(p.params / 1e9).toFixed(2)} B`, gib(p.weights), gib(p.gradients), gib(p.optimizer),
    `${gib(p.activations)} (recompute ${p.recomputed}/${p.layers})`, gib(p.working), gib(p.optimizer_step), gib(p.total),
    ...need.map((n) => (n ? String(n) : '>64'))];
}

export const PLAN_COLUMNS = ['run', 'gpus', 'params', 'weights/GPU', 'grads/GPU', 'optimizer/GPU', 'activations/GPU', 'working/GPU',
  'optimizer step/GPU', 'total/GPU', ...CARDS_GB.map((c) => `GPUs@${c}GiB`)];

/** What the working and optimizer-step columns hold, in words (printed under the plan). */
export const PLAN_LEGEND = [
  'working: a chunk of the loss\'s fp32 logits; the fused loss\'s state per loss token (hidden-state gradient); the fp32 ' +
  'output-weight gradient held from the loss\'s forward to its backward and the loss backward\'s scaled copies (full ' +
  'fine-tuning); sharded: the root and two layers gathered in bf16, and a layer\'s gradients with their fp32 reduce buffer.',
  'optimizer step: AdamW\'s foreach temporaries at step time (one fp32 value per trainable parameter on the GPU), when ' +
  'the activations are freed; total is the larger of forward/backward and the step.',
  'recompute n/N: decoder layers whose activations are recomputed (auto: the fewest that fit the card; the trainer ' +
  'decides the same way against its GPU before step 1).',
];

/**
 * An elastic run (resources.min_gpus) must fit on each count it may start on: the fewest GPUs hold the biggest shards.
 * Refuses one whose smallest count does not fit, naming the smallest that does.
 */
function checkElastic(recipe: ResolvedRecipe, shape: ModelShape, card: number): void {
  const counts = gpuCounts(recipe);
  const plan = memoryPlan(recipe, shape, counts[0]);
  if (counts.length < 2 || fits(plan, card)) return;
  const fewest = counts.find((n) => fits(memoryPlan(recipe, shape, n), card));
  throw new RecipeError([{
    path: 'resources.min_gpus',
    message: `${recipe.run_id} needs about ${gib(plan.total)} per GPU on ${plan.gpus} GPU(s) (${plan.layout}), more than ` +
      `${USABLE_SHARE * 100}% of resources.gpu_memory_gb (${card}); the fewest of its counts (${counts.join(', ')}) that fit: ${fewest}`,
  }]);
}

/**
 * Refuses (RecipeError) a recipe whose plan on its `resources.gpus` does not fit `resources.gpu_memory_gb`, naming
 * the GPU count that would; a recipe of unknown shape or without GPUs passes (the trainer's own out-of-memory
 * error, exit 2, is then the answer). An elastic run must fit on its smallest count too.
 */
export function checkFits(recipe: ResolvedRecipe): void {
  if (recipe.train.method === 'none') return; // nothing trained here: the model is served elsewhere
  const shape = modelShape(recipe);
  if (!shape || recipe.resources.gpus < 1) return;
  const card = recipe.resources.gpu_memory_gb;
  const plan = memoryPlan(recipe, shape);
  if (fits(plan, card)) return checkElastic(recipe, shape, card);
  const need = gpusNeeded(recipe, shape, card);
  const single = recipe.train.method === 'full' && recipe.resources.gpus === 1 && recipe.train.master_weights === 'fp32'
    ? '; or train.master_weights: bf16_compensated on one card of 141 GB' : '';
  throw new RecipeError([{
    path: 'resources.gpus',
    message: `${recipe.run_id} needs about ${gib(plan.total)} per GPU on ${plan.gpus} GPU(s) (${plan.layout}: weights ${gib(plan.weights)}, ` +
      `gradients ${gib(plan.gradients)}, optimizer ${gib(plan.optimizer)}, activations ${gib(plan.activations)} with ${plan.recomputed} of ` +
      `${plan.layers} layers recomputed, working ${gib(plan.working)}), more than ${USABLE_SHARE * 100}% of ` +
      `resources.gpu_memory_gb (${card}); ${need ? (recipe.resources.nodes > 1 ? `give it ${need} GPUs in all (resources.gpus x resources.nodes)` : `set resources.gpus: ${need}`) : 'no GPU count up to 64 fits'}${single}`,
  }]);
}
