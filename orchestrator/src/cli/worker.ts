import { UsageError } from '../errors.js';
import { existsSync } from 'node:fs';
import path from 'node:path';
import { STAGES, type Stage } from '../queue/names.js';
import { redactUrl } from '../recipe/secrets.js';
import { redisUrl } from '../queue/connection.js';
import { startWorker } from '../worker/worker.js';
import { EXIT, type Command } from './command.js';

function hubEndpoints(urls: string[]): string[] {
  for (const u of urls) {
    let url: URL;
    try {
      url = new URL(u);
    } catch {
      throw new UsageError(`--hub-endpoint: not a URL: ${u}`);
    }
    if (url.protocol !== 'https:' && !['127.0.0.1', 'localhost', '[::1]'].includes(url.hostname)) {
      throw new UsageError(`--hub-endpoint: ${u} is not https (the worker's HF_TOKEN is sent there)`);
    }
  }
  return urls;
}

export const workerCommand: Command = {
  name: 'worker',
  summary: 'run a worker daemon: takes build, train and score jobs and runs the trainer for train jobs',
  usage: 'bsft worker [--gpus 0,1] [--queues train,build,score] [--name NAME] [--workdir DIR] [--allow DIR] [--hub-endpoint URL] [--trainer CMD]',
  details:
    'SIGTERM (a preempted machine) stops the trainer after a checkpoint, puts its job back in waiting and exits.\n' +
    'Redis from REDIS_URL; HF_TOKEN from the environment. --trainer (or BSFT_TRAINER) replaces `python -m bsft_trainer`.\n' +
    'Jobs are checked before anything runs: their paths must lie in the current directory, --workdir or an --allow root\n' +
    '(BSFT_ALLOW_PATHS too), and a hub store\'s hub_url must be HF_ENDPOINT (default https://huggingface.co) or a --hub-endpoint.',
  options: { gpus: { type: 'string' }, queues: { type: 'string' }, name: { type: 'string' }, trainer: { type: 'string' }, workdir: { type: 'string' },
    allow: { type: 'string', multiple: true }, 'hub-endpoint': { type: 'string', multiple: true } },
  optionHelp: {
    gpus: 'GPUs of this worker (CUDA_VISIBLE_DEVICES), e.g. 0,1',
    queues: `queues to work on (default ${STAGES.join(',')})`,
    name: 'worker name shown in bsft status (default host:pid)',
    trainer: 'trainer command instead of python -m bsft_trainer',
    workdir: 'where runs of a Hub store are staged on this machine (default ./runs, or BSFT_WORKDIR)',
    allow: 'also let jobs read and write inside DIR (repeatable; default: the current directory and --workdir)',
    'hub-endpoint': 'also send HF_TOKEN to this Hub endpoint when a job names it (repeatable; must be https)',
  },
  positionals: [0, 0],
  async run(_args, values, { log }) {
    const queues = ((values.queues as string | undefined) ?? STAGES.join(',')).split(',').map((q) => q.trim()) as Stage[];
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
