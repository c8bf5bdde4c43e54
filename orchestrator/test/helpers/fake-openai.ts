import { createServer, type IncomingMessage, type Server, type ServerResponse } from 'node:http';

/** What one chat-completions request gets: a text answer, or an HTTP failure. */
export type FakeAnswer = string | { status: number; body?: string; headers?: Record<string, string> };

/**
 * A local HTTP server implementing the OpenAI routes a judge uses, as the `openai` client calls them:
 * `GET /v1/models` and `POST /v1/chat/completions` (bearer key, JSON bodies, `usage`). `answer` decides each
 * reply (given the user message and whether a JSON schema was asked for); switches make it refuse response formats,
 * wait, or fail. Every request is recorded.
 */
export class FakeOpenAI {
  readonly requests: { method: string; path: string; body?: { model: string; messages: { role: string; content: string }[]; response_format?: unknown; prompt?: number[]; [k: string]: unknown } }[] = [];
  /** Served model names. */
  models = ['judge-model'];
  /** The bearer key it accepts (undefined: any, or none). */
  key?: string;
  delayMs = 0;
  /** Answer 400 to any request that asks for a response format (as servers without structured output do). */
  rejectResponseFormat = false;
  /** Answer 400 to a chat request for this model with max_tokens, naming max_completion_tokens (as OpenAI's newer models do). */
  rejectMaxTokensFor?: string;
  /** Decides the answer of each chat request (default: a label line naming "reactive"); `body` is the whole request. */
  answer: (user: string, constrained: boolean, body: { model: string; messages: { role: string; content: string }[]; [k: string]: unknown }) => FakeAnswer = (_u, constrained) => (constrained ? '{"label": "reactive"}' : 'label: reactive');
  /**
   * Decides each completions request (`POST /v1/completions`, prompts as token IDs, as vLLM serves them): the
   * generated token IDs and text, and (`top`, token ID → log-probability) the first position's top log-probabilities
   * when the request asks for them (`logprobs` > 0; the others positions' are empty), or an HTTP failure. Token IDs
   * come back as vLLM's `token_id:N` strings, as keys of `top_logprobs` too.
   */
  complete: (prompt: number[], body: Record<string, unknown>) => { ids: number[]; text: string; top?: Record<number, number> } | { status: number } = () => ({ ids: [151645], text: '' });
  private server?: Server;
  url = '';

  async start(): Promise<void> {
    this.server = createServer((req, res) => void this.handle(req, res).catch((e) => {
      res.statusCode = 500;
      res.end(String(e));
    }));
    // Many requests in flight at once (benchmarks): no keep-alive limit gets in the way.
    this.server.maxConnections = 4096;
    await new Promise<void>((r) => this.server!.listen(0, '127.0.0.1', r));
    this.url = `http://127.0.0.1:${(this.server!.address() as { port: number }).port}/v1`;
  }

  async stop(): Promise<void> {
    this.server?.closeAllConnections();
    await new Promise((r) => this.server?.close(r));
  }

  chatRequests() {
    return this.requests.filter((r) => r.path === '/v1/chat/completions');
  }

  private send(res: ServerResponse, status: number, body: unknown, headers: Record<string, string> = {}): void {
    res.writeHead(status, { 'content-type': 'application/json', ...headers });
    res.end(typeof body === 'string' ? body : JSON.stringify(body));
  }

  private async handle(req: IncomingMessage, res: ServerResponse): Promise<void> {
    const chunks: Buffer[] = [];
    for await (const c of req) chunks.push(c as Buffer);
    const text = Buffer.concat(chunks).toString('utf8');
    const body = text ? JSON.parse(text) : undefined;
    const url = new URL(req.url!, 'http://x');
    this.requests.push({ method: req.method!, path: url.pathname, body });
    if (this.delayMs) await new Promise((r) => setTimeout(r, this.delayMs));
    if (this.key !== undefined && req.headers.authorization !== `Bearer ${this.key}`) {
      return this.send(res, 401, { error: { message: 'Incorrect API key provided', type: 'invalid_request_error', code: 'invalid_api_key' } });
    }
    if (req.method === 'GET' && url.pathname === '/v1/models') {
      return this.send(res, 200, { object: 'list', data: this.models.map((id) => ({ id, object: 'model', created: 0, owned_by: 'fake' })) });
    }
    if (req.method === 'POST' && url.pathname === '/v1/chat/completions') {
      if (!this.models.includes(body.model)) return this.send(res, 404, { error: { message: `The model ${body.model} does not exist`, type: 'invalid_request_error' } });
      if (body.response_format && this.rejectResponseFormat) return this.send(res, 400, { error: { message: 'response_format is not supported', type: 'invalid_request_error' } });
      if (body.max_tokens !== undefined && body.model === this.rejectMaxTokensFor) {
        return this.send(res, 400, { error: { message: "Unsupported parameter: 'max_tokens' is not supported with this model. Use 'max_completion_tokens' instead.", type: 'invalid_request_error', param: 'max_tokens', code: 'unsupported_parameter' } });
      }
      const user = body.messages.find((m: { role: string }) => m.role === 'user')?.content ?? '';
      const a = this.answer(user, !!body.response_format, body);
      if (typeof a !== 'string') return this.send(res, a.status, a.body ?? { error: { message: `failure ${a.status}` } }, a.headers);
      return this.send(res, 200, {
        id: `chatcmpl-${this.requests.length}`, object: 'chat.completion', created: 0, model: body.model,
        choices: [{ index: 0, message: { role: 'assistant', content: a }, finish_reason: 'stop' }],
        usage: { prompt_tokens: Math.ceil(user.length / 4), completion_tokens: 5, total_tokens: Math.ceil(user.length / 4) + 5 },
      });
    }
    if (req.method === 'POST' && url.pathname === '/v1/completions') {
      if (!this.models.includes(body.model)) return this.send(res, 404, { error: { message: `The model ${body.model} does not exist`, type: 'invalid_request_error' } });
      const a = this.complete(body.prompt, body);
      if ('status' in a) return this.send(res, a.status, { error: { message: `failure ${a.status}` } });
      return this.send(res, 200, {
        id: `cmpl-${this.requests.length}`, object: 'text_completion', created: 0, model: body.model,
        choices: [{ index: 0, text: a.text, finish_reason: 'stop', logprobs: { tokens: a.ids.map((i) => `token_id:${i}`), token_logprobs: a.ids.map(() => 0),
          top_logprobs: body.logprobs > 0 && a.top ? a.ids.map((_, k) => (k === 0 ? Object.fromEntries(Object.entries(a.top!).slice(0, body.logprobs).map(([id, lp]) => [`token_id:${id}`, lp])) : {})) : null,
          text_offset: a.ids.map(() => 0) } }],
        usage: { prompt_tokens: body.prompt.length, completion_tokens: a.ids.length, total_tokens: body.prompt.length + a.ids.length },
      });
    }
    this.send(res, 404, { error: { message: `no route ${req.method} ${url.pathname}` } });
  }
}

/** The reply a judge prompt grades (the text after "Reply to grade:"). */
export function replyOf(user: string): string {
  return /Reply to grade:\n([\s\S]*?)\n\nWhich behavior/.exec(user)?.[1] ?? '';
}
