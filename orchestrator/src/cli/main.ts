import { BsftError, UsageError } from '../errors.js';
import { readFileSync } from 'node:fs';
import { parseArgs } from 'node:util';
import { createLogger, LOG_LEVELS, type LogLevel } from '../log.js';
import { RecipeError, formatProblem } from '../recipe/recipe-error.js';
import { EXIT, type Command, type OptionValues } from './command.js';
import { COMMANDS } from './commands.js';

function version(): string {
  const pkg = JSON.parse(readFileSync(new URL('../../package.json', import.meta.url), 'utf8')) as { version: string };
  return pkg.version;
}

function commandHelp(c: Command): string {
  const lines = [`${c.summary}`, '', `usage: ${c.usage}`, '', 'options:'];
  for (const [name, spec] of Object.entries(c.options)) {
    const flag = `${spec.short ? `-${spec.short}, ` : '    '}--${name}${spec.type === 'string' ? ' <value>' : ''}`;
    lines.push(`  ${flag.padEnd(28)} ${c.optionHelp[name] ?? ''}`);
  }
  lines.push(`  ${'    --log-level <level>'.padEnd(28)} ${LOG_LEVELS.join('|')} (default info)`);
  lines.push(`  ${'-h, --help'.padEnd(28)} show this help`);
  if (c.details) lines.push('', c.details);
  return lines.join('\n');
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

/** Runs the CLI; returns the exit code. */
export async function main(argv: string[]): Promise<number> {
  const out = (line: string) => process.stdout.write(`${line}\n`);
  const err = (line: string) => process.stderr.write(`${line}\n`);
  const [first] = argv;
  const command = COMMANDS.find((c) => c.name.split(' ').every((word, i) => argv[i] === word));
  const name = command?.name ?? first;
  const rest = argv.slice(command ? command.name.split(' ').length : 1);
  if (name === undefined || name === '--help' || name === '-h' || name === 'help') {
    (name === undefined ? err : out)(mainHelp());
    return name === undefined ? EXIT.usage : EXIT.ok;
  }
  if (name === '--version' || name === '-V') {
    out(version());
    return EXIT.ok;
  }
  if (!command) {
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

  let positionals: string[];
  let values: OptionValues;
  try {
    ({ positionals, values } = parseArgs({
      args: rest,
      options: { ...command.options, help: { type: 'boolean', short: 'h' }, 'log-level': { type: 'string' } },
      allowPositionals: true,
      strict: true,
    }));
  } catch (e) {
    err(`bsft ${name}: ${(e as Error).message}\nusage: ${command.usage}`);
    return EXIT.usage;
  }
  if (values.help) {
    out(commandHelp(command));
    return EXIT.ok;
  }
  const level = (values['log-level'] as string | undefined) ?? process.env.BSFT_LOG_LEVEL ?? 'info';
  if (!(LOG_LEVELS as readonly string[]).includes(level)) {
    err(`bsft ${name}: --log-level must be one of ${LOG_LEVELS.join(', ')}`);
    return EXIT.usage;
  }
  const [min, max] = command.positionals;
  if (positionals.length < min || positionals.length > max) {
    err(`bsft ${name}: expected ${min === max ? min : max === Infinity ? `at least ${min}` : `${min} to ${max}`} argument(s)\nusage: ${command.usage}`);
    return EXIT.usage;
  }

  const log = createLogger(level as LogLevel);
  try {
    return await command.run(positionals, values, { log, out });
  } catch (e) {
    if (e instanceof UsageError) {
      err(`bsft ${name}: ${e.message}\nusage: ${command.usage}`);
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
