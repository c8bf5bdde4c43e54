import path from 'node:path';
import { InputError, UsageError } from '../errors.js';
import { findRunDir } from '../run/run-dir.js';
import { withLock } from '../util/file-lock.js';
import { table } from '../util/table.js';
import { createStudy } from '../study/create.js';
import { exportStudy, importRatings } from '../study/export.js';
import { studyRatings } from '../study/ratings-log.js';
import { addRater } from '../study/raters.js';
import { DEFAULT_RUBRIC, loadRubric } from '../study/rubric.js';
import { serveStudy } from '../study/server.js';
import { findStudy, readKey, readRaters, readStudy, studyDir, studyFile } from '../study/study-files.js';
import { EXIT, intOption, type CommandImpl, type OptionValues } from './command.js';

/**
 * `bsft study …`: a blind pairwise study of runs' replies rated by clinicians. One file for the five commands, which
 * share the study folder (studies/<name>/, --dir) and its lock: one process writes the ratings at a time.
 */
const studiesDir = (values: OptionValues) => (values.dir as string | undefined) ?? 'studies';

/** Runs `fn` holding the study's ratings lock; another holder (a server) is named rather than waited for. */
function withStudyLock<T>(dir: string, fn: () => Promise<T>): Promise<T> {
  return withLock(studyFile(dir, 'ratings.log'), fn, {
    onWait: (h) => {
      throw new InputError(`study ${path.basename(dir)} is in use by process ${h.pid} on ${h.host} (since ${h.since}): a study server, or an import; stop it first`);
    },
  });
}

const defaultPort = 8377;

function raterLink(host: string, port: number, token: string): string {
  return `http://${host === '0.0.0.0' || host === '::' ? '<this machine>' : host}:${port}/r/${token}`;
}

export const studyCreate: CommandImpl = {
  async run([name], values, { out }) {
    const runs = (values.runs as string[] | undefined) ?? [];
    if (runs.length < 2) throw new UsageError('--runs takes at least two runs (run ids or folders): --runs A --runs B, or --runs A B');
    const stratify = (values.stratify as string | undefined) ?? null;
    if (stratify !== null && stratify !== 'category' && stratify !== 'group') throw new UsageError('--stratify is category or group');
    const dir = studyDir(name!, studiesDir(values));
    const runsDir = path.resolve((values['runs-dir'] as string | undefined) ?? 'runs');
    const created = await createStudy({
      name: name!,
      dir,
      runDirs: runs.map((r) => findRunDir(r, runsDir)),
      split: values.split as string,
      n: intOption(values, 'n')!,
      seed: intOption(values, 'seed')!,
      stratify,
      rubric: values.rubric ? loadRubric(values.rubric as string) : DEFAULT_RUBRIC,
    });
    const s = created.study;
    out(`study ${s.name}: ${s.tasks} tasks of ${created.eligible} that every run predicted with a reply (split ${s.split}), ${s.items} pairs (${s.runs.length} runs, every pair of runs on each task), sides drawn at random (seed ${s.seed})`);
    for (const l of table([[stratify ?? 'category', 'tasks'], ...Object.entries(created.strata).sort().map(([k, v]) => [k, String(v)])])) out(`  ${l}`);
    out(`rubric ${s.rubric.version}: ${s.rubric.questions.map((q) => q.id).join(', ')}${s.rubric.comment ? ', comment' : ''}`);
    out(`written: ${path.relative(process.cwd(), dir) || dir}/ (key.jsonl holds the blinding key: keep it from raters)`);
    out(`next: bsft study add-rater ${s.name} <rater>, then bsft study serve ${s.name}`);
    return EXIT.ok;
  },
};

export const studyAddRater: CommandImpl = {
  async run([name, rater], values, { out }) {
    const dir = findStudy(name!, studiesDir(values));
    const token = addRater(dir, rater!, values.rotate === true);
    const host = (values.host as string | undefined) ?? '127.0.0.1';
    const port = intOption(values, 'port') ?? defaultPort;
    out(`${values.rotate ? 'new link' : 'rater added'}: ${rater} — their link (shown only now; only its hash is kept):`);
    out(`  ${raterLink(host, port, token)}`);
    out(`(for bsft study serve ${readStudy(dir).name} --host ${host} --port ${port}; the link's path /r/<token> works with any host and port)`);
    return EXIT.ok;
  },
};

export const studyServe: CommandImpl = {
  async run([name], values, { log, out }) {
    const dir = findStudy(name!, studiesDir(values));
    const host = values.host as string;
    const port = intOption(values, 'port')!;
    if (port > 65535) throw new UsageError('--port must be 0..65535');
    return withStudyLock(dir, async () => {
      const s = await serveStudy(dir, { host, port, logger: log });
      const study = readStudy(dir);
      const raters = readRaters(dir);
      out(`bsft study ${study.name}: serving ${study.items} pairs to ${raters.length} rater(s) at ${s.url}/r/<token> (links from bsft study add-rater; Ctrl-C to stop)`);
      if (!raters.length) out(`no rater yet: bsft study add-rater ${study.name} <rater>`);
      await new Promise<void>((resolve) => {
        process.once('SIGINT', resolve);
        process.once('SIGTERM', resolve);
      });
      log.info('study server stopping');
      await s.close();
      return EXIT.ok;
    });
  },
};

export const studyExport: CommandImpl = {
  async run([name], values, { out }) {
    const dir = findStudy(name!, studiesDir(values));
    const outDir = path.resolve((values.out as string | undefined) ?? path.join(dir, 'export'));
    const files = exportStudy(dir, outDir, (values.form as string[] | undefined) ?? []);
    const ratings = studyRatings(dir);
    out(`${ratings.length} rating(s) of ${readKey(dir).length} pairs exported`);
    for (const f of files) out(`written: ${path.relative(process.cwd(), f) || f}`);
    if (values.form) out('an offline form keeps answers in its browser; its "Download my ratings" file goes back with: bsft study import <study> <file>');
    return EXIT.ok;
  },
};

export const studyImport: CommandImpl = {
  async run([name, ...files], values, { out }) {
    const dir = findStudy(name!, studiesDir(values));
    const r = await withStudyLock(dir, async () => importRatings(dir, files.map((f) => path.resolve(f))));
    out(`imported: ${r.stored} rating(s) stored, ${r.known} already there`);
    return EXIT.ok;
  },
};
