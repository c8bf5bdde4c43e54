import path from 'node:path';
import { PACKAGE_ROOT } from '../util/package-root.js';

/** The paper's comparison set (arXiv 2505.21757) on Qwen2.5-7B-Instruct: BehaviorSFT first (the deltas' baseline). */
export const PRESETS: Record<string, { label: string; recipes: string[] }> = {
  'paper-qwen2.5-7b': {
    label: 'BehaviorSFT paper reproduction, Qwen2.5-7B-Instruct',
    recipes: ['behaviorsft-lora', 'behaviorsft-full', 'standard-sft', 'instructed'].map((r) => path.join(PACKAGE_ROOT, 'recipes', 'paper', `${r}.yaml`)),
  },
};

/**
 * LoRA throughput measured on the project's H200 (packed 8k, flex_attention, ../shared/GPU-NOTES.md: 9,037 real
 * tok/s). Full fine-tuning is estimated at 4/6 of it (6 instead of ~4 FLOP per parameter and token); both can be
 * overridden with --tokens-per-s.
 */
export const MEASURED_LORA_TOK_S = 9037;
