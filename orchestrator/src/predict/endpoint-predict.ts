import { existsSync, readFileSync } from 'node:fs';
import path from 'node:path';
import OpenAI from 'openai';
import { BsftError, InputError } from '../errors.js';
import { shardPromptSpans } from '../dataset/shard-prompts.js';
import { readManifest, type Manifest } from '../dataset/manifest.js';
import { OpenAIEndpoint } from '../endpoint/openai-endpoint.js';
import type { ResolvedRecipe } from '../recipe/resolve.js';
import { PREDICT_KEY_ENV, redactUrl } from '../recipe/secrets.js';
import { logitBias } from '../score/balance.js';
import { sha256, sha256File } from '../util/sha256.js';
import type { Logger } from '../log.js';
import { EndpointProgress } from './endpoint-progress.js';

/** A prediction endpoint that cannot be used as configured (key, model, URL): not worth retrying. */
export class EndpointSetupError extends InputError {}
/** A prediction endpoint that did not answer (down, overloaded): the step is retried. */
export class EndpointUnavailableError extends BsftError {}

type Endpoint = NonNullable<ResolvedRecipe['eval']['endpoint']>;

/** Contract 7's `predicted_answer`: the option letter a reply starts with (as the trainer's predict reads it). */
export const ANSWER = /^\W*\(?([A-Ea-e])[).:\s]/;

/** Each document's token IDs up to its first predicted token: the prompt training saw (Contract 3). */
export function shardPrompts(file: string): number[][] {
  const { ids, spans } = shardPromptSpans(file);
  return spans.map(([start, end]) => Array.from(ids.subarray(start, end)));
}

/** A completion's token IDs: vLLM's `token_id:N` strings (return_tokens_as_token_ids), or behavior tokens by their text. */
export function completionIds(tokens: string[] | undefined, tokenIds: Record<string, number>): number[] | null {
  if (!tokens) return null;
  const out: number[] = [];
  for (const t of tokens) {
    const m = /^token_id:(\d+)$/.exec(t);
    if (m) out.push(Number(m[1]));
    else if (t in tokenIds) out.push(tokenIds[t]!);
    else return out.length ? out : null;
  }
  return out;
}

/** How many log-probabilities per position a completion is asked for: vLLM's default cap (`--max-logprobs` 20). */
export const TOP_LOGPROBS = 20;

/**
 * The behavior tokens' log-probabilities at a completion's first position, from its `top_logprobs` (keys are
 * `token_id:N` with return_tokens_as_token_ids, or a behavior token's text), and the same renormalised over the
 * behavior tokens: a behavior not among the returned ones is null in both (its probability is below the last
 * returned one's), and the others are renormalised over those returned; undefined when the server returned none.
 */
export function behaviorScores(top: Record<string, number> | null | undefined, behaviorIds: Record<string, number>,
  tokenIds: Record<string, number>): { behavior_logprobs: Record<string, number | null>; behavior_probs: Record<string, number | null> } | undefined {
  if (!top) return undefined;
  const byId = new Map<number, number>();
  for (const [key, lp] of Object.entries(top)) {
    const m = /^token_id:(\d+)$/.exec(key);
    const id = m ? Number(m[1]) : tokenIds[key];
    if (id !== undefined) byId.set(id, lp);
  }
  const logprobs = Object.fromEntries(Object.entries(behaviorIds).map(([b, id]) => [b, byId.get(id) ?? null]));
  const present = Object.values(logprobs).filter((v): v is number => v !== null);
  // exp(lp - max) / sum: the renormalised probabilities without underflow.
  const max = Math.max(...present);
  const sum = present.reduce((a, lp) => a + Math.exp(lp - max), 0);
  const round = (v: number) => Math.round(v * 1e6) / 1e6;
  return {
    behavior_logprobs: Object.fromEntries(Object.entries(logprobs).map(([b, lp]) => [b, lp === null ? null : round(lp)])),
    behavior_probs: Object.fromEntries(Object.entries(logprobs).map(([b, lp]) => [b, lp === null ? null : round(Math.exp(lp - max) / sum)])),
  };
}

export interface EndpointPredictResult {
  file: string;
  tasks: number;
  generatedTokens: number;
  seconds: number;
}

/**
 * Predictions through a serving engine's OpenAI-compatible completions endpoint (vLLM, SGLang) serving the run's
 * exported model: each prompt goes as the dataset's token IDs, greedy, `max_tokens` = eval.max_new_tokens, with
 * its tokens' IDs asked back; the behavior is the first generated token's ID checked against the manifest. Rows are
 * appended to predict-progress/ as they come, so a stopped predict asks only what is missing; the file is written
 * whole in the split's order.
 */
