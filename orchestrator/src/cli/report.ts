import path from 'node:path';
import { findRunDir } from '../run/run-dir.js';
import { compare, formatComparison, writeReport } from '../score/report.js';
import { scoreRun } from '../score/run-scores.js';
import { UsageError } from '../errors.js';
import { studyRatings } from '../study/ratings-log.js';
import { studyStats } from '../study/stats.js';
import { findStudy, readKey, readStudy } from '../study/study-files.js';
import { readSweep } from '../sweep/sweep-files.js';
import { formatSweepReport, sweepReport, writeSweepReport } from '../sweep/sweep-report.js';
import { readHardSubset } from '../score/hard-subset.js';
import { EXIT, intOption, type CommandImpl } from './command.js';
import { hardDir } from './hard-subset.js';

export const reportCommand: CommandImpl = {
  async run(runs, values, { out }) {
    const split = values.split as string;
    const resamples = intOption(values, 'bootstrap')!;
    const seed = intOption(values, 'seed')!;
    if (values.sweep) {
      if (runs.length || values.study) throw new UsageError('--sweep reports a sweep\'s own points: name no runs and no --study beside it');
      const record = readSweep(path.resolve((values['runs-dir'] as string | undefined) ?? 'runs'), values.sweep as string);
      const report = await sweepReport(record, { resamples, seed });
      // Beside a comparison of runs, not over it: a sweep's report has a folder of its own unless --out says otherwise.
      const written = writeSweepReport(path.resolve(values.out === 'report' ? path.join('report', record.name) : (values.out as string)), report);
      if (values.json) out(JSON.stringify(report, null, 2));
      else {
        out(formatSweepReport(report).join('\n'));
        out(`\nwritten: ${written.map((f) => path.relative(process.cwd(), f)).join(', ')}`);
      }
      return EXIT.ok;
    }
    const studyDir = values.study ? findStudy(values.study as string, (values['studies-dir'] as string | undefined) ?? 'studies') : null;
    const study = studyDir ? readStudy(studyDir) : null;
    if (!runs.length && !study) throw new UsageError('name the runs to compare, or --study NAME (whose runs are compared)');
    const dirs = runs.length ? runs.map((r) => findRunDir(r)) : study!.runs.map((r) => r.dir);
    const subset = values['hard-subset'] ? readHardSubset(values['hard-subset'] as string, hardDir(values)) : undefined;
    if (subset && subset.split !== split) throw new UsageError(`Hard subset ${subset.name} was derived on the ${subset.split} split: report --split ${subset.split}`);
    const scored = [];
    for (const d of dirs) scored.push(await scoreRun(d, split, { resamples, seed, ...(subset ? { subset: { name: subset.name, ids: subset.ids } } : {}) }));
    const studyResult = studyDir ? studyStats(study!, readKey(studyDir), studyRatings(studyDir), resamples, seed) : null;
    const comparison = compare(scored, resamples, seed, studyResult);
    const written = writeReport(path.resolve(values.out as string), comparison);
    if (values.json) {
      out(JSON.stringify(comparison, null, 2));
      return EXIT.ok;
    }
    out(formatComparison(comparison, { leaderboard: values.leaderboard === true }).join('\n'));
    out(`\nwritten: ${written.map((f) => path.relative(process.cwd(), f)).join(', ')}`);
    return EXIT.ok;
  },
};
