import type { Server } from 'node:http';
import express, { type NextFunction, type Request, type Response } from 'express';
import type { Logger } from '../log.js';
import { ratingPage, raterView } from './page.js';
import { toRating } from './rating-input.js';
import { RatingsLog } from './ratings-log.js';
import { raterOf } from './raters.js';
import { readItems, readStudy, studyFile, type Item, type Rater } from './study-files.js';

export interface StudyServer {
  url: string;
  server: Server;
  log: RatingsLog;
  close(): Promise<void>;
}

/**
 * The rating server of one study. A rater's link (`/r/<token>`) is the only way in; every answer is about that
 * rater alone (their order, their answers), and nothing of the key — runs, methods, task ids, the study's name —
 * is in any page or response. A rating is answered only once it is on disk (RatingsLog). The caller holds the
 * study's lock.
 */
export async function serveStudy(dir: string, opts: { host: string; port: number; logger: Logger }): Promise<StudyServer> {
  const study = readStudy(dir);
  const items = new Map<string, Item>(readItems(dir).map((i) => [i.item, i]));
  const ids = [...items.keys()];
  const itemSet = new Set(ids);
  const log = RatingsLog.open(studyFile(dir, 'ratings.log'));
  if (log.droppedTornBytes) opts.logger.warn({ bytes: log.droppedTornBytes }, 'ratings.log ended in a record cut short (never acknowledged); dropped it');
  const page = ratingPage(null);

  const app = express();
  app.disable('x-powered-by');
  app.set('etag', false);
  app.use((_req, res, next) => {
    res.set({
      'cache-control': 'no-store',
      'referrer-policy': 'no-referrer',
      'x-content-type-options': 'nosniff',
      'x-frame-options': 'DENY',
      'content-security-policy': "default-src 'none'; script-src 'unsafe-inline'; style-src 'unsafe-inline'; connect-src 'self'; img-src data:; form-action 'none'; frame-ancestors 'none'",
    });
    next();
  });
  const rater = (req: Request, res: Response): Rater | undefined => {
    const r = raterOf(dir, String(req.params.token));
    if (!r) res.status(404).json({ problems: ['this link is not valid (ask for a new one)'] });
    return r;
  };
  app.get('/r/:token', (req, res) => {
    if (!raterOf(dir, String(req.params.token))) res.status(404).type('text').send('This link is not valid. Ask the study organiser for a new one.\n');
    else res.type('html').send(page);
  });
  app.get('/api/r/:token/state', (req, res) => {
    const r = rater(req, res);
    if (r) res.json(raterView(study, ids, log.latest(), r.name));
  });
  app.get('/api/r/:token/items/:item', (req, res) => {
    if (!rater(req, res)) return;
    const it = items.get(String(req.params.item));
    if (!it) res.status(404).json({ problems: ['no such pair'] });
    else res.json(it);
  });
  app.post('/api/r/:token/ratings', express.json({ limit: '64kb' }), (req, res) => {
    const r = rater(req, res);
    if (!r) return;
    const rating = toRating(req.body, study.rubric, itemSet, r.name, 'web');
    if (Array.isArray(rating)) {
      res.status(400).json({ problems: rating });
      return;
    }
    const { stored } = log.append(rating);
    const done = new Set(log.latest().filter((x) => x.rater === r.name).map((x) => x.item)).size;
    opts.logger.info({ rater: r.name, item: rating.item, stored, done }, stored ? 'rating stored' : 'rating already stored');
    res.json({ ok: true, stored, done, total: ids.length });
  });
  app.use((_req, res) => {
    res.status(404).type('text').send('Not found\n');
  });
  app.use((err: Error & { status?: number }, _req: Request, res: Response, _next: NextFunction) => {
    const status = err.status && err.status < 500 ? err.status : 500;
    if (status === 500) opts.logger.error({ err: err.message }, 'request failed');
    res.status(status).json({ problems: [status === 500 ? 'the server could not store this rating' : err.message] });
  });

  const server = await new Promise<Server>((resolve, reject) => {
    const s = app.listen(opts.port, opts.host, () => resolve(s));
    s.once('error', reject);
  });
  const addr = server.address();
  const port = typeof addr === 'object' && addr ? addr.port : opts.port;
  const host = opts.host.includes(':') ? `[${opts.host}]` : opts.host;
  return {
    url: `http://${host === '0.0.0.0' ? '127.0.0.1' : host}:${port}`,
    server,
    log,
    close: () => new Promise<void>((resolve) => {
      server.closeAllConnections();
      server.close(() => {
        log.close();
        resolve();
      });
    }),
  };
}
