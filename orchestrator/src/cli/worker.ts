import { UsageError } from '../errors.js';
import { tokenSafeUrl } from '../recipe/hub-url.js';
import { existsSync } from 'node:fs';
import path from 'node:path';
import { STAGES, type Stage } from '../queue/names.js';
import { redactUrl } from '../recipe/secrets.js';
import { redisUrl } from '../queue/connection.js';
import { startWorker } from '../worker/worker.js';
import { EXIT, type CommandImpl } from './command.js';

function hubEndpoints(urls: string[]): string[] {
  for (const u of urls) {
    let url: URL;
    try {
      url = new URL(u);
    } catch {
      throw new UsageError(`--hub-endpoint: not a URL: ${u}`);
    }
    if (!tokenSafeUrl(url.href)) {
      throw new UsageError(`--hub-endpoint: ${u} is not https (the worker's HF_TOKEN is sent there)`);
    }
  }
  return urls;
}

export const workerCommand: CommandImpl = {
  async run(_args, values, { log }) {
    const queues = (values.queues as string).split(',').map((q) => q.trim()) as Stage[];
    const bad = queues.filter((q) => !STAGES.includes(q));
    if (bad.length) throw new UsageError(`--queues: unknown queue(s) ${bad.join(', ')} (choose from ${STAGES.join(', ')})`);
    const gpus = values.gpus as string | undefined;
    if (gpus !== undefined && !/^\d+(,\d+)*$/.test(gpus)) throw new UsageError('--gpus: a comma-separated list of GPU indices, e.g. 0,1');
    const trainerCmd = (values.trainer as string | undefined) ?? process.env.BSFT_TRAINER;
    log.info({ redis: redactUrl(redisUrl()) }, 'connecting');
    const worker = await startWorker({
      queues,
      log,
      ...(gpus !== undefined ? { gpus } : {}),
      // The trainer runs in the run folder: make relative paths of the command absolute here.
      ...(trainerCmd ? { trainer: trainerCmd.split(/\s+/).filter(Boolean).map((t) => (t.includes('/') && existsSync(t) ? path.resolve(t) : t)) } : {}),
      ...(values.name ? { name: values.name as string } : {}),
      ...(values.workdir ? { workdir: values.workdir as string } : {}),
      allow: (values.allow as string[] | undefined) ?? [],
      hubEndpoints: hubEndpoints((values['hub-endpoint'] as string[] | undefined) ?? []),
      judgeEndpoints: (values['judge-endpoint'] as string[] | undefined) ?? [],
    });
    await new Promise<void>((resolve) => {
      let stopping = false;
      const stop = (signal: string) => {
        if (stopping) {
          log.warn('second signal: exiting now');
          process.exit(1);
        }
        stopping = true;
        log.info({ signal }, 'stopping');
        worker.close().then(resolve, (e) => {
          log.error({ err: (e as Error).message }, 'error while stopping');
          resolve();
        });
      };
      process.on('SIGTERM', () => stop('SIGTERM'));
      process.on('SIGINT', () => stop('SIGINT'));
    });
    log.info('worker stopped');
    return EXIT.ok;
  },
};
