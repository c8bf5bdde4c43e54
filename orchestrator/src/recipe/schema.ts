import { z } from 'zod';
import { tokenSafeUrl } from './hub-url.js';
import { divisors, stepBatches } from './gpu-counts.js';

/**
 * The recipe: one typed definition, shared by every command. Every object is strict, so an unknown key is an
 * error (reported with a did-you-mean suggestion by `format-issues.ts`).
 */

export const DEFAULT_BEHAVIORS = {
  reactive: {
    token: '<|behavior:reactive|>',
    description: 'Answer what was asked.',
  },
  proactive: {
    token: '<|behavior:proactive|>',
    description: 'Step in unprompted: an omission, an error, an inconsistency or a risk the team has not raised.',
  },
  restraint: {
    token: '<|behavior:restraint|>',
    description: 'Nothing warrants stepping in: a brief acknowledgement at most.',
  },
} as const;

export const DEFAULT_INSTRUCTION =
  'You are a clinical assistant taking part in a care-team conversation. Choose one behavior for each reply:\n' +
  '{behaviors}\nReply with the behavior that fits; do not name it.';

const positiveInt = z.number().int().positive();
const nonNegativeInt = z.number().int().nonnegative();
const fraction = z.number().min(0).max(1);
/** Seeds are 32-bit: the split's PRNG and numpy take 32 bits, so a larger seed would alias a smaller one. */
const seed = nonNegativeInt.max(2 ** 32 - 1);

const behaviorSchema = z.strictObject({
  token: z.string().min(1),
  description: z.string().min(1),
});

export const modelSchema = z.strictObject({
  /** A Hugging Face Hub id (`Qwen/Qwen2.5-7B-Instruct`) or a local directory (`./models/x`, relative to the recipe). */
  name_or_path: z.string().min(1),
  /** Directory with tokenizer.json and tokenizer_config.json; defaults to name_or_path. */
  tokenizer: z.string().min(1).optional(),
  revision: z.string().min(1).optional(),
  dtype: z.enum(['bfloat16', 'float16', 'float32', 'auto']).default('bfloat16'),
  /** `random`: build the model from name_or_path's config.json with random weights (smoke runs, tests). */
  init: z.enum(['pretrained', 'random']).default('pretrained'),
  /** Values that replace those of config.json (e.g. num_hidden_layers for a smaller random model). */
  config_overrides: z.record(z.string(), z.union([z.number(), z.string(), z.boolean()])).optional(),
});

const splitsSchema = z.strictObject({
  train: fraction,
  val: fraction,
  test: fraction,
});

const dataSchema = z.strictObject({
  /** Task files (JSONL, optionally .gz) or globs, relative to the recipe. */
  tasks: z.array(z.string().min(1)).min(1),
  behaviors: z.record(z.string().regex(/^[a-z][a-z0-9_]*$/, 'behavior names are lower_snake_case'), behaviorSchema)
    .default(structuredClone(DEFAULT_BEHAVIORS) as Record<string, z.infer<typeof behaviorSchema>>),
  /** category -> behavior, used when a task has no `behavior` field; also names each category's group. */
  categories: z.record(z.string().min(1), z.string().min(1)).default({}),
  conditioning: z.enum(['token', 'none', 'instruction']).default('token'),
  /** System prompt of `conditioning: instruction`; `{behaviors}` expands to the behavior list. */
  instruction: z.string().min(1).default(DEFAULT_INSTRUCTION),
  splits: splitsSchema.default({ train: 0.8, val: 0.1, test: 0.1 }),
  seed: seed.default(42),
  max_seq_len: positiveInt.default(4096),
  /** Longest task line read, in bytes; a longer line is an error (file:line), never read into memory. */
  max_line_bytes: positiveInt.default(4 * 1024 * 1024),
  /** Longest string field of a task (context content, target, ...), in UTF-8 bytes. */
  max_field_bytes: positiveInt.default(1024 * 1024),
  /** Share of documents that may be dropped for not fitting max_seq_len before the build fails. */
  max_dropped_share: fraction.default(0.05),
  /** Accept the tokenizer's control strings (`<|im_end|>`, behavior tokens, ...) inside task text. */
  allow_control_text: z.boolean().default(false),
});