export async function predictViaEndpoint(recipe: ResolvedRecipe, runDir: string, split: string, force: string | null, log: Logger, signal?: AbortSignal): Promise<EndpointPredictResult> {
  const endpoint: Endpoint = recipe.eval.endpoint!;
  const manifest = readManifest(path.join(runDir, 'dataset'));
  if (!manifest) throw new InputError(`no dataset manifest in ${path.join(runDir, 'dataset')}`);
  const byId = new Map(Object.entries(manifest.behavior_ids).map(([b, id]) => [id, b]));
  const tokenIds = Object.fromEntries(Object.entries(recipe.data.behaviors).map(([b, s]) => [s.token, manifest.behavior_ids[b]!]));
  const docIds = manifest.documents[split as keyof Manifest['documents']] as string[];
  const shard = path.join(runDir, 'dataset', `${split}.tokens.safetensors`);
  let prompts = shardPrompts(shard);
  if (force) prompts = prompts.map((p) => [...p, manifest.behavior_ids[force]!]);
  const answers = new Set<string>();
  const messages = path.join(runDir, 'dataset', `${split}.messages.jsonl`);
  if (existsSync(messages)) {
    for (const l of readFileSync(messages, 'utf8').split('\n')) {
      const d = l ? (JSON.parse(l) as { id: string; answer?: string }) : undefined;
      if (d?.answer !== undefined) answers.add(d.id);
    }
  }

  // A token run's own choice (not a forced prompt, which ends with its behavior token) keeps its probabilities.
  const scored = recipe.data.conditioning === 'token' && !force;
  // An operating point (eval.behavior_offsets) goes to the server as logit_bias on the behavior tokens' IDs.
  const bias = logitBias(recipe.eval.behavior_offsets ?? {}, manifest.behavior_ids); // ?? {}: a run recorded before offsets existed
  const name = `${split}${force ? `.forced-${force}` : ''}.jsonl`;
  // The prompts are the shard's (and the forced token): its bytes name them without serialising every prompt.
  const key = sha256(JSON.stringify([endpoint.base_url, endpoint.model, recipe.eval.max_new_tokens, recipe.data.conditioning, await sha256File(shard), force, 'behavior-probs-v1', bias]));
  const progress = new EndpointProgress(runDir, name, key, prompts.length, log);

  const api = new OpenAIEndpoint(endpoint, 'prediction endpoint', PREDICT_KEY_ENV, { setup: EndpointSetupError, unavailable: EndpointUnavailableError });
  await api.checkServesModel(`; serve the run's export: bsft export ${path.basename(runDir)}`);
  // A request the server refuses (400: a parameter it does not take) will not pass by retrying.
  const failure = (e: unknown, doing: string): Error =>
    e instanceof OpenAI.BadRequestError ? new EndpointSetupError(`${api.where} refused the request (400) while ${doing}: ${e.message}`) : api.failure(e, doing);

  await progress.each(prompts.map((p, i) => [i, p] as [number, number[]]), endpoint.max_concurrency, signal, one);

  /** Asks for one prompt's completion and appends its row. */
  async function one(i: number): Promise<void> {
    let res;
    try {
      // vLLM's extensions: token IDs back as `token_id:N`, special tokens (the behavior's) kept out of the text.
      res = await api.client.completions.create({
        model: endpoint.model, prompt: prompts[i]!, max_tokens: recipe.eval.max_new_tokens, temperature: 0, logprobs: scored ? TOP_LOGPROBS : 0,
        ...(Object.keys(bias).length ? { logit_bias: bias } : {}),
        return_tokens_as_token_ids: true, skip_special_tokens: true,
      } as OpenAI.CompletionCreateParamsNonStreaming);
    } catch (e) {
      throw failure(e, 'predicting');
    }
    const choice = res.choices?.[0];
    const ids = completionIds(choice?.logprobs?.tokens ?? undefined, tokenIds);
    if (!ids) throw new EndpointSetupError(`${api.where} gave no token IDs of its completion: serve with vLLM or SGLang, which return them (return_tokens_as_token_ids)`);
    const first = ids[0];
    let text = choice?.text ?? '';
    for (const t of Object.keys(tokenIds)) text = text.split(t).join('');
    const row: Record<string, unknown> = {
      id: docIds[i], predicted_behavior: recipe.data.conditioning === 'token' ? (force ?? (first !== undefined ? byId.get(first) ?? null : null)) : null,
      raw_token_ids: ids.slice(0, 16),
    };
    if (force) row.forced = true;
    const scores = scored ? behaviorScores(choice?.logprobs?.top_logprobs?.[0], manifest!.behavior_ids, tokenIds) : undefined;
    if (scores) Object.assign(row, scores);
    row.reply = text.trim();
    if (answers.has(docIds[i]!)) row.predicted_answer = ANSWER.exec(text)?.[1]?.toUpperCase() ?? null;
    progress.add(i, ids.length, JSON.stringify(row));
  }

  if (signal?.aborted) throw new EndpointUnavailableError(`predict stopped by a signal after ${progress.done.size} of ${prompts.length} prompts of ${name}; the next predict continues there`);
  const file = await progress.finish({ engine: 'openai', endpoint: redactUrl(endpoint.base_url), model: endpoint.model, max_new_tokens: recipe.eval.max_new_tokens });
  return { file, tasks: prompts.length, generatedTokens: progress.generated, seconds: progress.seconds };
}
