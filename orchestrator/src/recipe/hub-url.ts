const LOOPBACK = new Set(['127.0.0.1', 'localhost', '[::1]']);

/**
 * Whether a Hub endpoint may receive an HF_TOKEN: https, or plain http on a loopback address (a local test hub).
 * Recipes (`store.hub_url`), workers (a job's endpoint) and `bsft worker --hub-endpoint` apply this one rule.
 */
export function tokenSafeUrl(url: string): boolean {
  if (!URL.canParse(url)) return false;
  const { protocol, hostname } = new URL(url);
  return protocol === 'https:' || (protocol === 'http:' && LOOPBACK.has(hostname));
}