export const loraSchema = z.strictObject({
  r: positiveInt.default(16),
  alpha: z.number().positive().default(32),
  dropout: fraction.default(0.05),
  targets: z.union([z.literal('all-linear'), z.array(z.string().min(1)).min(1)]).default('all-linear'),
  /**
   * `model`: the adapters compute in the model's dtype (bf16 on a GPU), with fp32 master copies for the optimizer;
   * `float32`: peft's default, which also casts every wrapped layer's input to fp32 (slower, more memory).
   */
  compute_dtype: z.enum(['model', 'float32']).default('model'),
});

export const trainSchema = z.strictObject({
  /**
   * `lora` or `full` fine-tuning; `none` trains nothing: the model is evaluated as it ships (zero-shot, conditioning
   * `none`, or `instruction` with the behaviors described), through a chat endpoint (eval.engine: openai-chat) or
   * loaded by the trainer's engines (the Hub id or folder of model.name_or_path).
   */
  method: z.enum(['lora', 'full', 'none']).default('lora'),
  lora: loraSchema.default(loraSchema.parse({})),
  /** Peak learning rate (required unless method is none). */
  lr: z.number().positive().max(1).optional(),
  schedule: z.enum(['cosine', 'linear', 'constant']).default('cosine'),
  warmup_steps: nonNegativeInt.optional(),
  warmup_ratio: fraction.optional(),
  epochs: z.number().positive().optional(),
  max_steps: positiveInt.optional(),
  batch_tokens: positiveInt.default(16384),
  grad_accum: positiveInt.default(1),
  grad_clip: z.number().positive().default(1.0),
  /** Initial behavior-token rows: the mean of every existing row, or of the rows of the behavior's description. */
  token_init: z.enum(['mean', 'description']).default('mean'),
  weight_decay: z.number().nonnegative().default(0),
  /** AdamW's beta1 and beta2. */
  adam_betas: z.tuple([z.number().min(0).lt(1), z.number().min(0).lt(1)]).default([0.9, 0.95]),
  /** AdamW's epsilon. */
  adam_eps: z.number().positive().max(1e-3).default(1e-8),
  /**
   * Recompute activations in backward: true (every layer), false, or auto: measured on the first step (optimizer
   * states included), off when the step fits the GPU, else only as many layers as needed. Off on a CPU.
   */
  activation_checkpointing: z.union([z.boolean(), z.literal('auto')]).default('auto'),
  /** torch.compile each decoder layer (regional compilation): faster steps after a compile of about a minute. */
  compile: z.boolean().default(false),
  /**
   * When a step's loss and grad norm are read for its event: `deferred` once the next step is queued (no host
   * synchronisation inside a step), `every_step` at once (the event comes one step sooner).
   */
  step_sync: z.enum(['deferred', 'every_step']).default('deferred'),
  /**
   * Where full fine-tuning keeps its master weights. `fp32`: fp32 weights and AdamW states (sharded across the
   * GPUs when there are several). `bf16_compensated`: bf16 weights and states plus a bf16 compensation buffer
   * that keeps the rounding error of every update (Kahan summation), for one GPU where fp32 states cannot fit
   * (a 7B model on one 141 GB card). Never plain bf16 AdamW: it drops small updates.
   */
  master_weights: z.enum(['fp32', 'bf16_compensated']).default('fp32'),
  /** Several GPUs: keep the sharded weights, gradients and optimizer states in host memory (fewer GPUs, slower). */
  cpu_offload: z.boolean().default(false),
  checkpoint_every: positiveInt.default(200),
  keep_checkpoints: positiveInt.default(3),
  preempt_grace_s: positiveInt.default(60),
  seed: seed.default(42),
});

