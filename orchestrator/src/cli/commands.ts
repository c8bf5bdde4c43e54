import type { Command } from './command.js';
import { init } from './init.js';
import { run } from './run.js';
import { show } from './show.js';
import { validate } from './validate.js';

/** Every `bsft` command, in the order `bsft --help` lists them. */
export const COMMANDS: Command[] = [validate, show, init, run];
