import OpenAI from 'openai';
import { JudgeSetupError, JudgeUnavailableError } from '../errors.js';
import type { OpenAIJudgeSettings } from '../recipe/schema.js';
import { JUDGE_KEY_ENV, redactUrl } from '../recipe/secrets.js';
import { OpenAIEndpoint } from '../endpoint/openai-endpoint.js';
import { parseLabel, type ChatMessage } from './prompt.js';
import type { Judge, JudgeRequest } from './run-judge.js';
import { mapPool } from '../util/pool.js';

/** A judge's answer for one reply: the label, or null when the answer named none of the behaviors. */
export interface Judgment {
  label: string | null;
  /** The judge's answer as it came (trimmed, at most 500 characters). */
  raw: string;
  status: 'ok' | 'unparseable';
  /** Prompt + completion tokens the endpoint reported (0 when it reports none). */
  tokens: number;
}


/**
 * A judge behind an OpenAI-compatible chat-completions endpoint (vllm serve, TGI, llama.cpp server, SGLang, a
 * hosted API), through the `openai` client (its base URL, timeouts and retries with backoff and jitter).
 * It asks for a constrained answer (a JSON schema whose label is one of the behaviors) and falls back to a plain
 * `label: <behavior>` line when the server refuses response formats; temperature 0.
 */
export class OpenAIJudge implements Judge {
  readonly showsProgress = false;
  private readonly api: OpenAIEndpoint;
  private constrained = true;
  readonly endpoint: string;

  constructor(
    private readonly settings: OpenAIJudgeSettings,
    private readonly behaviors: string[],
    apiKey = process.env[JUDGE_KEY_ENV],
  ) {
    this.endpoint = redactUrl(settings.base_url);
    this.api = new OpenAIEndpoint(settings, 'judge endpoint', JUDGE_KEY_ENV, { setup: JudgeSetupError, unavailable: JudgeUnavailableError }, apiKey);
  }

  /** Fails before any work when the key is refused or the endpoint does not serve the model. */
  check(): Promise<void> {
    return this.api.checkServesModel();
  }

  /** `max_concurrency` requests in flight. */
  async answer(requests: JudgeRequest[], onAnswer: (key: string, j: Judgment) => void): Promise<void> {
    await mapPool(requests, this.settings.max_concurrency, async (r) => onAnswer(r.key, await this.judge(r.messages)));
  }

  /** One reply's label: an answer outside the label set is asked once more, then recorded as unparseable. */
  async judge(messages: ChatMessage[]): Promise<Judgment> {
    let tokens = 0;
    let raw = '';
    for (let attempt = 0; attempt < 2; attempt++) {
      const answer = await this.ask(messages);
      tokens += answer.tokens;
      raw = answer.text.trim().slice(0, 500);
      const label = parseLabel(answer.text, this.behaviors);
      if (label) return { label, raw, status: 'ok', tokens };
    }
    return { label: null, raw, status: 'unparseable', tokens };
  }

  /** How the reply's length is asked for: max_tokens, or max_completion_tokens where the server refuses the first. */
  private lengthParam: 'max_tokens' | 'max_completion_tokens' = 'max_tokens';

  private async ask(messages: ChatMessage[]): Promise<{ text: string; tokens: number }> {
    const body = { model: this.settings.model, messages, temperature: 0, [this.lengthParam]: 32 };
    const schema = {
      type: 'json_schema' as const,
      json_schema: { name: 'behavior', strict: true, schema: { type: 'object', properties: { label: { type: 'string', enum: this.behaviors } }, required: ['label'], additionalProperties: false } },
    };
    const constrained = this.constrained; // requests in flight when the server first refuses were all constrained
    try {
      const res = await this.api.client.chat.completions.create(constrained ? { ...body, response_format: schema } : body);
      const text = res?.choices?.[0]?.message?.content;
      return { text: typeof text === 'string' ? text : '', tokens: res?.usage?.total_tokens ?? 0 };
    } catch (e) {
      // OpenAI's newer models refuse max_tokens, naming max_completion_tokens: ask that way from now on.
      if (this.lengthParam === 'max_tokens' && e instanceof OpenAI.BadRequestError && /max_completion_tokens/.test(e.message)) {
        this.lengthParam = 'max_completion_tokens';
        return this.ask(messages);
      }
      // A server without response formats says 400 (or 422): ask in plain text from now on.
      if (constrained && e instanceof OpenAI.APIError && (e.status === 400 || e.status === 422)) {
        this.constrained = false;
        return this.ask(messages);
      }
      // A body that is not the API's JSON is a malformed answer, not a failure of the run.
      if (e instanceof SyntaxError) return { text: '', tokens: 0 };
      throw this.api.failure(e, 'judging a reply');
    }
  }
}
