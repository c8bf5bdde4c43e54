import { alreadySubmitted } from '../queue/advice.js';
import { submitRun } from '../queue/submit.js';
import { EXIT, intOption, recipeOptionHelp, recipeOptions, type Command } from './command.js';
import { withQueues } from './queue-args.js';
import { resolveFromArgs } from './recipe-args.js';

export const submit: Command = {
  name: 'submit',
  summary: 'queue a recipe as a run (BullMQ flow build -> train -> score); the run id is the job id',
  usage: 'bsft submit <recipe> [--priority N] [--set path=value] [--allow DIR]',
  details: 'Redis comes from REDIS_URL (redis:// or rediss://, password allowed). Submitting the same run again is a no-op.',
  options: { ...recipeOptions, priority: { type: 'string' } },
  optionHelp: { ...recipeOptionHelp, priority: 'BullMQ priority: 1 is the most urgent; 0 (none) runs after every prioritized run (default: the recipe\'s queue.priority)' },
  positionals: [1, 1],
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

