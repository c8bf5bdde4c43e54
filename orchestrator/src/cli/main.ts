import { existsSync, readFileSync } from 'node:fs';
import { Command as Parser, CommanderError, Option } from 'commander';
import { BsftError, UsageError } from '../errors.js';
import { LOG_LEVELS, type LogLevel } from '../log-levels.js';
import { RecipeError, formatProblem } from '../recipe/recipe-error.js';
import { EXIT, type CommandSpec, type OptionValues } from './command.js';
import { COMMANDS } from './commands.js';

/** The recipe commands use when none is given (what `bsft init` writes). */
const DEFAULT_RECIPE = 'bsft.yaml';

function version(): string {
  const pkg = JSON.parse(readFileSync(new URL('../../package.json', import.meta.url), 'utf8')) as { version: string };
  return pkg.version;
}

const shown = (v: unknown) => (Array.isArray(v) ? v.join(',') : String(v));

function commandHelp(c: CommandSpec): string {
  const lines = [`${c.summary}`, '', `usage: ${c.usage}`, '', 'options:'];
  for (const [name, spec] of Object.entries(c.options)) {
    const flag = `${spec.short ? `-${spec.short}, ` : '    '}--${name}${spec.type === 'string' ? ' <value>' : ''}`;
    const dflt = spec.default !== undefined ? ` (default: ${shown(spec.default)})` : '';
    lines.push(`  ${flag.padEnd(28)} ${c.optionHelp[name] ?? ''}${dflt}`);
  }
  lines.push(`  ${'    --log-level <level>'.padEnd(28)} ${LOG_LEVELS.join('|')} (default: info, or BSFT_LOG_LEVEL)`);
  lines.push(`  ${'-h, --help'.padEnd(28)} show this help`);
  if (c.details) lines.push('', c.details);
  if (c.defaultRecipe) lines.push('', `Without a recipe argument, ./${DEFAULT_RECIPE} is used when it exists (bsft init writes it).`);
  return `${lines.join('\n')}\n`;
}

function mainHelp(): string {
  const width = Math.max(...COMMANDS.map((c) => c.name.length));
  return [
    'bsft — BehaviorSFT: behavior-token fine-tuning of clinical LLM agents',
    '',
    'usage: bsft <command> [options]      bsft <command> --help',
    '',
    'commands:',
    ...COMMANDS.map((c) => `  ${c.name.padEnd(width)}  ${c.summary}`),
    '',
    'global options: --log-level <level>, --version, --help',
    'exit codes: 0 ok, 1 failure, 2 usage error or invalid input',
  ].join('\n');
}

const camel = (name: string) => name.replace(/-([a-z])/g, (_, c: string) => c.toUpperCase());

/**
 * The commander parser of one command, built from its spec: every option with its help and default, `--log-level`
 * with its choices, the arguments as a list (counted against the spec), help and errors in bsft's words.
 */
function parserFor(spec: CommandSpec, err: (s: string) => void): Parser {
  const parser = new Parser(`bsft ${spec.name}`).exitOverride().argument('[args...]').helpOption('-h, --help', 'show this help');
  parser.helpInformation = () => commandHelp(spec);
  parser.configureOutput({
    writeOut: (s) => process.stdout.write(s),
    writeErr: (s) => process.stderr.write(s),
    outputError: (s) => err(`bsft ${spec.name}: ${s.replace(/^error: /, '').replace(/^./, (c) => c.toUpperCase()).trimEnd()}\nusage: ${spec.usage}`),
  });
  for (const [name, o] of Object.entries(spec.options)) {
    const variadic = spec.variadic?.includes(name);
    const option = new Option(`${o.short ? `-${o.short}, ` : ''}--${name}${o.type === 'string' ? (variadic ? ' <value...>' : ' <value>') : ''}`, spec.optionHelp[name]);
    if (o.multiple && !variadic) option.argParser((v: string, prev: string[] | undefined) => [...(prev ?? []), v]);
    if (o.default !== undefined) option.default(o.default);
    parser.addOption(option);
  }
  parser.addOption(new Option('--log-level <level>').choices(LOG_LEVELS));
  return parser;
}

