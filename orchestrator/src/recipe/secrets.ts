/** Secrets never live in recipes (nor in job data): the Hub token and Redis credentials come from the environment. */

const SECRET_KEYS: Record<string, string> = {
  hf_token: 'HF_TOKEN',
  hub_token: 'HF_TOKEN',
  token: 'HF_TOKEN',
  access_token: 'HF_TOKEN',
  api_key: 'BSFT_JUDGE_API_KEY (a judge endpoint\'s key) or the variable its own tool reads',
  password: 'REDIS_URL',
  redis_password: 'REDIS_URL',
  redis_url: 'REDIS_URL',
  secret: 'the environment',
};

export function secretKeyMessage(key: string): string | undefined {
  const env = SECRET_KEYS[key.toLowerCase()];
  return env && `secrets never live in recipes: remove "${key}" and set ${env} in the environment instead`;
}

const SECRET_VALUES: [RegExp, string][] = [
  [/\bhf_[A-Za-z0-9]{20,}\b/, 'looks like a Hugging Face token: set HF_TOKEN in the environment instead'],
  [/\brediss?:\/\/[^\s/@]*:[^\s/@]+@/, 'holds a Redis password: set REDIS_URL in the environment instead'],
  [/\bhttps?:\/\/[^\s/@]+@/, 'holds credentials in the URL: remove them (a judge endpoint\'s key goes in BSFT_JUDGE_API_KEY, a prediction endpoint\'s in BSFT_PREDICT_API_KEY, the Hub\'s token in HF_TOKEN)'],
];

/** Paths of string values that look like secrets, with what to do instead. */
export function findSecretValues(data: unknown, at: (string | number)[] = []): { path: (string | number)[]; message: string }[] {
  if (typeof data === 'string') {
    const hit = SECRET_VALUES.find(([re]) => re.test(data));
    return hit ? [{ path: at, message: `secrets never live in recipes: this value ${hit[1]}` }] : [];
  }
  if (Array.isArray(data)) return data.flatMap((v, i) => findSecretValues(v, [...at, i]));
  if (data && typeof data === 'object') {
    return Object.entries(data).flatMap(([k, v]) => findSecretValues(v, [...at, k]));
  }
  return [];
}

/** Replaces the password of a Redis or HTTP URL with `***`, for logs and messages. */
export function redactUrl(url: string): string {
  return url.replace(/^([a-z][a-z0-9+.-]*:\/\/)([^@/]*)@/i, (_, scheme: string, cred: string) => {
    const user = cred.includes(':') ? cred.slice(0, cred.indexOf(':')) : '';
    return `${scheme}${user ? `${user}:` : ''}***@`;
  });
}

/** The environment variable a judge endpoint's API key comes from: never a recipe, job data or a log. */
export const JUDGE_KEY_ENV = 'BSFT_JUDGE_API_KEY';
/** The key of a prediction endpoint (eval.engine: openai), read only from the environment. */
export const PREDICT_KEY_ENV = 'BSFT_PREDICT_API_KEY';