export const evalSchema = z.strictObject({
  /** Evaluate loss on the val split every N optimizer steps (0: only at the end). */
  every: nonNegativeInt.default(0),
  /** Splits that `predict` runs on and `score` reports. */
  splits: z.array(z.enum(['train', 'val', 'test'])).min(1).default(['test']),
  max_new_tokens: positiveInt.default(64),
  batch_size: positiveInt.default(16),
  /** Steering runs: force each named behavior's token and score how often the reply follows it. */
  force: z.array(z.string().min(1)).default([]),
  bootstrap: nonNegativeInt.default(1000),
  /**
   * How predict decodes: `static` (length-sorted left-padded batches of batch_size), `continuous` (transformers'
   * continuous batching with paged attention: finished replies leave the batch, no padding), `auto` (continuous for
   * a transformers model on a GPU when replies are longer than one token, else static). predictions/predict.json
   * says which ran, with its tokens/s.
   */
  engine: z.enum(['auto', 'static', 'continuous', 'openai', 'openai-chat']).default('auto'),
  /**
   * `engine: openai`: a serving engine (vLLM, SGLang) serving the run's exported model (`bsft export`) behind an
   * OpenAI-compatible completions endpoint; prompts go as the dataset's token IDs. `engine: openai-chat`: any
   * OpenAI-compatible chat-completions endpoint (vLLM or SGLang serving any model, a hosted API): each task's
   * conversation goes as the messages the dataset build renders (speakers' names in the content, the instruction as
   * the system message), greedy; the reply's behavior comes from the judge. Either key only from the environment
   * (BSFT_PREDICT_API_KEY).
   */
  endpoint: z.strictObject({
    base_url: z.url(),
    /** The name the server serves the model under (vllm serve … --served-model-name). */
    model: z.string().min(1),
    max_concurrency: positiveInt.max(4096).default(64),
    timeout_s: z.number().positive().max(7200).default(600),
    max_retries: nonNegativeInt.max(20).default(4),
  }).optional(),
  /**
   * An operating point: an offset per behavior added to its token's logit when predicting (bsft balance chooses one
   * on the validation split; bsft predict --balanced applies the run's). The behavior that answers keeps 0.
   */
  behavior_offsets: z.record(z.string(), z.number().min(-100).max(100)).default({}),
  /**
   * The instruction asks each reply to start with its behavior as a tag (`[proactive] ...`): the tag is read into
   * `tagged_behavior` (null when a reply has none: a miss) and scored beside the judge's label, with their agreement.
   */
  reply_tag: z.boolean().default(false),
});

const storeSchema = z.strictObject({
  kind: z.enum(['local', 'hub']).default('local'),
  /** Local store directory; defaults to ./runs in the workspace. */
  path: z.string().min(1).optional(),
  /** Hub store: model repo `owner/name`. The token comes from HF_TOKEN, never from here. */
  repo: z.string().regex(/^[\w.-]+\/[\w.-]+$/, 'expected a repo id "owner/name"').optional(),
  private: z.boolean().default(true),
  /** Another Hub endpoint: https (http only for a local test hub on a loopback address). Workers also check it. */
  hub_url: z
    .url()
    // A string that is no URL at all gets z.url()'s message alone.
    .refine((u) => !URL.canParse(u) || tokenSafeUrl(u), 'expected an https URL (the HF_TOKEN is sent there; http only for a local hub on 127.0.0.1 or localhost)')
    .optional(),
  keep_remote: positiveInt.default(3),
});

const queueSchema = z.strictObject({
  /** 1 is the most urgent; 0 (none) runs after every prioritized run. */
  priority: nonNegativeInt.max(2_097_150).default(0),
  attempts: positiveInt.max(100).default(5),
  backoff_ms: positiveInt.default(30_000),
  max_backoff_ms: positiveInt.default(15 * 60_000),
});

/** Versions of the judge prompt (judge/prompt.ts); each label records the version that asked for it. */
export const JUDGE_PROMPT_VERSIONS = ['v1', 'v2'] as const;
export type JudgePromptVersion = (typeof JUDGE_PROMPT_VERSIONS)[number];

const judgeCommon = {
  prompt_version: z.enum(JUDGE_PROMPT_VERSIONS).default('v1'),
  /** Also judge token runs' replies: gives the agreement of a model's own token with the judge. */
  also_token_runs: z.boolean().default(false),
};

/**
 * A judge gives every reply whose behavior no token gives (no-token and instructed runs, forced-token runs) a label
 * on the recipe's behavior scale.
 * - `openai`: any OpenAI-compatible chat-completions endpoint (vllm serve, TGI, llama.cpp server, SGLang, a hosted
 *   API); its key only from the environment (BSFT_JUDGE_API_KEY).
 * - `model`: a local Hugging Face chat model run by the trainer on the worker's GPU, scoring each label's answer
 *   line by log-likelihood (no sampling).
 */
