import { UsageError } from '../errors.js';
import { createBullBoard } from '@bull-board/api';
import { BullMQAdapter } from '@bull-board/api/bullMQAdapter';
import { ExpressAdapter } from '@bull-board/express';
import { Queue } from 'bullmq';
import express from 'express';
import { RedisWatch, workerConnection } from '../queue/connection.js';
import { queueName, queuePrefix, STAGES } from '../queue/names.js';
import { EXIT, type CommandImpl } from './command.js';

export const dashboard: CommandImpl = {
  async run(_args, values, { log, out }) {
    const port = Number(values.port as string);
    if (!Number.isInteger(port) || port < 0 || port > 65535) throw new UsageError('--port must be 0..65535');
    const host = values.host as string;
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
