import { stringify } from 'yaml';
import { RUN_ID_COVERS, SPEED_SWITCHES } from '../recipe/resolve.js';
import { EXIT, recipeOptionHelp, recipeOptions, type CommandImpl } from './command.js';
import { resolveFromArgs } from './recipe-args.js';

export const show: CommandImpl = {
  async run([file], values, { out }) {
    const resolved = resolveFromArgs(file!, values);
    const covers =
      `run id ${resolved.run_id} covers: ${RUN_ID_COVERS.join(', ')} (what trains the weights); ` +
      'eval, queue, store, resources, tracking, judge and description are per-run settings: changing them reuses the training, ' +
      `as do the speed switches ${SPEED_SWITCHES.map((k) => `train.${k}`).join(', ')}`;
    if (values.json) {
      process.stderr.write(`${covers}\n`);
      out(JSON.stringify(resolved, null, 2));
    } else out(`# ${covers}\n${stringify(resolved, { lineWidth: 0 }).trimEnd()}`);
    return EXIT.ok;
  },
};
