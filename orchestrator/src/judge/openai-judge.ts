import OpenAI from 'openai';
import { JudgeSetupError, JudgeUnavailableError } from '../errors.js';
import type { OpenAIJudgeSettings } from '../recipe/schema.js';
import { JUDGE_KEY_ENV, redactUrl } from '../recipe/secrets.js';
import { keepAliveFetch } from './http-fetch.js';
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
  private readonly client: OpenAI;
  private constrained = true;
  readonly endpoint: string;

  constructor(
    private readonly settings: OpenAIJudgeSettings,
    private readonly behaviors: string[],
    apiKey = process.env[JUDGE_KEY_ENV],
  ) {
    this.endpoint = redactUrl(settings.base_url);
    // logLevel off: the client would format every request's details for its debug log (a share of its CPU time).
    this.client = new OpenAI({
      baseURL: settings.base_url, apiKey: apiKey || 'no-key', timeout: settings.timeout_s * 1000, maxRetries: settings.max_retries, logLevel: 'off',
      fetch: keepAliveFetch(settings.max_concurrency),
    });
  }

  /** Fails before any work when the key is refused or the endpoint does not serve the model. */
  async check(): Promise<void> {
    let served: string[];
    try {
      served = [];
      for await (const m of this.client.models.list()) served.push(m.id);
    } catch (e) {
      throw this.failure(e, 'listing its models');
    }
    if (!served.includes(this.settings.model)) {
      throw new JudgeSetupError(`judge endpoint ${this.endpoint} does not serve model "${this.settings.model}" (it serves: ${served.slice(0, 10).join(', ') || 'none'})`);
    }
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

  private async ask(messages: ChatMessage[]): Promise<{ text: string; tokens: number }> {
    const body = { model: this.settings.model, messages, temperature: 0, max_tokens: 32 };
    const schema = {
      type: 'json_schema' as const,
      json_schema: { name: 'behavior', strict: true, schema: { type: 'object', properties: { label: { type: 'string', enum: this.behaviors } }, required: ['label'], additionalProperties: false } },
    };
    const constrained = this.constrained; // requests in flight when the server first refuses were all constrained
    try {
      const res = await this.client.chat.completions.create(constrained ? { ...body, response_format: schema } : body);
      const text = res?.choices?.[0]?.message?.content;
      return { text: typeof text === 'string' ? text : '', tokens: res?.usage?.total_tokens ?? 0 };
    } catch (e) {
      // A server without response formats says 400 (or 422): ask in plain text from now on.
      if (constrained && e instanceof OpenAI.APIError && (e.status === 400 || e.status === 422)) {
        this.constrained = false;
        return this.ask(messages);
      }
      // A body that is not the API's JSON is a malformed answer, not a failure of the run.
      if (e instanceof SyntaxError) return { text: '', tokens: 0 };
      throw this.failure(e, 'judging a reply');
    }
  }

  private failure(e: unknown, doing: string): Error {
    const where = `judge endpoint ${this.endpoint}`;
    if (e instanceof OpenAI.AuthenticationError || e instanceof OpenAI.PermissionDeniedError) {
      return new JudgeSetupError(`${where} refused the key (${e.status}) while ${doing}: set ${JUDGE_KEY_ENV} to a key it accepts`);
    }
    if (e instanceof OpenAI.NotFoundError) return new JudgeSetupError(`${where}: not found (404) while ${doing}; is base_url the API root (…/v1)?`);
    if (e instanceof OpenAI.APIConnectionError) {
      return new JudgeUnavailableError(`${where} unreachable while ${doing} after ${this.settings.max_retries} retries (${e instanceof OpenAI.APIConnectionTimeoutError ? 'timed out' : 'connection failed'})`);
    }
    if (e instanceof OpenAI.APIError) return new JudgeUnavailableError(`${where} answered ${e.status ?? 'an error'} while ${doing}, after ${this.settings.max_retries} retries`);
    return e as Error;
  }
}
