import { UsageError } from '../errors.js';
import { createBullBoard } from '@bull-board/api';
import { BullMQAdapter } from '@bull-board/api/bullMQAdapter';
import { ExpressAdapter } from '@bull-board/express';
import { RunQueue } from '../queue/run-job.js';
import express from 'express';
import { RedisWatch, workerConnection } from '../queue/connection.js';
import { queueName, queuePrefix, STAGES } from '../queue/names.js';
import { LOWEST_PRIORITY } from '../queue/submit.js';
import { EXIT, type CommandImpl } from './command.js';
import type { Job } from 'bullmq';

const STAGE_DESCRIPTIONS: Record<(typeof STAGES)[number], string> = {
  build: 'build the behavior-token dataset (queue bsft-build)',
  train: 'train, then predict the eval splits; progress = % of the current stage, figures in the job data (queue bsft-train)',
  score: 'score the predictions (queue bsft-score)',
};

/**
 * The queue as the board shows it: a run submitted without a priority carries BullMQ's lowest priority (see
 * bullPriority) only so that prioritized runs go first; that internal number is not shown as the run's priority.
 */
class RunBoardAdapter extends BullMQAdapter {
  private static shown(job: Job | undefined): Job | undefined {
    if (!job || job.priority !== LOWEST_PRIORITY) return job;
    const json = job.toJSON.bind(job);
    job.toJSON = () => {
      const j = json();
      const { priority: _hidden, ...opts } = j.opts;
      return { ...j, priority: 0, opts };
    };
    return job;
  }

  override async getJob(id: string): Promise<Job | undefined> {
    return RunBoardAdapter.shown(await super.getJob(id));
  }

  override async getJobs(...args: Parameters<BullMQAdapter['getJobs']>): Promise<Job[]> {
    return (await super.getJobs(...args)).map((j) => RunBoardAdapter.shown(j)!);
  }
}

export const dashboard: CommandImpl = {
  async run(_args, values, { log, out }) {
    const port = Number(values.port as string);
    if (!Number.isInteger(port) || port < 0 || port > 65535) throw new UsageError('--port must be 0..65535');
    const host = values.host as string;
    const redis = new RedisWatch(log);
    const connection = workerConnection(undefined, redis);
    const queues = STAGES.map((s) => redis.watch(new RunQueue(queueName(s), { connection, prefix: queuePrefix() }), s));
    const adapter = new ExpressAdapter();
    adapter.setBasePath('/');
    const readOnlyMode = values['allow-actions'] !== true;
    // The queues in pipeline order (build -> train -> score), numbered so that any sorting keeps that order.
    const adapters = queues.map((q, i) => new RunBoardAdapter(q, {
      readOnlyMode,
      allowRetries: !readOnlyMode,
      displayName: `${i + 1} ${STAGES[i]}`,
      description: STAGE_DESCRIPTIONS[STAGES[i]!],
    }));
    createBullBoard({ queues: adapters, serverAdapter: adapter, options: { uiConfig: { boardTitle: 'bsft', sortQueues: false } } });
    const app = express();
    // Bull Board's page links a web font on fonts.googleapis.com: left out, so that the dashboard makes no request
    // off the machine (GPU clusters are often offline, and a browser console error hides real ones); system fonts.
    app.use((_req, res, next) => {
      const send = res.send.bind(res);
      res.send = (body?: unknown) => send(typeof body === 'string' ? body.replace(/<link[^>]*fonts\.googleapis\.com[^>]*>/g, '') : body);
      next();
    });
    app.use('/', adapter.getRouter());
    const server = app.listen(port, host);
    await new Promise<void>((resolve, reject) => {
      server.once('listening', resolve);
      server.once('error', reject);
    });
    const address = server.address();
    const actual = typeof address === 'object' && address ? address.port : port;
    out(`bsft dashboard: http://${host}:${actual}/  (${readOnlyMode ? 'read-only; --allow-actions enables retry/clean/delete' : 'actions enabled'}; Ctrl-C to stop)`);
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
