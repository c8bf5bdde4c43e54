/** One argument as a POSIX shell reads it back: bare when it holds only safe characters, else single-quoted. */
export function shellQuote(arg: string): string {
  if (arg !== '' && /^[\w@%+=:,./-]+$/.test(arg)) return arg;
  return `'${arg.replaceAll("'", `'\\''`)}'`;
}

/** The command line this process was started with, as `bsft …` a user can paste to run it again. */
export function thisCommand(argv: string[] = process.argv): string {
  return ['bsft', ...argv.slice(2)].map(shellQuote).join(' ');
}
