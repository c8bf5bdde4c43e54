import { STAGES } from '../queue/names.js';
import { VALIDATE_DATA_MAX_BYTES } from '../dataset/limits.js';
import { recipeOptionHelp, recipeOptions, type CommandSpec } from './command.js';
import { MEASURED_LORA_TOK_S, PRESETS } from './presets.js';

/** The options that make a sweep (bsft sweep, and bsft run for a sweep in this process). */
const sweepOptions: CommandSpec['options'] = {
  grid: { type: 'string', multiple: true },
  random: { type: 'string' },
  range: { type: 'string', multiple: true },
  'log-range': { type: 'string', multiple: true },
  seed: { type: 'string' },
  name: { type: 'string' },
  'max-points': { type: 'string' },
  yes: { type: 'boolean', short: 'y' },
};
const sweepOptionHelp: Record<string, string> = {
  grid: 'a swept key and its values: --grid train.lr=1e-5,2e-5,5e-5 (repeatable; every combination; values are YAML, [a,b] a list)',
  random: 'a random search of N points instead of the grid (--grid keys drawn from their values)',
  range: 'with --random: a key drawn uniformly, --range train.warmup_steps=0:100 (integers when both ends are)',
  'log-range': 'with --random: a key drawn log-uniformly, --log-range train.lr=1e-5:1e-3',
  seed: 'the random search\'s seed (default 0)',
  name: 'the sweep\'s name (default <recipe name>-sweep-<hash of its runs>)',
  'max-points': 'the most points without --yes (default 20)',
  yes: 'run a sweep of more than --max-points points',
};

const mib = (bytes: number) => `${(bytes / 1024 / 1024).toFixed(1)} MiB`;

/**
 * Every `bsft` command, in the order `bsft --help` lists them: what the CLI parser needs (options with their help
 * and defaults, arguments) and `load`, which imports the command's code only when it runs, so `bsft --help` and
 * light commands never load BullMQ, Bull Board, express or the tokenizer.
 */
