import { createReadStream, existsSync } from 'node:fs';
import path from 'node:path';
import { createInterface } from 'node:readline';
import OpenAI from 'openai';
import type { Message } from '../dataset/condition.js';
import { readManifest, type Manifest } from '../dataset/manifest.js';
import { OpenAIEndpoint } from '../endpoint/openai-endpoint.js';
import { InputError } from '../errors.js';
import type { Logger } from '../log.js';
import type { ResolvedRecipe } from '../recipe/resolve.js';
import { PREDICT_KEY_ENV, redactUrl } from '../recipe/secrets.js';
import { sha256, sha256File } from '../util/sha256.js';
import { EndpointProgress } from './endpoint-progress.js';
import { ANSWER, EndpointSetupError, EndpointUnavailableError, type EndpointPredictResult } from './endpoint-predict.js';

/** One task as a chat endpoint is asked it: its id, the messages the dataset build rendered, whether it has an answer. */
interface ChatTask {
  id: string;
  messages: Message[];
  answer: boolean;
}

/**
 * The prompts of a split, read as they are asked: `prompt` of each line of `<split>.messages.jsonl` (Contract 3) with
 * its index, in the split's order (memory holds the requests in flight, not the split).
 */
export async function* chatTasks(file: string): AsyncGenerator<[number, ChatTask]> {
  if (!existsSync(file)) throw new InputError(`no dataset split file ${file}: build the dataset first`);
  let i = 0;
  for await (const line of createInterface({ input: createReadStream(file, 'utf8'), crlfDelay: Infinity })) {
    if (!line) continue;
    const r = JSON.parse(line) as { id: string; prompt: Message[]; answer?: string };
    yield [i++, { id: r.id, messages: r.prompt, answer: r.answer !== undefined }];
  }
}

/**
 * `[proactive] ...` at the start of a reply: the behavior its tag names, and the reply without the tag (what the
 * judge reads); null when the reply has no tag of a known behavior (a miss, counted wrong for the tag's score).
 */
export function readTag(reply: string, behaviors: string[]): { behavior: string | null; rest: string } {
  const m = /^\s*[[(]\s*([A-Za-z_-]+)\s*[\])]\s*:?\s*/.exec(reply);
  const named = m ? behaviors.find((b) => b.toLowerCase() === m[1]!.toLowerCase()) : undefined;
  return named ? { behavior: named, rest: reply.slice(m![0].length) } : { behavior: null, rest: reply };
}

/**
 * Predictions through an OpenAI-compatible chat-completions endpoint (eval.engine: openai-chat): each task's
 * conversation goes as the messages the dataset build rendered (speakers' names in the content, the instruction as
 * the system message; `prompt` of `<split>.messages.jsonl`), greedy (temperature 0), `max_tokens` eval.max_new_tokens.
 * The reply's behavior is left to the judge (predicted_behavior null); with eval.reply_tag, its tag is read into
 * `tagged_behavior`. Rows are kept as they come (predict-progress/), so a stopped predict asks only what is missing.
 * 429 (after its Retry-After), 5xx, timeouts and lost connections are retried with backoff (eval.endpoint.max_retries),
 * eval.endpoint.max_concurrency requests at a time.
 */
export async function predictViaChat(recipe: ResolvedRecipe, runDir: string, split: string, log: Logger, signal?: AbortSignal): Promise<EndpointPredictResult> {
  const endpoint = recipe.eval.endpoint!;
  const file = path.join(runDir, 'dataset', `${split}.messages.jsonl`);
  // The split's tasks, one line each in its messages.jsonl: counted by the dataset's manifest.
  const manifest = readManifest(path.join(runDir, 'dataset'));
  if (!manifest || !existsSync(file)) throw new InputError(`no dataset split ${split} in ${path.join(runDir, 'dataset')}: build the dataset first`);
  const total = (manifest.documents[split as keyof Manifest['documents']] as string[]).length;
  const behaviors = Object.keys(recipe.data.behaviors);
  const name = `${split}.jsonl`;
  const key = sha256(JSON.stringify(['chat-v1', endpoint.base_url, endpoint.model, recipe.eval.max_new_tokens, recipe.eval.reply_tag, await sha256File(file)]));
  const progress = new EndpointProgress(runDir, name, key, total, log);

  const api = new OpenAIEndpoint(endpoint, 'chat endpoint', PREDICT_KEY_ENV, { setup: EndpointSetupError, unavailable: EndpointUnavailableError });
  await api.checkServesModel('; eval.endpoint.model names the model as the server lists it (GET /v1/models)');
  const failure = (e: unknown): Error =>
    e instanceof OpenAI.BadRequestError ? new EndpointSetupError(`${api.where} refused the request (400) while predicting: ${e.message}`) : api.failure(e, 'predicting');

  // OpenAI's newer models take the reply's length as max_completion_tokens and refuse max_tokens (400, naming the
  // other): asked once that way, every later request uses it.
  let lengthParam: 'max_tokens' | 'max_completion_tokens' = 'max_tokens';
  const ask = (messages: Message[]) => api.client.chat.completions.create({ model: endpoint.model, messages, [lengthParam]: recipe.eval.max_new_tokens, temperature: 0 });
  await progress.each(chatTasks(file), endpoint.max_concurrency, signal, async (i, t) => {
    let res;
    try {
      try {
        res = await ask(t.messages);
      } catch (e) {
        if (!(e instanceof OpenAI.BadRequestError && /max_completion_tokens/.test(e.message))) throw e;
        if (lengthParam === 'max_tokens') log.info({ endpoint: api.where }, 'the endpoint takes max_completion_tokens instead of max_tokens: using it');
        lengthParam = 'max_completion_tokens';
        res = await ask(t.messages);
      }
    } catch (e) {
      throw failure(e);
    }
    const text = (res.choices?.[0]?.message?.content ?? '').trim();
    const row: Record<string, unknown> = { id: t.id, predicted_behavior: null };
    if (recipe.eval.reply_tag) {
      const tag = readTag(text, behaviors);
      row.tagged_behavior = tag.behavior;
      row.reply = tag.rest.trim();
    } else row.reply = text;
    if (t.answer) row.predicted_answer = ANSWER.exec(row.reply as string)?.[1]?.toUpperCase() ?? null;
    progress.add(i, res.usage?.completion_tokens ?? 0, JSON.stringify(row));
  });

  if (signal?.aborted) throw new EndpointUnavailableError(`predict stopped by a signal after ${progress.done.size} of ${total} tasks of ${name}; the next predict continues there`);
  const written = await progress.finish({ engine: 'openai-chat', endpoint: redactUrl(endpoint.base_url), model: endpoint.model, max_new_tokens: recipe.eval.max_new_tokens });
  return { file: written, tasks: total, generatedTokens: progress.generated, seconds: progress.seconds };
}
