import { alreadySubmitted } from '../queue/advice.js';
import { submitRun } from '../queue/submit.js';
import { EXIT, intOption, recipeOptionHelp, recipeOptions, type CommandImpl } from './command.js';
import { withQueues } from './queue-args.js';
import { resolveFromArgs } from './recipe-args.js';

export const submit: CommandImpl = {
  async run([file], values, { out }) {
    const recipe = resolveFromArgs(file!, values);
    const priority = intOption(values, 'priority');
    return withQueues(async (q) => {
      const res = await submitRun(recipe, q.connection, priority !== undefined ? { priority } : {});
      if (res.created) {
        out(`submitted run ${res.runId}\n  watch it:  bsft watch ${res.runId}\n  logs:      bsft logs ${res.runId} -f\n  all runs:  bsft status`);
        return EXIT.ok;
      }
      const view = await q.view(res.runId);
      out(alreadySubmitted(res.runId, view));
      return EXIT.ok;
    });
  },
};