/** commander's values under the spec's option names (`--no-x` as a boolean of its own, like node's parseArgs). */
function specValues(spec: CommandSpec, opts: Record<string, unknown>): OptionValues {
  const values: OptionValues = {};
  for (const name of Object.keys(spec.options)) {
    const negated = name.startsWith('no-') ? name.slice(3) : undefined;
    if (negated !== undefined) values[name] = opts[camel(negated)] === false ? true : undefined;
    else if (`no-${name}` in spec.options) values[name] = opts[camel(name)] === true ? true : undefined;
    else values[name] = opts[camel(name)] as OptionValues[string];
  }
  return values;
}

/** Runs the CLI; returns the exit code. Only the command that runs is loaded. */
export async function main(argv: string[]): Promise<number> {
  const out = (line: string) => process.stdout.write(`${line}\n`);
  const err = (line: string) => process.stderr.write(`${line}\n`);
  const [first] = argv;
  const spec = COMMANDS.find((c) => c.name.split(' ').every((word, i) => argv[i] === word));
  const name = spec?.name ?? first;
  if (name === undefined || name === '--help' || name === '-h' || name === 'help') {
    (name === undefined ? err : out)(mainHelp());
    return name === undefined ? EXIT.usage : EXIT.ok;
  }
  if (name === '--version' || name === '-V') {
    out(version());
    return EXIT.ok;
  }
  if (!spec) {
    const group = COMMANDS.filter((c) => c.name.startsWith(`${name} `));
    if (group.length > 0) {
      const help = group.map((c) => `  bsft ${c.name.padEnd(16)} ${c.summary}`).join('\n');
      const asked = argv[1] === '--help' || argv[1] === '-h';
      (asked ? out : err)(`${argv[1] && !asked ? `bsft: unknown command "${name} ${argv[1]}"\n\n` : ''}usage:\n${help}`);
      return asked ? EXIT.ok : EXIT.usage;
    }
    err(`bsft: unknown command "${name}"\n\n${mainHelp()}`);
    return EXIT.usage;
  }

  const parser = parserFor(spec, err);
  try {
    parser.parse(argv.slice(spec.name.split(' ').length), { from: 'user' });
  } catch (e) {
    if (e instanceof CommanderError) return e.code === 'commander.helpDisplayed' ? EXIT.ok : EXIT.usage;
    throw e;
  }
  const given = parser.processedArgs[0] as string[];
  const positionals = given.length === 0 && spec.defaultRecipe && existsSync(DEFAULT_RECIPE) ? [DEFAULT_RECIPE] : given;
  const [min, max] = spec.positionals;
  if (positionals.length < min || positionals.length > max) {
    err(`bsft ${name}: expected ${min === max ? min : max === Infinity ? `at least ${min}` : `${min} to ${max}`} argument(s)\nusage: ${spec.usage}`);
    return EXIT.usage;
  }
  const opts = parser.opts();
  const level = ((opts.logLevel as string | undefined) ?? process.env.BSFT_LOG_LEVEL ?? 'info') as LogLevel;
  if (!LOG_LEVELS.includes(level)) {
    err(`bsft ${name}: BSFT_LOG_LEVEL must be one of ${LOG_LEVELS.join(', ')}`);
    return EXIT.usage;
  }

  const [{ createLogger }, command] = await Promise.all([import('../log.js'), spec.load()]);
  const log = createLogger(level);
  try {
    return await command.run(positionals, specValues(spec, opts), { log, out });
  } catch (e) {
    if (e instanceof UsageError) {
      err(`bsft ${name}: ${e.message}\nusage: ${spec.usage}`);
      return EXIT.usage;
    }
    if (e instanceof RecipeError) {
      err(`bsft ${name}: invalid recipe, ${e.problems.length} problem(s):`);
      for (const p of e.problems) err(`  ${formatProblem(p)}`);
      return EXIT.usage;
    }
    if (e instanceof BsftError) {
      err(`bsft ${name}: ${e.message}`);
      return e.exitCode;
    }
    log.debug({ err: e }, 'unexpected error');
    err(`bsft ${name}: ${(e as Error).message ?? String(e)} (run with --log-level debug for details)`);
    return EXIT.failure;
  }
}
