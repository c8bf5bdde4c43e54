import { createHash } from 'node:crypto';
import { createServer, type IncomingMessage, type Server, type ServerResponse } from 'node:http';
import { afterAll, beforeAll } from 'vitest';

/**
 * A local HTTP server implementing the Hugging Face Hub routes the hub store uses, as @huggingface/hub calls them:
 * create repo, preupload, LFS batch + upload, NDJSON commit, tree listing, resolve (with Range). Commits apply
 * atomically. Tokens: `writeToken` may write, `readToken` may only read. Fault switches simulate a commit cut off
 * mid-body and 503 storms. Every request is recorded for assertions.
 */
/** A fake Hub started before the tests of the file (or describe block) that calls this, and stopped after them. */
export function hubDuringTests(): FakeHub {
  const hub = new FakeHub();
  beforeAll(() => hub.start());
  afterAll(() => hub.stop());
  return hub;
}

export class FakeHub {
  readonly repos = new Map<string, Map<string, Buffer>>();
  readonly lfs = new Map<string, Buffer>();
  readonly requests: { method: string; path: string }[] = [];
  /** Cut the connection of every commit whose body mentions this string: the upload never completes. */
  cutCommitsContaining?: string;
  /** Answer the next N requests with 503. */
  fail503 = 0;
  private server?: Server;
  url = '';

  constructor(readonly writeToken = 'hf_fake_writer_token_0123456789', readonly readToken = 'hf_fake_reader_token_0123456789') {}

  async start(): Promise<void> {
    this.server = createServer((req, res) => void this.handle(req, res).catch((e) => {
      res.statusCode = 500;
      res.end(String(e));
    }));
    await new Promise<void>((r) => this.server!.listen(0, '127.0.0.1', r));
    this.url = `http://127.0.0.1:${(this.server!.address() as { port: number }).port}`;
  }

  async stop(): Promise<void> {
    this.server?.closeAllConnections();
    await new Promise((r) => this.server?.close(r));
  }

  files(repo: string): Map<string, Buffer> {
    return this.repos.get(repo) ?? new Map();
  }

  private body(req: IncomingMessage): Promise<Buffer> {
    return new Promise((resolve, reject) => {
      const parts: Buffer[] = [];
      req.on('data', (d: Buffer) => parts.push(d));
      req.on('end', () => resolve(Buffer.concat(parts)));
      req.on('error', reject);
    });
  }

  private json(res: ServerResponse, status: number, value: unknown, headers: Record<string, string> = {}) {
    res.writeHead(status, { 'Content-Type': 'application/json', ...headers });
    res.end(JSON.stringify(value));
  }

  private auth(req: IncomingMessage): 'write' | 'read' | 'none' | 'bad' {
    const h = req.headers.authorization;
    if (!h) return 'none';
    const token = h.replace(/^Bearer /, '');
    if (token === this.writeToken) return 'write';
    if (token === this.readToken) return 'read';
    return 'bad';
  }

