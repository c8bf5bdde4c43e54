import { UsageError } from '../errors.js';
import { createBullBoard } from '@bull-board/api';
import { BullMQAdapter } from '@bull-board/api/bullMQAdapter';
import { ExpressAdapter } from '@bull-board/express';
import { Queue } from 'bullmq';
import express from 'express';
import { RedisWatch, workerConnection } from '../queue/connection.js';
import { queueName, queuePrefix, STAGES } from '../queue/names.js';
import { EXIT, type Command } from './command.js';

export const dashboard: Command = {
  name: 'dashboard',
  summary: 'serve Bull Board on localhost, showing the build, train and score queues',
  usage: 'bsft dashboard [--port 3100] [--host 127.0.0.1]',
  details: 'Bound to 127.0.0.1 by default: reach it from elsewhere through an SSH tunnel, not by opening the port.',
  options: { port: { type: 'string' }, host: { type: 'string' } },
  optionHelp: { port: 'port (default 3100; 0 picks a free one)', host: 'address to bind (default 127.0.0.1)' },
  positionals: [0, 0],
  async run(_args, values, { log, out }) {
    const port = Number((values.port as string | undefined) ?? 3100);
    if (!Number.isInteger(port) || port < 0 || port > 65535) throw new UsageError('--port must be 0..65535');
    const host = (values.host as string | undefined) ?? '127.0.0.1';
    const redis = new RedisWatch(log);
    const connection = workerConnection(undefined, redis);
    const queues = STAGES.map((s) => redis.watch(new Queue(queueName(s), { connection, prefix: queuePrefix() }), s));
    const adapter = new ExpressAdapter();
    adapter.setBasePath('/');
    createBullBoard({ queues: queues.map((q) => new BullMQAdapter(q)), serverAdapter: adapter, options: { uiConfig: { boardTitle: 'bsft' } } });
    const app = express();
    app.use('/', adapter.getRouter());
    const server = app.listen(port, host);
    await new Promise<void>((resolve, reject) => {
      server.once('listening', resolve);
      server.once('error', reject);
    });
    const address = server.address();
    const actual = typeof address === 'object' && address ? address.port : port;
    out(`bsft dashboard: http://${host}:${actual}/  (Ctrl-C to stop)`);
    await new Promise<void>((resolve) => {
      process.once('SIGINT', resolve);
      process.once('SIGTERM', resolve);
    });
    log.info('dashboard stopping');
    server.close();
    await Promise.all(queues.map((q) => q.close()));
    await connection.quit();
    return EXIT.ok;
  },
};