export const judgeSchema = z.discriminatedUnion('kind', [
  z.strictObject({
    kind: z.literal('openai'),
    /** The endpoint's base URL, e.g. http://judge-host:8000/v1 for `vllm serve`. */
    base_url: z.url(),
    /** The model name the endpoint serves. */
    model: z.string().min(1),
    /** Requests in flight at once. */
    max_concurrency: positiveInt.max(1024).default(16),
    /** Per request. */
    timeout_s: z.number().positive().max(3600).default(60),
    /** Retries of a request on 429, 5xx, timeouts and lost connections (backoff with jitter), before the step fails. */
    max_retries: nonNegativeInt.max(20).default(4),
    ...judgeCommon,
  }),
  z.strictObject({
    kind: z.literal('model'),
    /**
     * A Hub id or a local folder of a chat model (its tokenizer must have a chat template). A local folder with a
     * config.json and no weights gives a model of random weights (seeded): a test judge, as recipes/models' tiny one.
     */
    model: z.string().min(1),
    /** Where the judge's tokenizer (with its chat template) comes from, when not from `model`. */
    tokenizer: z.string().min(1).optional(),
    revision: z.string().min(1).optional(),
    dtype: z.enum(['auto', 'bfloat16', 'float16', 'float32']).default('auto'),
    /** Prompts per forward pass (each with every label's answer line). */
    batch_size: positiveInt.max(1024).default(8),
    ...judgeCommon,
  }),
]);

/** Experiment trackers, written by the trainer through their own packages (keys only from the environment). */
export const trackingSchema = z.array(z.enum(['tensorboard', 'wandb', 'mlflow'])).default([]);

const resourcesSchema = z.strictObject({
  /** GPUs of one run: more than 1 trains with FSDP2 across them (torchrun); 0 runs on the CPU. */
  gpus: nonNegativeInt.default(1),
  /**
   * An elastic run: the fewest GPUs it may start on. A worker that cannot give `gpus` starts it on the most it can from
   * here up, among the counts that divide the step's batches (train.grad_accum x gpus), so that every count trains
   * the same global batch (train.grad_accum follows); a resume may use another count.
   */
  min_gpus: positiveInt.optional(),
  /**
   * Machines of one run: each gives `gpus` GPUs (a worker each), and the queue starts the run only when all have
   * claimed it (gang.ts); torchrun joins them (c10d rendezvous). The run's folder must be one they all share.
   */
  nodes: positiveInt.default(1),
  /** Memory of one of those GPUs in GiB, as the device reports it (an "80 GB" H100 reports about 85e9 bytes, 79 GiB):
   * a recipe whose memory plan does not fit is refused before it is queued. */
  gpu_memory_gb: z.number().positive().default(80),
});