  private async handle(req: IncomingMessage, res: ServerResponse): Promise<void> {
    const url = new URL(req.url!, this.url);
    const p = decodeURIComponent(url.pathname);
    this.requests.push({ method: req.method!, path: p });
    if (this.fail503 > 0) {
      this.fail503--;
      await this.body(req);
      return this.json(res, 503, { error: 'Service Unavailable' });
    }
    const who = this.auth(req);
    if (who === 'bad') return this.json(res, 401, { error: 'Invalid credentials' });
    const needWrite = () => {
      if (who !== 'write') {
        this.json(res, who === 'none' ? 401 : 403, { error: who === 'none' ? 'Unauthorized' : 'You do not have write access' });
        return false;
      }
      return true;
    };

    let m: RegExpExecArray | null;
    if (req.method === 'POST' && p === '/api/repos/create') {
      if (!needWrite()) return;
      const b = JSON.parse((await this.body(req)).toString()) as { name: string; organization: string };
      const name = `${b.organization}/${b.name}`;
      if (this.repos.has(name)) return this.json(res, 409, { error: 'You already created this model repo' });
      this.repos.set(name, new Map());
      return this.json(res, 200, { url: `${this.url}/${name}` });
    }
    if (req.method === 'POST' && (m = /^\/api\/models\/([^/]+\/[^/]+)\/preupload\/([^/]+)$/.exec(p))) {
      if (!needWrite()) return;
      if (!this.repos.has(m[1]!)) return this.json(res, 404, { error: 'Repository not found' });
      const b = JSON.parse((await this.body(req)).toString()) as { files: { path: string; size: number }[] };
      return this.json(res, 200, { files: b.files.map((f) => ({ path: f.path, uploadMode: f.size > 2048 ? 'lfs' : 'regular' })) });
    }
    if (req.method === 'POST' && (m = /^\/([^/]+\/[^/]+)\.git\/info\/lfs\/objects\/batch$/.exec(p))) {
      if (!needWrite()) return;
      const b = JSON.parse((await this.body(req)).toString()) as { objects: { oid: string; size: number }[] };
      return this.json(res, 200, {
        transfer: 'basic',
        objects: b.objects.map((o) => (this.lfs.has(o.oid) ? { oid: o.oid, size: o.size } : { oid: o.oid, size: o.size, actions: { upload: { href: `${this.url}/lfs-upload/${o.oid}` } } })),
      }, { 'Content-Type': 'application/vnd.git-lfs+json' });
    }
    if (req.method === 'PUT' && (m = /^\/lfs-upload\/([0-9a-f]{64})$/.exec(p))) {
      const data = await this.body(req);
      if (createHash('sha256').update(data).digest('hex') !== m[1]) return this.json(res, 400, { error: 'sha256 mismatch' });
      this.lfs.set(m[1]!, data);
      res.writeHead(200);
      return void res.end();
    }
    if (req.method === 'POST' && (m = /^\/api\/models\/([^/]+\/[^/]+)\/commit\/([^/]+)$/.exec(p))) {
      if (!needWrite()) return;
      const repo = this.repos.get(m[1]!);
      if (!repo) return this.json(res, 404, { error: 'Repository not found' });
      const text = await this.body(req);
      if (this.cutCommitsContaining && text.toString().includes(this.cutCommitsContaining)) {
        // The connection drops before the commit is applied: to the client the upload was cut off mid-way.
        req.socket.destroy();
        return;
      }
      return this.applyCommit(res, repo, text);
    }
    if (req.method === 'GET' && (m = /^\/api\/models\/([^/]+\/[^/]+)\/tree\/([^/]+)(?:\/(.*))?$/.exec(p))) {
      const repo = this.repos.get(m[1]!);
      if (!repo) return this.json(res, 404, { error: 'Repository not found' }, { 'X-Error-Code': 'RepoNotFound' });
      const prefix = m[3] ? `${m[3]}/` : '';
      const recursive = url.searchParams.get('recursive') === 'true';
      const items = [...repo.keys()].filter((k) => k.startsWith(prefix) && (recursive || !k.slice(prefix.length).includes('/'))).sort();
      if (prefix && items.length === 0) return this.json(res, 404, { error: 'Entry not found' }, { 'X-Error-Code': 'EntryNotFound' });
      return this.json(res, 200, items.map((k) => ({ type: 'file', path: k, size: repo.get(k)!.length, oid: createHash('sha1').update(repo.get(k)!).digest('hex') })));
    }
    if (req.method === 'GET' && (m = /^\/([^/]+\/[^/]+)\/resolve\/([^/]+)\/(.+)$/.exec(p))) {
      const repo = this.repos.get(m[1]!);
      const data = repo?.get(m[3]!);
      if (!data) return this.json(res, 404, { error: 'Entry not found' }, { 'X-Error-Code': 'EntryNotFound' });
      const etag = `"${createHash('sha256').update(data).digest('hex')}"`;
      const range = /^bytes=(\d+)-(\d*)$/.exec(req.headers.range ?? '');
      if (range) {
        const start = Number(range[1]);
        const end = range[2] ? Math.min(Number(range[2]), data.length - 1) : data.length - 1;
        res.writeHead(206, { 'Content-Range': `bytes ${start}-${end}/${data.length}`, 'Content-Length': String(end - start + 1), ETag: etag });
        return void res.end(data.subarray(start, end + 1));
      }
      res.writeHead(200, { 'Content-Length': String(data.length), ETag: etag });
      return void res.end(data);
    }
    this.json(res, 404, { error: `fake hub: no route ${req.method} ${p}` });
  }

  private applyCommit(res: ServerResponse, repo: Map<string, Buffer>, body: Buffer) {
    const staged = new Map(repo);
    for (const line of body.toString().split('\n').filter(Boolean)) {
      const { key, value } = JSON.parse(line) as { key: string; value: { path: string; content?: string; oid?: string } };
      if (key === 'file') staged.set(value.path, Buffer.from(value.content!, 'base64'));
      else if (key === 'lfsFile') {
        const blob = this.lfs.get(value.oid!);
        if (!blob) return this.json(res, 400, { error: `LFS object ${value.oid} was not uploaded` });
        staged.set(value.path, blob);
      } else if (key === 'deletedFile') staged.delete(value.path);
    }
    repo.clear();
    for (const [k, v] of staged) repo.set(k, v);
    const oid = createHash('sha1').update(body).digest('hex');
    return this.json(res, 200, { commitOid: oid, commitUrl: `${this.url}/commit/${oid}` });
  }
}
