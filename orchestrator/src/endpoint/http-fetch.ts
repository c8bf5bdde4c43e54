import http from 'node:http';
import https from 'node:https';

/**
 * A `fetch` for the OpenAI client of a judge or predict endpoint over Node's http/https with a keep-alive agent of `sockets` connections,
 * the whole response buffered (a judge's answers are small). At a judge's request rates the global fetch's stream
 * machinery costs more CPU than the requests themselves (bench:judge); this keeps the orchestrator out of the way.
 */
export function keepAliveFetch(sockets: number): typeof fetch {
  const agents = { 'http:': new http.Agent({ keepAlive: true, maxSockets: sockets }), 'https:': new https.Agent({ keepAlive: true, maxSockets: sockets }) };
  return (async (input: string | URL | Request, init: RequestInit = {}) => {
    const url = new URL(typeof input === 'string' || input instanceof URL ? input : input.url);
    const protocol = url.protocol as keyof typeof agents;
    if (!agents[protocol]) throw new TypeError(`unsupported protocol ${url.protocol}`);
    const headers: Record<string, string> = {};
    new Headers(init.headers).forEach((v, k) => (headers[k] = v));
    const body = init.body == null ? undefined : typeof init.body === 'string' ? init.body : Buffer.from(await new Response(init.body).arrayBuffer());
    return new Promise<Response>((resolve, reject) => {
      const req = (protocol === 'https:' ? https : http).request(url, { method: init.method ?? 'GET', headers, agent: agents[protocol] }, (res) => {
        const chunks: Buffer[] = [];
        res.on('data', (c: Buffer) => chunks.push(c));
        res.on('end', () => {
          const out = new Headers();
          for (const [k, v] of Object.entries(res.headers)) if (v !== undefined) out.set(k, Array.isArray(v) ? v.join(', ') : v);
          const status = res.statusCode ?? 500;
          resolve(new Response(status === 204 || status === 304 ? null : Buffer.concat(chunks), { status, statusText: res.statusMessage ?? '', headers: out }));
        });
        res.on('error', reject);
      });
      const signal = init.signal;
      const abort = () => req.destroy(Object.assign(new Error('The operation was aborted.'), { name: 'AbortError' }));
      if (signal?.aborted) return abort();
      signal?.addEventListener('abort', abort, { once: true });
      req.on('error', reject);
      req.on('close', () => signal?.removeEventListener('abort', abort));
      req.end(body);
    });
  }) as typeof fetch;
}
