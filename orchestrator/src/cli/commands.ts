import { cancel, retry } from './cancel.js';
import type { Command } from './command.js';
import { dashboard } from './dashboard.js';
import { datasetBuild } from './dataset-build.js';
import { datasetInspect } from './dataset-inspect.js';
import { datasetStats } from './dataset-stats.js';
import { init } from './init.js';
import { logs } from './logs.js';
import { predict } from './predict.js';
import { pull } from './pull.js';
import { reportCommand } from './report.js';
import { reproduce } from './reproduce.js';
import { run } from './run.js';
import { scoreCommand } from './score.js';
import { show } from './show.js';
import { status } from './status.js';
import { submit } from './submit.js';
import { validate } from './validate.js';
import { watch } from './watch.js';
import { workerCommand } from './worker.js';

/** Every `bsft` command, in the order `bsft --help` lists them. */
export const COMMANDS: Command[] = [
  validate, show, init, run,
  datasetBuild, datasetStats, datasetInspect,
  submit, workerCommand, status, watch, logs, cancel, retry, dashboard, pull,
  predict, scoreCommand, reportCommand, reproduce,
];