export const recipeSchema = z
  .strictObject({
    /** Run name; the run id is `<name>-<hash of the resolved recipe>`. */
    name: z.string().regex(/^[A-Za-z0-9][A-Za-z0-9._-]{0,63}$/, 'letters, digits, ".", "_" and "-", at most 64'),
    description: z.string().optional(),
    /** Consumed while loading; kept here so that its type is part of the schema. */
    extends: z.union([z.string(), z.array(z.string())]).optional(),
    model: modelSchema,
    data: dataSchema,
    train: trainSchema,
    eval: evalSchema.default(evalSchema.parse({})),
    store: storeSchema.default(storeSchema.parse({})),
    queue: queueSchema.default(queueSchema.parse({})),
    resources: resourcesSchema.default(resourcesSchema.parse({})),
    tracking: trackingSchema,
    judge: judgeSchema.optional(),
  })
  .superRefine((recipe, ctx) => {
    const { gpus, min_gpus: min, nodes } = recipe.resources;
    if (nodes > 1) {
      // Each machine writes its ranks' checkpoint files and rank 0 the final model: into one folder all of them see.
      if (recipe.store.kind !== 'local') {
        ctx.addIssue({ code: 'custom', path: ['resources', 'nodes'], message: `a run across machines needs a folder all of them share: store.kind local on shared storage (NFS, a cluster file system), not ${recipe.store.kind}` });
      }
      if (gpus < 1) ctx.addIssue({ code: 'custom', path: ['resources', 'nodes'], message: 'a run across machines trains on GPUs: resources.gpus (per machine) must be at least 1' });
      if (min !== undefined) ctx.addIssue({ code: 'custom', path: ['resources', 'min_gpus'], message: 'an elastic run stays on one machine: not with resources.nodes > 1' });
    }
    if (min !== undefined) {
      const batches = stepBatches(recipe);
      if (min > gpus) ctx.addIssue({ code: 'custom', path: ['resources', 'min_gpus'], message: `more than resources.gpus (${gpus})` });
      else if (batches % min !== 0) {
        ctx.addIssue({
          code: 'custom', path: ['resources', 'min_gpus'],
          message: `${min} GPUs cannot share a step of ${batches} batches (train.grad_accum ${recipe.train.grad_accum} x resources.gpus ${gpus}) ` +
            `equally; counts that can: ${divisors(batches).filter((n) => n <= gpus).join(', ')}`,
        });
      }
    }
    const behaviors = Object.keys(recipe.data.behaviors);
    if (behaviors.length < 2) {
      ctx.addIssue({ code: 'custom', path: ['data', 'behaviors'], message: 'at least two behaviors are needed' });
    }
    const seen = new Map<string, string>();
    for (const [name, b] of Object.entries(recipe.data.behaviors)) {
      const other = seen.get(b.token);
      if (other) {
        ctx.addIssue({
          code: 'custom',
          path: ['data', 'behaviors', name, 'token'],
          message: `token "${b.token}" is also the token of behavior "${other}"`,
        });
      }
      seen.set(b.token, name);
    }
    // A token inside another (`[[R]]` and `[[R]]!`) makes the text of one read as the other: refuse the pair.
    const tokens = Object.entries(recipe.data.behaviors);
    for (const [name, b] of tokens) {
      for (const [other, o] of tokens) {
        if (name !== other && b.token !== o.token && o.token.includes(b.token)) {
          ctx.addIssue({
            code: 'custom',
            path: ['data', 'behaviors', name, 'token'],
            message: `token "${b.token}" is part of the token "${o.token}" of behavior "${other}": tokens must not contain each other`,
          });
        }
      }
    }
    for (const [category, behavior] of Object.entries(recipe.data.categories)) {
      if (!behaviors.includes(behavior)) {
        ctx.addIssue({
          code: 'custom',
          path: ['data', 'categories', category],
          message: `unknown behavior "${behavior}" (behaviors: ${behaviors.join(', ')})`,
        });
      }
    }
    for (const [i, forced] of recipe.eval.force.entries()) {
      if (!behaviors.includes(forced)) {
        ctx.addIssue({
          code: 'custom',
          path: ['eval', 'force', i],
          message: `unknown behavior "${forced}" (behaviors: ${behaviors.join(', ')})`,
        });
      }
    }
    for (const b of Object.keys(recipe.eval.behavior_offsets)) {
      if (!behaviors.includes(b)) ctx.addIssue({ code: 'custom', path: ['eval', 'behavior_offsets', b], message: `unknown behavior "${b}" (behaviors: ${behaviors.join(', ')})` });
    }
    if (Object.keys(recipe.eval.behavior_offsets).length > 0 && recipe.data.conditioning !== 'token') {
      ctx.addIssue({ code: 'custom', path: ['eval', 'behavior_offsets'], message: `offsets on behavior tokens need data.conditioning "token", got "${recipe.data.conditioning}"` });
    }
    if (recipe.eval.engine === 'openai' && !recipe.eval.endpoint) {
      ctx.addIssue({ code: 'custom', path: ['eval', 'endpoint'], message: 'engine openai needs eval.endpoint ({base_url, model}): the server that serves the exported model (bsft export)' });
    }
    if (recipe.eval.engine === 'openai-chat') {
      if (!recipe.eval.endpoint) ctx.addIssue({ code: 'custom', path: ['eval', 'endpoint'], message: 'engine openai-chat needs eval.endpoint ({base_url, model}): the chat endpoint that serves the model (vllm serve, a hosted API)' });
      if (recipe.data.conditioning === 'token') {
        ctx.addIssue({ code: 'custom', path: ['eval', 'engine'], message: 'engine openai-chat sends messages, not token IDs: a token run\'s behavior tokens need engine openai (completions with the dataset\'s token IDs) on its exported model' });
      }
      if (Object.keys(recipe.eval.behavior_offsets).length > 0) ctx.addIssue({ code: 'custom', path: ['eval', 'behavior_offsets'], message: 'engine openai-chat has no behavior tokens to put offsets on' });
    }
    if (recipe.train.method !== 'none' && recipe.train.lr === undefined) ctx.addIssue({ code: 'custom', path: ['train', 'lr'], message: `expected a number: the peak learning rate of ${recipe.train.method} fine-tuning` });
    if (recipe.train.method === 'none') {
      if (recipe.eval.engine === 'openai') {
        ctx.addIssue({ code: 'custom', path: ['eval', 'engine'], message: 'train.method none: engine openai sends a trained run\'s token IDs; a model as it ships is asked through engine openai-chat (an endpoint) or the trainer\'s engines (auto, static, continuous)' });
      }
      if (recipe.data.conditioning === 'token') ctx.addIssue({ code: 'custom', path: ['data', 'conditioning'], message: 'train.method none: a model as it ships knows no behavior tokens; use conditioning none (zero-shot) or instruction (the behaviors described)' });
    }
    if (recipe.eval.reply_tag && recipe.data.conditioning !== 'instruction') {
      ctx.addIssue({ code: 'custom', path: ['eval', 'reply_tag'], message: `a reply tag is asked for by the instruction: it needs data.conditioning "instruction", got "${recipe.data.conditioning}"` });
    }
    if (recipe.eval.force.length > 0 && recipe.data.conditioning !== 'token') {
      ctx.addIssue({
        code: 'custom',
        path: ['eval', 'force'],
        message: `forcing a behavior needs data.conditioning "token", got "${recipe.data.conditioning}"`,
      });
    }
    const { train, val, test } = recipe.data.splits;
    if (Math.abs(train + val + test - 1) > 1e-9) {
      ctx.addIssue({
        code: 'custom',
        path: ['data', 'splits'],
        message: `fractions must add up to 1, got ${train} + ${val} + ${test} = ${+(train + val + test).toFixed(6)}`,
      });
    }
    if (train <= 0) {
      ctx.addIssue({ code: 'custom', path: ['data', 'splits', 'train'], message: 'the train split cannot be empty' });
    }
    if (recipe.train.method !== 'none' && (recipe.train.epochs === undefined) === (recipe.train.max_steps === undefined)) {
      ctx.addIssue({ code: 'custom', path: ['train'], message: 'set exactly one of epochs and max_steps' });
    }
    if (recipe.train.warmup_steps !== undefined && recipe.train.warmup_ratio !== undefined) {
      ctx.addIssue({ code: 'custom', path: ['train'], message: 'set at most one of warmup_steps and warmup_ratio' });
    }
    if (recipe.train.method !== 'none' && recipe.train.batch_tokens < recipe.data.max_seq_len) {
      ctx.addIssue({
        code: 'custom',
        path: ['train', 'batch_tokens'],
        message: `must hold at least one document of data.max_seq_len (${recipe.data.max_seq_len}), got ${recipe.train.batch_tokens}`,
      });
    }
    if (recipe.store.kind === 'hub' && !recipe.store.repo) {
      ctx.addIssue({ code: 'custom', path: ['store', 'repo'], message: 'required when store.kind is "hub"' });
    }
    if (recipe.store.kind === 'local' && recipe.store.repo) {
      ctx.addIssue({ code: 'custom', path: ['store', 'repo'], message: 'only used when store.kind is "hub"' });
    }
  });

export type Recipe = z.infer<typeof recipeSchema>;
export type BehaviorSpec = z.infer<typeof behaviorSchema>;
export type Conditioning = Recipe['data']['conditioning'];
export type SplitName = 'train' | 'val' | 'test';
export const SPLITS: readonly SplitName[] = ['train', 'val', 'test'];

export type JudgeSettings = z.infer<typeof judgeSchema>;
export type OpenAIJudgeSettings = Extract<JudgeSettings, { kind: 'openai' }>;
export type ModelJudgeSettings = Extract<JudgeSettings, { kind: 'model' }>;
