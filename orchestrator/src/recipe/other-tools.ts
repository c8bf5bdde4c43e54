/**
 * Settings other fine-tuning tools (axolotl, LLaMA-Factory, TRL / transformers' TrainingArguments, torchtune) use
 * for what a bsft recipe holds under another name: a recipe written from habit gets "did you mean train.lr" even
 * where the spelling is far from ours. `note`: where the meaning differs, what to write instead.
 */
export interface OtherToolKey {
  path: string;
  note?: string;
}

const BATCH_IN_TOKENS = 'bsft batches count tokens, not examples: set train.batch_tokens (e.g. 16384)';

export const OTHER_TOOL_KEYS: Record<string, OtherToolKey> = {
  learning_rate: { path: 'train.lr' },
  lr_scheduler: { path: 'train.schedule' },
  lr_scheduler_type: { path: 'train.schedule' },
  num_epochs: { path: 'train.epochs' },
  num_train_epochs: { path: 'train.epochs' },
  epochs: { path: 'train.epochs' },
  max_steps: { path: 'train.max_steps' },
  micro_batch_size: { path: 'train.batch_tokens', note: BATCH_IN_TOKENS },
  per_device_train_batch_size: { path: 'train.batch_tokens', note: BATCH_IN_TOKENS },
  batch_size: { path: 'train.batch_tokens', note: BATCH_IN_TOKENS },
  gradient_accumulation_steps: { path: 'train.grad_accum' },
  max_grad_norm: { path: 'train.grad_clip' },
  gradient_clipping: { path: 'train.grad_clip' },
  clip_grad_norm: { path: 'train.grad_clip' },
  warmup_steps: { path: 'train.warmup_steps' },
  warmup_ratio: { path: 'train.warmup_ratio' },
  weight_decay: { path: 'train.weight_decay' },
  adam_beta1: { path: 'train.adam_betas', note: 'write both as train.adam_betas: [beta1, beta2]' },
  adam_beta2: { path: 'train.adam_betas', note: 'write both as train.adam_betas: [beta1, beta2]' },
  adam_epsilon: { path: 'train.adam_eps' },
  gradient_checkpointing: { path: 'train.activation_checkpointing' },
  enable_activation_checkpointing: { path: 'train.activation_checkpointing' },
  torch_compile: { path: 'train.compile' },
  compile: { path: 'train.compile' },
  save_steps: { path: 'train.checkpoint_every' },
  save_total_limit: { path: 'train.keep_checkpoints' },
  seed: { path: 'train.seed', note: 'data.seed sets the split and packing order' },
  finetuning_type: { path: 'train.method', note: 'lora or full' },
  adapter: { path: 'train.method', note: 'lora or full' },
  lora_r: { path: 'train.lora.r' },
  lora_rank: { path: 'train.lora.r' },
  lora_alpha: { path: 'train.lora.alpha' },
  lora_dropout: { path: 'train.lora.dropout' },
  lora_target: { path: 'train.lora.targets' },
  lora_target_modules: { path: 'train.lora.targets' },
  target_modules: { path: 'train.lora.targets' },
  lora_attn_modules: { path: 'train.lora.targets' },
  base_model: { path: 'model.name_or_path' },
  model_name_or_path: { path: 'model.name_or_path' },
  model_name: { path: 'model.name_or_path' },
  tokenizer_name_or_path: { path: 'model.tokenizer' },
  tokenizer_name: { path: 'model.tokenizer' },
  torch_dtype: { path: 'model.dtype' },
  bf16: { path: 'model.dtype', note: 'write model.dtype: bfloat16' },
  fp16: { path: 'model.dtype', note: 'write model.dtype: float16' },
  dtype: { path: 'model.dtype' },
  sequence_len: { path: 'data.max_seq_len' },
  max_seq_length: { path: 'data.max_seq_len' },
  max_seq_len: { path: 'data.max_seq_len' },
  max_length: { path: 'data.max_seq_len' },
  cutoff_len: { path: 'data.max_seq_len' },
  datasets: { path: 'data.tasks', note: 'a list of BehaviorBench task files (JSONL), globs allowed' },
  dataset: { path: 'data.tasks', note: 'a list of BehaviorBench task files (JSONL), globs allowed' },
  train_file: { path: 'data.tasks' },
  dataset_path: { path: 'data.tasks' },
  val_set_size: { path: 'data.splits.val' },
  output_dir: { path: 'store.path' },
  hub_model_id: { path: 'store.repo' },
  push_to_hub: { path: 'store.kind', note: 'write store.kind: hub with store.repo' },
  eval_steps: { path: 'eval.every' },
  per_device_eval_batch_size: { path: 'eval.batch_size' },
  max_new_tokens: { path: 'eval.max_new_tokens' },
  report_to: { path: 'tracking' },
  num_gpus: { path: 'resources.gpus' },
};

/** The bsft setting an unknown key at `at` means in another tool, unless it is that very place. */
export function otherToolKey(at: readonly (string | number)[], key: string): OtherToolKey | undefined {
  const hit = OTHER_TOOL_KEYS[key.toLowerCase()];
  if (!hit) return undefined;
  return hit.path === [...at, key].join('.') ? undefined : hit;
}