export const COMMANDS: CommandSpec[] = [
  {
    name: 'validate',
    defaultRecipe: true,
    summary: 'check recipes (and their task files) and list every problem with its path, file and line',
    usage: 'bsft validate <recipe...> [--data | --no-data] [--json] [--set path=value] [--allow DIR]',
    details:
      `Task files are checked line by line as \`bsft dataset build\` imports them (JSON, fields, text rules, limits)\n` +
      `when they are local and ${mib(VALIDATE_DATA_MAX_BYTES)} or less in all; --data checks larger ones too, --no-data skips the check.`,
    options: { json: { type: 'boolean' }, ...recipeOptions, quiet: { type: 'boolean', short: 'q' }, data: { type: 'boolean' }, 'no-data': { type: 'boolean' } },
    optionHelp: { json: 'print the results as JSON', ...recipeOptionHelp, quiet: 'print problems only', data: 'check the task files whatever their size', 'no-data': 'do not read the task files' },
    positionals: [1, Infinity],
    load: async () => (await import('./validate.js')).validate,
  },
  {
    name: 'show',
    defaultRecipe: true,
    summary: 'print the fully resolved recipe (extends merged, defaults filled in, paths absolute)',
    usage: 'bsft show <recipe> [--json] [--set path=value] [--allow DIR]',
    options: { ...recipeOptions, json: { type: 'boolean' } },
    optionHelp: { ...recipeOptionHelp, json: 'print JSON instead of YAML' },
    positionals: [1, 1],
    load: async () => (await import('./show.js')).show,
  },
  {
    name: 'init',
    summary: 'write a starter recipe',
    usage: 'bsft init [file] [--name NAME] [--model ID_OR_DIR] [--tasks GLOB] [--preset behaviorbench] [--force]',
    options: {
      preset: { type: 'string' },
      name: { type: 'string', default: 'my-behaviorsft' },
      model: { type: 'string', default: 'Qwen/Qwen2.5-7B-Instruct' },
      tasks: { type: 'string', default: 'data/*.jsonl' },
      force: { type: 'boolean', short: 'f' },
  },
    optionHelp: {
      preset: 'behaviorbench: map the 13 BehaviorBench categories to their behaviors',
      name: 'run name',
      model: 'base model (a Hub id or a local folder)',
      tasks: 'task files or glob',
      force: 'overwrite an existing file',
  },
    positionals: [0, 1],
    load: async () => (await import('./init.js')).init,
  },
  {
    name: 'run',
    defaultRecipe: true,
    summary: 'run a recipe end to end in this process (build -> train -> predict -> score), no Redis',
    usage: 'bsft run <recipe | sweep.yaml> [--set path=value] [--allow DIR] [--grid key=a,b]... [--random N --range key=lo:hi]',
    details:
      'Results go to runs/<run-id>/ (store.path when set). Steps already done for the same run id are skipped,\n' +
      'so running the same command again continues where it stopped.\n' +
      'Ctrl-C (or SIGTERM) asks the trainer to finish its step and write a checkpoint (within train.preempt_grace_s),\n' +
      'then exits 130 (143); a second Ctrl-C stops at once, losing the training since the last checkpoint.\n' +
      'With sweep options (or a sweep file), the sweep\'s points run one after another, each a run as above (points\n' +
      'done before are reused), then they are ranked on the validation split (as bsft report --sweep).',
    options: { ...recipeOptions, ...sweepOptions, 'dry-run': { type: 'boolean' }, 'price-in': { type: 'string' }, 'price-out': { type: 'string' } },
    optionHelp: { ...recipeOptionHelp, ...sweepOptionHelp, 'dry-run': 'build the dataset in a temporary folder and print the plan: an endpoint\'s requests, tokens and cost, or training and prediction; write nothing',
      'price-in': 'with --dry-run: USD per million prompt tokens of the endpoint', 'price-out': 'with --dry-run: USD per million completion tokens' },
    positionals: [1, 1],
    load: async () => (await import('./run.js')).run,
  },
  {
    name: 'runs',
    summary: 'the local runs of a runs folder (no Redis): how far each got, macro-F1, size on disk, last change',
    usage: 'bsft runs [--dir runs] [--sweep NAME] [--json]',
    options: { dir: { type: 'string' }, json: { type: 'boolean' }, sweep: { type: 'string' } },
    optionHelp: { dir: 'runs folder (default ./runs)', json: 'print JSON', sweep: 'the points of a sweep: their values and runs' },
    positionals: [0, 0],
    load: async () => (await import('./runs.js')).runs,
  },
  {
    name: 'rm',
    summary: "remove run folders and ended runs' queued jobs and say what that freed; never one a live process or a queued job is using",
    usage: 'bsft rm <run-id | run dir>... | --sweep NAME [--yes] [--dir runs]',
    details: 'Asks before removing unless --yes. A run whose folder a process of this machine works in (a trainer, bsft run),\n' +
      'or whose queued job has not ended (where Redis answers), is refused: bsft cancel it first. An ended run\'s jobs\n' +
      '(a cancelled or failed run\'s later stages wait in the queue for bsft retry) are removed too, so the same run can be\n' +
      'submitted afresh; a run only in the queue (no local folder) is removed from the queue. --sweep removes a sweep\'s\n' +
      'points the same way, then its record once none is left (a point another sweep shares goes too).',
    options: { yes: { type: 'boolean', short: 'y' }, dir: { type: 'string' }, sweep: { type: 'string' } },
    optionHelp: { yes: 'remove without asking', dir: 'runs folder for run ids (default ./runs)', sweep: 'every point of a sweep, then its record' },
    positionals: [0, Infinity],
    load: async () => (await import('./rm.js')).rm,
  },
  {
    name: 'chat',
    summary: "talk to a run's trained model at a terminal: each reply shows the behavior it chose and how sure it was; /force steers it",
    usage: 'bsft chat <run-id | run dir> [--max-new-tokens 256] [--dir runs] [--balanced] [--offset behavior=x]...',
    details: 'Prompts are rendered as the run\'s dataset was (chat template, speakers\' names, the instruction of instruction runs);\n' +
      'replies are greedy, as predict decodes, and stream token by token. In the conversation: /force <behavior> steers the\n' +
      'next reply with its token (the paper\'s steering), /as <name> speaks as another participant, /reset, /help, /quit.',
    options: { 'max-new-tokens': { type: 'string' }, dir: { type: 'string' }, balanced: { type: 'boolean' }, offset: { type: 'string', multiple: true } },
    optionHelp: { 'max-new-tokens': 'longest reply in tokens (default 256)', dir: 'runs folder for run ids (default ./runs)',
      balanced: 'apply the run\'s operating point (balance.json from bsft balance)', offset: 'an offset on a behavior token\'s logit, e.g. --offset proactive=1.5' },
    positionals: [1, 1],
    load: async () => (await import('./chat.js')).chat,
  },
  {
    name: 'export',
    summary: "write the folder a serving engine (vLLM, SGLang) loads: the run's model merged, its tokenizer with the behavior tokens",
    usage: 'bsft export <run-id | run dir> [--out DIR] [--dir runs]',
    details: 'Then serve it and predict through it with eval.engine: openai (the command prints both command lines).',
    options: { out: { type: 'string' }, dir: { type: 'string' } },
    optionHelp: { out: 'output folder (default runs/<run-id>/export)', dir: 'runs folder for run ids (default ./runs)' },
    positionals: [1, 1],
    load: async () => (await import('./export.js')).exportRun,
  },
  {
    name: 'dataset build',
    defaultRecipe: true,
    summary: 'build the behavior-token dataset of a recipe into runs/<run-id>/dataset/',
    usage: 'bsft dataset build <recipe> [--out DIR] [--set path=value] [--allow DIR]',
    options: { ...recipeOptions, out: { type: 'string' } },
    optionHelp: { ...recipeOptionHelp, out: 'output folder (default runs/<run-id>/dataset)' },
    positionals: [1, 1],
    load: async () => (await import('./dataset-build.js')).datasetBuild,
  },
  {
    name: 'dataset stats',
    summary: 'counts per split x category x behavior, token-length histogram, truncation',
    usage: 'bsft dataset stats <run-id | run dir | dataset dir> [--json]',
    options: { json: { type: 'boolean' } },
    optionHelp: { json: 'print the manifest statistics as JSON' },
    positionals: [1, 1],
    load: async () => (await import('./dataset-stats.js')).datasetStats,
  },
  {
    name: 'dataset inspect',
    summary: 'show rendered documents with the loss-masked spans marked',
    usage: 'bsft dataset inspect <run-id | run dir | dataset dir> [--split val] [--n 3] [--tokenizer DIR]',
    details: 'Text inside ⟦ ⟧ is predicted (inside the loss); the rest is context. On a terminal it is also shown in green.',
    options: { split: { type: 'string', default: 'val' }, n: { type: 'string', default: '3' }, tokenizer: { type: 'string' } },
    optionHelp: { split: 'train | val | test', n: 'number of documents', tokenizer: 'tokenizer folder (default: the run recipe\'s)' },
    positionals: [1, 1],
    load: async () => (await import('./dataset-inspect.js')).datasetInspect,
  },
  {
    name: 'submit',
    defaultRecipe: true,
    summary: 'queue a recipe as a run (BullMQ flow build -> train -> score); the run id is the job id',
    usage: 'bsft submit <recipe> [--priority N] [--set path=value] [--allow DIR]',
    details: 'Redis comes from REDIS_URL (redis:// or rediss://, password allowed). Submitting the same run again is a no-op.',
    options: { ...recipeOptions, priority: { type: 'string' } },
    optionHelp: { ...recipeOptionHelp, priority: 'BullMQ priority: 1 is the most urgent; 0 (none) runs after every prioritized run (default: the recipe\'s queue.priority)' },
    positionals: [1, 1],
    load: async () => (await import('./submit.js')).submit,
  },
  {
    name: 'sweep',
    summary: 'queue a sweep: a grid or random search over recipe values, each point a run, compared on validation',
    usage: 'bsft sweep <recipe | sweep.yaml> --grid key=a,b [--grid key=x,y]... [--random N [--range key=lo:hi] [--log-range key=lo:hi] [--seed S]] [--name NAME] [--priority N] [--dry-run] [--yes]',
    details:
      'Every point is a normal run (its own run id: points already submitted or trained are reused), queued with one priority.\n' +
      'Every point is resolved and checked (recipe, memory plan, a distinct run) before anything is queued. A sweep file is a\n' +
      'YAML file with a `sweep:` section (recipe, grid, random, ranges, set; README). Each point also predicts the validation\n' +
      'split, on which bsft report --sweep NAME ranks the points. --dry-run prints the points, their memory plan and GPU hours.',
    options: { ...recipeOptions, ...sweepOptions, priority: { type: 'string' }, 'dry-run': { type: 'boolean' } },
    optionHelp: { ...recipeOptionHelp, ...sweepOptionHelp, priority: 'BullMQ priority of every point (default: the recipe\'s queue.priority)',
      'dry-run': 'print the points, their memory plan and GPU hours; write and queue nothing' },
    positionals: [1, 1],
    load: async () => (await import('./sweep.js')).sweep,
  },
  {
    name: 'worker',
    summary: 'run a worker daemon: takes build, train and score jobs and runs the trainer for train jobs',
    usage: 'bsft worker [--gpus 0,1] [--queues train,build,score] [--name NAME] [--workdir DIR] [--allow DIR] [--hub-endpoint URL] [--judge-endpoint URL] [--trainer CMD]',
    details:
      'SIGTERM (a preempted machine) stops the trainer after a checkpoint, puts its job back in waiting and exits.\n' +
      'Redis from REDIS_URL; HF_TOKEN from the environment. --trainer (or BSFT_TRAINER) replaces `python -m bsft_trainer`.\n' +
      'Jobs are checked before anything runs: their paths must lie in the current directory, --workdir or an --allow root\n' +
      '(BSFT_ALLOW_PATHS too), a hub store\'s hub_url must be HF_ENDPOINT (default https://huggingface.co) or a --hub-endpoint,\n' +
      'and where this worker has BSFT_JUDGE_API_KEY, a judge\'s base_url must be a --judge-endpoint (or in BSFT_JUDGE_ENDPOINTS).\n' +
      'With --gpus, a train job that finds too few free GPUs waits (delayed, no attempt used; bsft status says why); the first\n' +
      'that waits holds a reservation, so smaller jobs start only on GPUs it could not use; a job needing more GPUs than the\n' +
      'worker has is left for a bigger worker.',
    options: { gpus: { type: 'string' }, queues: { type: 'string', default: STAGES.join(',') }, name: { type: 'string' }, trainer: { type: 'string' }, workdir: { type: 'string' },
      allow: { type: 'string', multiple: true }, 'hub-endpoint': { type: 'string', multiple: true }, 'judge-endpoint': { type: 'string', multiple: true } },
    optionHelp: {
      gpus: 'GPUs of this worker, e.g. 0,1,2,3: as many train jobs at once as they allow, each on its own (resources.gpus)',
      queues: 'queues to work on',
      name: 'worker name shown in bsft status (default host:pid)',
      trainer: 'trainer command instead of python -m bsft_trainer',
      workdir: 'where runs of a Hub store are staged on this machine (default ./runs, or BSFT_WORKDIR)',
      allow: 'also let jobs read and write inside DIR (repeatable; default: the current directory and --workdir)',
      'hub-endpoint': 'also send HF_TOKEN to this Hub endpoint when a job names it (repeatable; must be https)',
      'judge-endpoint': 'send BSFT_JUDGE_API_KEY to this judge endpoint when a job names it (repeatable)',
  },
    positionals: [0, 0],
    load: async () => (await import('./worker.js')).workerCommand,
  },
  {
    name: 'status',
    summary: 'queue counts and a table of runs: state, step/total, loss, tok/s, worker, age',
    usage: 'bsft status [--limit 20] [--sweep NAME] [--json]',
    options: { limit: { type: 'string', default: '20' }, json: { type: 'boolean' }, sweep: { type: 'string' } },
    optionHelp: { limit: 'number of runs to list', json: 'print JSON', sweep: 'the points of a sweep: their values and runs' },
    positionals: [0, 0],
    load: async () => (await import('./status.js')).status,
  },
  {
    name: 'watch',
    summary: 'follow a run live: progress bar with loss, tok/s and ETA; ends with the outcome',
    usage: 'bsft watch <run-id> [--json]',
    options: { json: { type: 'boolean' } },
    optionHelp: { json: 'print only the final state as JSON (run, outcome, stages, scores)' },
    positionals: [1, 1],
    load: async () => (await import('./watch.js')).watch,
  },
  {
    name: 'logs',
    summary: 'print the log of a run (events of its build, train and score jobs); -f follows it',
    usage: 'bsft logs <run-id> [-f]',
    options: { follow: { type: 'boolean', short: 'f' } },
    optionHelp: { follow: 'keep printing new lines until the run ends' },
    positionals: [1, 1],
    load: async () => (await import('./logs.js')).logs,
  },
  {
    name: 'cancel',
    summary: 'cancel a run: the worker holding it stops the trainer with a final checkpoint; the run is marked cancelled',
    usage: 'bsft cancel <run-id> | --sweep NAME [--no-wait]',
    options: { 'no-wait': { type: 'boolean' }, sweep: { type: 'string' } },
    optionHelp: { 'no-wait': 'return once the cancel is sent, without waiting for the trainer to stop', sweep: 'cancel every point of a sweep that has not ended' },
    positionals: [0, 1],
    load: async () => (await import('./cancel.js')).cancel,
  },
  {
    name: 'retry',
    summary: 'resume a failed or cancelled run from its newest checkpoint',
    usage: 'bsft retry <run-id> | --sweep NAME',
    options: { sweep: { type: 'string' } },
    optionHelp: { sweep: 'every failed or cancelled point of a sweep' },
    positionals: [0, 1],
    load: async () => (await import('./cancel.js')).retry,
  },
  {
    name: 'dashboard',
    summary: 'serve Bull Board on localhost, showing the build, train and score queues',
    usage: 'bsft dashboard [--port 3100] [--host 127.0.0.1] [--allow-actions]',
    details: 'Bound to 127.0.0.1 by default: reach it from elsewhere through an SSH tunnel, not by opening the port.\n' +
      'Read-only unless --allow-actions: retry, clean, promote and delete act on live runs (a deleted train job loses its run);\n' +
      'bsft cancel and bsft retry are the safe way to stop and restart a run.',
    options: { port: { type: 'string', default: '3100' }, host: { type: 'string', default: '127.0.0.1' }, 'allow-actions': { type: 'boolean', default: false } },
    optionHelp: { port: 'port (0 picks a free one)', host: 'address to bind', 'allow-actions': 'enable Bull Board\'s retry/clean/delete buttons' },
    positionals: [0, 0],
    load: async () => (await import('./dashboard.js')).dashboard,
  },
  {
    name: 'pull',
    summary: 'bring a run\'s checkpoint or final model back from its store (sha256-checked), for predict and scoring',
    usage: 'bsft pull <run-id> [--step N | --final] [--repo owner/name] [--hub-url URL] [--runs DIR] [--out DIR]',
    details:
      'The store comes from <runs>/<run-id>/recipe.json, or --repo for a Hub store on a machine that has nothing of the run.\n' +
      'The final model gets a model card (README.md), recorded in its COMPLETE. HF_TOKEN from the environment.',
    options: {
      step: { type: 'string' },
      final: { type: 'boolean' },
      repo: { type: 'string' },
      'hub-url': { type: 'string' },
      runs: { type: 'string', default: 'runs' },
      out: { type: 'string' },
  },
    optionHelp: {
      step: 'this checkpoint step (default: the newest complete one)',
      final: 'the final model instead of a checkpoint',
      repo: 'Hub model repo owner/name',
      'hub-url': 'Hub endpoint (default https://huggingface.co)',
      runs: 'the runs folder that holds (or will hold) the run',
      out: 'where the pulled folder goes (default <runs>/<run-id>/final or <runs>/<run-id>/checkpoints/step-N)',
  },
    positionals: [1, 1],
    load: async () => (await import('./pull.js')).pull,
  },
  {
    name: 'predict',
    summary: "make a run's predictions on its eval splits with its final model (python -m bsft_trainer predict)",
    usage: 'bsft predict <run> [--split val]... [--balanced]',
    details: 'A run is a run folder or a run id under ./runs; it needs final/ (bsft run, or bsft pull <run> --final).\n' +
      'Writes predictions/<split>.jsonl (and <split>.forced-<behavior>.jsonl for eval.force); then: bsft score <run>.',
    options: { split: { type: 'string', multiple: true }, balanced: { type: 'boolean' } },
    optionHelp: { split: 'split(s) to predict (default: the recipe\'s eval.splits); val for bsft balance',
      balanced: 'apply the run\'s operating point (balance.json from bsft balance) to the behavior tokens\' logits' },
    positionals: [1, 1],
    load: async () => (await import('./predict.js')).predict,
  },
  {
    name: 'judge',
    summary: 'label the replies no behavior token labels (no-token, instructed and forced runs) with a judge model',
    usage: 'bsft judge <run | predictions.jsonl --tasks <split>.messages.jsonl> [--split test]... [--set key=value]...',
    details:
      'Uses the run\'s `judge` section; --set overrides or gives it (kind=openai base_url=http://host:8000/v1 model=NAME ...).\n' +
      'The key comes from BSFT_JUDGE_API_KEY only. Labels are cached in <run>/judge/cache.jsonl: a re-run asks nothing\n' +
      'twice, an interrupted judge goes on where it stopped. The gold replies are judged too (judge validity).\n' +
      'A predictions file (with its replies) is judged against a dataset split; the judge comes from --set only, the\n' +
      'behaviors are the default three; it writes <file>.judged.jsonl and prints the score.',
    options: { set: { type: 'string', multiple: true }, tasks: { type: 'string' }, split: { type: 'string', multiple: true } },
    optionHelp: { set: 'a judge setting, e.g. --set model=Qwen/Qwen2.5-72B-Instruct', tasks: 'for a predictions file: the dataset split it answers (<split>.messages.jsonl)',
      split: 'split(s) of a run to judge (default: the recipe\'s eval.splits)' },
    positionals: [1, 1],
    load: async () => (await import('./judge.js')).judgeCommand,
  },
  {
    name: 'score',
    summary: 'BehaviorBench metrics of a run (or a predictions file): macro-F1, per class, confusion, categories, 95% CIs',
    usage: 'bsft score <run | predictions.jsonl> [--tasks FILE]... [--split test] [--bootstrap 1000] [--seed 42] [--json]',
    details: 'A run is a run folder or a run id under ./runs; scores are written to <run>/score/<split>.json.',
    options: {
      tasks: { type: 'string', multiple: true },
      split: { type: 'string', multiple: true },
      bootstrap: { type: 'string' },
      seed: { type: 'string' },
      json: { type: 'boolean' },
      'hard-subset': { type: 'string' },
      'hard-dir': { type: 'string' },
  },
    optionHelp: {
      'hard-subset': 'also score a derived Hard subset (bsft hard-subset): its name or file',
      'hard-dir': 'folder of Hard subsets (default ./hard-subsets)',
      tasks: 'gold task files (Contract 1 JSONL) for a predictions file',
      split: 'split(s) of a run to score (default: the recipe\'s eval.splits)',
      bootstrap: 'bootstrap resamples (default: the recipe\'s eval.bootstrap, or 1000)',
      seed: 'bootstrap seed (default: the recipe\'s train.seed, or 42)',
      json: 'print the score as JSON',
  },
    positionals: [1, 1],
    load: async () => (await import('./score.js')).scoreCommand,
  },
  {
    name: 'balance',
    summary: 'choose how proactive a token run is: sweep offsets on its behavior tokens on validation, report test at the chosen point',
    usage: 'bsft balance <run> [--max-missed 0.05] [--range 8] [--step 0.25] [--bootstrap 1000] [--seed 42] [--json]',
    details: 'Reads predictions/val.jsonl and test.jsonl (bsft predict <run> --split val --split test) with their behavior\n' +
      'log-probabilities. An offset per behavior (reactive keeps 0) is added to its log-probability; the grid covers\n' +
      '-range..range. The rule (default: the highest macro-F1; --max-missed: the highest macro-F1 that misses at most\n' +
      'that share of the tasks that call for intervention) chooses on the validation split only; the test split is\n' +
      'scored at the default and at the chosen point. Writes <run>/balance.json.',
    options: { 'max-missed': { type: 'string' }, rule: { type: 'string' }, range: { type: 'string' }, step: { type: 'string' },
      bootstrap: { type: 'string' }, seed: { type: 'string' }, json: { type: 'boolean' } },
    optionHelp: {
      'max-missed': 'the most missed intervention allowed (share of the proactive tasks, e.g. 0.05)',
      rule: 'max-macro-f1 (the default rule)',
      range: 'largest offset, in nats (default 8)',
      step: 'grid step (default 0.25)',
      bootstrap: 'case resamples for the intervals (default: the recipe\'s eval.bootstrap)',
      seed: 'bootstrap seed (default: the recipe\'s train.seed)',
      json: 'print balance.json',
    },
    positionals: [1, 1],
    load: async () => (await import('./balance.js')).balanceCommand,
  },
  {
    name: 'report',
    summary: 'compare runs side by side (deltas with intervals, the paper\'s figures) as a table, JSON, Markdown and HTML',
    usage: 'bsft report <run...> [--study NAME] [--split test] [--out DIR] [--bootstrap 1000] [--seed 42] [--json] | --sweep NAME [--runs-dir runs]',
    details: 'The first run is the baseline of the deltas. Writes report.json, report.md and report.html (self-contained, SVG charts) to --out.\n' +
      "--study adds a blind pairwise study's results (win / tie / loss with intervals, ranking, rater agreement, position\n" +
      "bias); without runs, the study's runs are reported.\n" +
      '--sweep ranks a sweep\'s points on the validation split (never test), shows each swept value\'s effect, names the best\n' +
      'point with the command that trains it again and scores its test split only; writes report.json, report.md, report.html\n' +
      'into --out (default report/<sweep name>).',
    options: { json: { type: 'boolean' }, split: { type: 'string', default: 'test' }, out: { type: 'string', default: 'report' }, bootstrap: { type: 'string', default: '1000' }, seed: { type: 'string', default: '42' },
      study: { type: 'string' }, 'studies-dir': { type: 'string' }, sweep: { type: 'string' }, 'runs-dir': { type: 'string' }, leaderboard: { type: 'boolean' },
      'hard-subset': { type: 'string' }, 'hard-dir': { type: 'string' } },
    optionHelp: { json: 'print the comparison as JSON (the files are written too)',
      split: 'split to compare',
      out: 'output folder (default report; with --sweep, report/<sweep name>)',
      bootstrap: 'bootstrap resamples',
      seed: 'bootstrap seed',
      study: 'a study (name under --studies-dir, or its folder) whose ratings to add',
      'studies-dir': 'folder of studies (default ./studies)',
      sweep: 'a sweep (bsft sweep / bsft run --grid) to rank',
      leaderboard: 'print the leaderboard first: every run, model and the paper\'s row by macro-F1, trained or not',
      'hard-subset': 'add a column for a derived Hard subset (bsft hard-subset): its name or file',
      'hard-dir': 'folder of Hard subsets (default ./hard-subsets)',
      'runs-dir': 'the runs folder that holds the sweep (default ./runs; its store.path)',
  },
    positionals: [0, Infinity],
    load: async () => (await import('./report.js')).reportCommand,
  },
  {
    name: 'hard-subset',
    summary: 'derive a Hard subset: the tasks of a split that most of a chosen set of strong runs get wrong',
    usage: 'bsft hard-subset <name> --runs A B C [--max-correct K | --max-share 0.5] [--split test] [--hard-dir hard-subsets]',
    details: 'A task is in the subset when at most K of the N runs choose its gold behavior (a task without a prediction\n' +
      'counts as wrong); --max-share S sets K = floor(S x N), 0.5 by default. The runs must be scored on the same tasks.\n' +
      'Writes <hard-dir>/<name>.json: the task ids with their provenance (runs, rule, date); bsft score and bsft report\n' +
      'take it with --hard-subset NAME, beside the tasks\' own hard flag.',
    options: { runs: { type: 'string', multiple: true }, 'max-correct': { type: 'string' }, 'max-share': { type: 'string' }, split: { type: 'string', default: 'test' }, 'hard-dir': { type: 'string' } },
    optionHelp: { runs: 'the runs (ids or folders) whose shared failures make the subset', 'max-correct': 'the most runs that may get a task right for it to be hard',
      'max-share': 'the same as a share of the runs (default 0.5)', split: 'the split to derive it on', 'hard-dir': 'where subsets are kept (default ./hard-subsets)' },
    variadic: ['runs'],
    positionals: [1, 1],
    load: async () => (await import('./hard-subset.js')).hardSubset,
  },
  {
    name: 'study create',
    summary: 'sample tasks every run predicted and pair the runs\' replies for a blind rating study by clinicians',
    usage: 'bsft study create <name> --runs A B [C...] [--split test] [--n 200] [--seed 1] [--stratify category|group] [--rubric FILE] [--dir studies]',
    details: 'Every pair of runs is paired on every sampled task; each pair\'s sides are drawn at random (seeded) and kept in the\n' +
      "study's key.jsonl, never shown to raters (no run id, method, file name or behavior token reaches the page).\n" +
      'The default rubric asks for the overall preference, clinical realism, helpful proactivity and appropriate restraint\n' +
      '(each A / B / tie) and takes a comment; --rubric gives another (YAML: version, instructions, questions, comment).',
    options: { runs: { type: 'string', multiple: true }, split: { type: 'string', default: 'test' }, n: { type: 'string', default: '200' }, seed: { type: 'string', default: '1' },
      stratify: { type: 'string' }, rubric: { type: 'string' }, dir: { type: 'string' }, 'runs-dir': { type: 'string' } },
    optionHelp: { runs: 'run ids or folders to compare (two or more)', split: 'split whose predictions are rated', n: 'tasks to sample', seed: 'seed of the sample and the sides',
      stratify: 'sample each category (or behavior group) in proportion to its share', rubric: 'rubric YAML file', dir: 'folder of studies (default ./studies)', 'runs-dir': 'runs folder for run ids (default ./runs)' },
    positionals: [1, 1],
    variadic: ['runs'],
    load: async () => (await import('./study.js')).studyCreate,
  },
  {
    name: 'study add-rater',
    summary: 'add a rater to a study and print their private link (--rotate: a new link, the old one stops working)',
    usage: 'bsft study add-rater <study> <rater> [--rotate] [--host 127.0.0.1] [--port 8377] [--dir studies]',
    options: { rotate: { type: 'boolean' }, host: { type: 'string' }, port: { type: 'string' }, dir: { type: 'string' } },
    optionHelp: { rotate: 'replace the rater\'s link', host: 'host the link names (as bsft study serve --host)', port: 'port the link names', dir: 'folder of studies (default ./studies)' },
    positionals: [2, 2],
    load: async () => (await import('./study.js')).studyAddRater,
  },
  {
    name: 'study serve',
    summary: 'serve the rating page: each rater rates the pairs with the keyboard, can stop and continue; every rating fsynced',
    usage: 'bsft study serve <study> [--host 127.0.0.1] [--port 8377] [--dir studies]',
    details: 'Raters on other machines: --host 0.0.0.0 (or the machine\'s address) and send each their link. Ratings go to the\n' +
      "study's ratings.log, each written and fsynced before the page is told it is saved: a killed server loses none.",
    options: { host: { type: 'string', default: '127.0.0.1' }, port: { type: 'string', default: '8377' }, dir: { type: 'string' } },
    optionHelp: { host: 'address to listen on', port: 'port (0: any free one)', dir: 'folder of studies (default ./studies)' },
    positionals: [1, 1],
    load: async () => (await import('./study.js')).studyServe,
  },
  {
    name: 'study export',
    summary: "write a study's ratings as CSV and JSONL (unblinded), and offline rating forms for raters without network",
    usage: 'bsft study export <study> [--out DIR] [--form RATER]... [--dir studies]',
    options: { out: { type: 'string' }, form: { type: 'string', multiple: true }, dir: { type: 'string' } },
    optionHelp: { out: 'output folder (default studies/<name>/export)', form: 'also write form-<rater>.html, a self-contained rating form (repeatable)', dir: 'folder of studies (default ./studies)' },
    positionals: [1, 1],
    load: async () => (await import('./study.js')).studyExport,
  },
  {
    name: 'study import',
    summary: "take back the ratings an offline form downloaded (checked whole first; a rating already stored is not stored twice)",
    usage: 'bsft study import <study> <ratings.json>... [--dir studies]',
    options: { dir: { type: 'string' } },
    optionHelp: { dir: 'folder of studies (default ./studies)' },
    positionals: [2, Infinity],
    load: async () => (await import('./study.js')).studyImport,
  },
  {
    name: 'reproduce',
    summary: 'submit the paper set (BehaviorSFT LoRA and full, standard SFT, instructed), watch them, end with the report',
    usage: 'bsft reproduce (--data FILE... | --sample) [--preset paper-qwen2.5-7b] [--dry-run [--show-recipes]] [--tokens-per-s N] [--predict-tokens-per-s N] [--set path=value] [--allow DIR] [--out DIR] [--json]',
    details:
      '--dry-run writes nothing: it builds the datasets in a temporary folder to count tokens (then removes it), prints the\n' +
      'runs, their memory plan and the estimated GPU hours (--show-recipes: their resolved recipes too), LoRA at\n' +
      `${MEASURED_LORA_TOK_S.toLocaleString('en')} tok/s as measured on an H200, full fine-tuning at 4/6 of it, unless --tokens-per-s.\n` +
      '--data names the BehaviorBench task files (JSONL, globs allowed) for every recipe of the preset; --sample runs on\n' +
      "the bundled 630-task sample instead, whose scores are marked as not comparable with the paper's. --set applies to every recipe.",
    options: { json: { type: 'boolean' },
      ...recipeOptions,
      data: { type: 'string', multiple: true },
      sample: { type: 'boolean' },
      preset: { type: 'string', default: 'paper-qwen2.5-7b' },
      'dry-run': { type: 'boolean' },
      'show-recipes': { type: 'boolean' },
      'tokens-per-s': { type: 'string' },
      'predict-tokens-per-s': { type: 'string' },
      out: { type: 'string' },
      'with-base': { type: 'string' },
      'base-model': { type: 'string' },
  },
    optionHelp: { json: 'with --dry-run: print the plan (runs, GPU hours, resolved recipes) as JSON',
      ...recipeOptionHelp,
      data: 'BehaviorBench task file or glob (repeatable), relative to the current directory',
      'with-base': 'also the untrained base model, zero-shot and instructed, through the chat endpoint at this URL (vllm serve <model>)',
      'base-model': 'with --with-base: the name the endpoint serves it under (default: the preset\'s model id)',
      sample: 'use the bundled 630-task sample (a smoke test of the set: not comparable with the paper)',
      preset: `which set (one of ${Object.keys(PRESETS).join(', ')})`,
      'dry-run': 'print the runs, their memory plan and GPU-hour estimates; write and submit nothing',
      'show-recipes': 'with --dry-run: print each run\'s resolved recipe too',
      'tokens-per-s': 'training throughput for the estimate, real tokens per second per GPU',
      'predict-tokens-per-s': 'predict throughput for the estimate, generated tokens per second per GPU (default: an estimate, said so)',
      out: 'report folder (default runs/reproduce-<preset>)',
  },
    positionals: [0, 0],
    load: async () => (await import('./reproduce.js')).reproduce,
  },
];
