import type { Manifest } from '../dataset/manifest.js';
import type { ResolvedRecipe } from './resolve.js';

/**
 * Generated tokens per second of predict at Qwen2.5-7B's shape on one GPU. Not measured by this project yet
 * (`python trainer-python/bench/predict.py` on a GPU, a step of scripts/gpu-check.sh, measures it; a run's
 * predictions/predict.json records what its predict reached): an estimate, the upper end of what batched
 * `generate` reaches at that shape, and said to be one wherever it is used.
 */
export const ESTIMATED_DECODE_TOK_S = 1000;

/** Prompt tokens run forward per second: a forward pass is about a third of a training step's work. */
export const prefillRate = (trainTokS: number) => 3 * trainTokS;

export interface PredictPlan {
  /** Predictions files: each eval split, once chosen and once per forced behavior. */
  files: number;
  /** Prompts predicted (tasks x files). */
  prompts: number;
  promptTokens: number;
  /** Generated tokens at most: every reply running to eval.max_new_tokens. */
  maxGenerated: number;
  /** Replies a `kind: model` judge reads (0 without one, or with an endpoint judge), and the tokens it runs forward. */
  judged: number;
  judgeTokens: number;
  hours: { predict: number; judge: number };
}

/**
 * What predict (and a `kind: model` judge, which runs on the train job's GPU) costs for one run, from its dataset
 * manifest: prompt tokens at the prefill rate, and max_new_tokens for every reply at the decode rate (an upper
 * bound: replies that end early cost less).
 */
export function predictPlan(r: ResolvedRecipe, m: Manifest, rates: { trainTokS: number; decodeTokS: number },
  /** split -> the prompt tokens of its documents, read from its shard (shardPromptTokens); else estimated from the manifest. */
  promptTokensOf?: (split: string) => number | undefined): PredictPlan {
  const forced = r.data.conditioning === 'token' ? r.eval.force.length : 0;
  const files = r.eval.splits.length * (1 + forced);
  let prompts = 0;
  let promptTokens = 0;
  for (const s of r.eval.splits) {
    const l = m.lengths[s as keyof Manifest['lengths']];
    if (!l) continue;
    prompts += l.documents * (1 + forced);
    // The shard's own prompts; a forced prompt also holds its behavior token. Without the shard: a document is its
    // prompt and its reply, the reply what the loss covers (this counts the template's end of line after the reply).
    const own = promptTokensOf?.(s);
    promptTokens += own !== undefined ? own * (1 + forced) + l.documents * forced : (l.tokens - l.loss_tokens) * (1 + forced);
  }
  const maxGenerated = prompts * r.eval.max_new_tokens;
  // A model judge labels every reply no token labels (all replies of a run without tokens, the forced ones, and the
  // token ones when asked), plus the gold replies once per split; it scores each label's answer line after the
  // conversation and the reply.
  let judged = 0;
  if (r.judge?.kind === 'model') {
    const chosen = r.data.conditioning !== 'token' || r.judge.also_token_runs ? prompts / (1 + forced) : 0;
    judged = chosen + (prompts - prompts / (1 + forced)) + prompts / (1 + forced);
  }
  const meanPrompt = prompts ? promptTokens / prompts : 0;
  const judgeTokens = judged * (meanPrompt + r.eval.max_new_tokens) * Object.keys(r.data.behaviors).length;
  const prefill = prefillRate(rates.trainTokS);
  return {
    files, prompts, promptTokens, maxGenerated, judged, judgeTokens,
    hours: { predict: (promptTokens / prefill + maxGenerated / rates.decodeTokS) / 3600, judge: judgeTokens / prefill / 3600 },
  };
}
