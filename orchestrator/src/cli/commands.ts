import type { Command } from './command.js';
import { datasetBuild } from './dataset-build.js';
import { datasetInspect } from './dataset-inspect.js';
import { datasetStats } from './dataset-stats.js';
import { init } from './init.js';
import { reportCommand } from './report.js';
import { run } from './run.js';
import { scoreCommand } from './score.js';
import { show } from './show.js';
import { validate } from './validate.js';

/** Every `bsft` command, in the order `bsft --help` lists them. */
export const COMMANDS: Command[] = [validate, show, init, run, datasetBuild, datasetStats, datasetInspect, scoreCommand, reportCommand];
