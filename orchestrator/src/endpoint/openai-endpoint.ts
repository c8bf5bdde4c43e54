import OpenAI from 'openai';
import { keepAliveFetch } from './http-fetch.js';
import { redactUrl } from '../recipe/secrets.js';

/** What both kinds of endpoint take from the recipe (judge: `judge`; predict: `eval.endpoint`). */
export interface EndpointSettings {
  base_url: string;
  model: string;
  max_concurrency: number;
  timeout_s: number;
  max_retries: number;
}

/** The errors a failure becomes: one the user must fix (never retried), one that may pass (the step is retried). */
export interface EndpointErrors {
  setup: new (message: string) => Error;
  unavailable: new (message: string) => Error;
}

/**
 * An OpenAI-compatible endpoint (vllm serve, SGLang, TGI, a hosted API) as a judge or predict talks to it, through
 * the `openai` client (base URL, timeouts, retries with backoff and jitter, keep-alive sockets for
 * `max_concurrency` requests): the key from its environment variable only, the check that it serves the model, and
 * its failures in the user's words, naming the endpoint without credentials.
 */
export class OpenAIEndpoint {
  readonly client: OpenAI;
  /** The endpoint as messages and logs name it (`judge endpoint http://host/v1`). */
  readonly where: string;

  constructor(
    private readonly settings: EndpointSettings,
    what: string,
    private readonly keyEnv: string,
    private readonly errors: EndpointErrors,
    apiKey = process.env[keyEnv],
  ) {
    this.where = `${what} ${redactUrl(settings.base_url)}`;
    // logLevel off: the client would format every request's details for its debug log (a share of its CPU time).
    this.client = new OpenAI({
      baseURL: settings.base_url, apiKey: apiKey || 'no-key', timeout: settings.timeout_s * 1000, maxRetries: settings.max_retries, logLevel: 'off',
      fetch: keepAliveFetch(settings.max_concurrency),
    });
  }

  /** Fails before any work when the key is refused or the endpoint does not serve the model (`hint`: what to do then). */
  async checkServesModel(hint = ''): Promise<void> {
    const served: string[] = [];
    try {
      for await (const m of this.client.models.list()) served.push(m.id);
    } catch (e) {
      throw this.failure(e, 'listing its models');
    }
    if (!served.includes(this.settings.model)) {
      throw new this.errors.setup(`${this.where} does not serve model "${this.settings.model}" (it serves: ${served.slice(0, 10).join(', ') || 'none'})${hint}`);
    }
  }

  /** A client error while `doing` something, as the user should read it. */
  failure(e: unknown, doing: string): Error {
    const { setup, unavailable } = this.errors;
    if (e instanceof OpenAI.AuthenticationError || e instanceof OpenAI.PermissionDeniedError) {
      return new setup(`${this.where} refused the key (${e.status}) while ${doing}: set ${this.keyEnv} to a key it accepts`);
    }
    if (e instanceof OpenAI.NotFoundError) return new setup(`${this.where}: not found (404) while ${doing}; is base_url the API root (…/v1)?`);
    if (e instanceof OpenAI.APIConnectionError) {
      return new unavailable(`${this.where} unreachable while ${doing} after ${this.settings.max_retries} retries (${e instanceof OpenAI.APIConnectionTimeoutError ? 'timed out' : 'connection failed'})`);
    }
    if (e instanceof OpenAI.APIError && e.status !== undefined && e.status >= 300 && e.status < 400) {
      // Not followed: the key would go to an address the recipe does not name. Not retried: it will not pass.
      const to = e.headers?.get('location');
      return new setup(`${this.where} answered ${e.status}${to ? ` (a redirect to ${redactUrl(to)})` : ' (a redirect)'} while ${doing}: set base_url to the address it points to`);
    }
    if (e instanceof OpenAI.APIError) return new unavailable(`${this.where} answered ${e.status ?? 'an error'} while ${doing}, after ${this.settings.max_retries} retries`);
    return e as Error;
  }
}
