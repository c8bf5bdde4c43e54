import { existsSync, mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import path from 'node:path';
import { createInterface } from 'node:readline';
import { execa } from 'execa';
import { contextMessages, type ConditioningSpec } from '../dataset/condition.js';
import { readManifest } from '../dataset/manifest.js';
import type { Turn } from '../dataset/task.js';
import { loadChatTokenizer } from '../dataset/tokenizer.js';
import { UsageError } from '../errors.js';
import { offsetsText, readOperatingPoint } from '../score/balance.js';
import { pythonEnv, trainerPython, trainerUnavailable } from '../run/python-env.js';
import { findRunDir, readRunRecipe } from '../run/run-dir.js';
import { datasetDir, trainerConfig } from '../run/trainer-config.js';
import { EXIT, intOption, type CommandImpl } from './command.js';

const HELP = [
  'type a message and press Enter; the reply shows the behavior the model chose, then its text as it comes',
  '/force <behavior>   steer the next reply with that behavior\'s token',
  '/as <name>          speak as another participant from now on (/as with no name: back to the plain user)',
  '/reset              start the conversation again',
  '/help, /quit        (Ctrl-D quits too)',
];

type ChatEvent = { event: 'ready'; device: string } | { event: 'token'; id: number } | { event: 'end'; reason: string; tokens: number } |
  { event: 'behavior'; behavior_probs: Record<string, number>; behavior_logprobs: Record<string, number> };

/** --offset behavior=x (repeatable) and --balanced (the run's balance.json) as one set of offsets. */
function chatOffsets(values: Record<string, unknown>, runDir: string, behaviors: string[]): Record<string, number> {
  const offsets: Record<string, number> = {};
  if (values.balanced) {
    const point = readOperatingPoint(runDir);
    if (!point) throw new UsageError(`no operating point for this run yet (balance.json): choose one with bsft balance ${runDir}`);
    Object.assign(offsets, point.offsets);
  }
  for (const spec of (values.offset as string[] | undefined) ?? []) {
    const m = /^([^=]+)=(-?[\d.]+(?:e-?\d+)?)$/.exec(spec);
    if (!m || !behaviors.includes(m[1]!) || !Number.isFinite(Number(m[2]))) throw new UsageError(`--offset ${spec}: expected behavior=number, one of ${behaviors.join(', ')}`);
    offsets[m[1]!] = Number(m[2]);
  }
  return offsets;
}

/**
 * `bsft chat <run>`: talk to a run's final model at a terminal, as `llamafactory-cli chat` does. Prompts are
 * rendered as the run's dataset was (chat template, speakers' names, the instruction of `instruction` runs) and sent
 * as token IDs to the trainer's `chat` command, which answers greedily a token at a time. Writes nothing.
 */
export const chat: CommandImpl = {
  async run([arg], values, { out }) {
    const runDir = findRunDir(arg!, path.resolve((values.dir as string | undefined) ?? 'runs'));
    const recipe = readRunRecipe(runDir)!;
    if (!existsSync(path.join(runDir, 'final', 'COMPLETE'))) throw new UsageError(`run ${recipe.run_id} has no final model yet (train it first: bsft run, or bsft pull ${recipe.run_id} --final)`);
    const manifest = readManifest(datasetDir(runDir));
    if (!manifest) throw new UsageError(`run ${recipe.run_id} has no dataset manifest in ${datasetDir(runDir)}`);
    const missing = await trainerUnavailable(recipe);
    if (missing) throw new UsageError(missing);
    const maxNew = intOption(values, 'max-new-tokens') ?? 256;
    const behaviors = Object.fromEntries(Object.entries(recipe.data.behaviors).map(([name, b]) => [manifest.behavior_tokens[b.token]!, name]));
    const tok = loadChatTokenizer(recipe.tokenizer, Object.entries(manifest.behavior_tokens).sort((a, b) => a[1] - b[1]).map(([t]) => t));
    const spec: ConditioningSpec = { mode: recipe.data.conditioning, behaviors: recipe.data.behaviors, instruction: recipe.data.instruction };
    const offsets = chatOffsets(values, runDir, Object.keys(recipe.data.behaviors));
    if (offsetsText(offsets) && recipe.data.conditioning !== 'token') throw new UsageError('offsets need a run trained with behavior tokens');

    // The trainer's config in a temporary folder: the run folder is only read.
    const scratch = mkdtempSync(path.join(tmpdir(), 'bsft-chat-'));
    const config = path.join(scratch, 'chat.json');
    writeFileSync(config, JSON.stringify(trainerConfig(recipe, runDir)));
    const child = execa(trainerPython(), ['-m', 'bsft_trainer', 'chat', '--config', config], {
      reject: false, buffer: false, stdin: 'pipe', stderr: 'pipe', extendEnv: false,
      env: pythonEnv({ PYTHONUNBUFFERED: '1', BSFT_PARENT_PID: String(process.pid) }),
    });
    const stderr: string[] = [];
    createInterface({ input: child.stderr! }).on('line', (l) => stderr.push(l) > 20 && stderr.shift());
    const events: ChatEvent[] = [];
    let wake: (() => void) | undefined;
    let ended = false;
    createInterface({ input: child.stdout! })
      .on('line', (l) => {
        try {
          events.push(JSON.parse(l) as ChatEvent);
        } catch {
          return;
        }
        wake?.();
      })
      .on('close', () => {
        ended = true;
        wake?.();
      });
    const next = async (): Promise<ChatEvent> => {
      while (!events.length) {
        if (ended) throw new UsageError(`the model stopped: ${stderr.slice(-5).join(' | ') || 'no output'}`);
        await new Promise<void>((r) => (wake = r));
      }
      return events.shift()!;
    };

    const write = (s: string) => process.stdout.write(s);
    try {
      out(`loading ${recipe.run_id} (${recipe.train.method}, conditioning ${recipe.data.conditioning}) ...`);
      const ready = await next();
      out(`ready on ${ready.event === 'ready' ? ready.device : '?'}. ${HELP[0]}; /help for commands.`);
      const point = offsetsText(offsets);
      if (point) out(`(operating point: ${point} on the behavior tokens' logits)`);
      let turns: Turn[] = [];
      let speaker: string | undefined;
      let force: string | undefined;
      const rl = createInterface({ input: process.stdin, output: process.stdout, terminal: process.stdin.isTTY === true });
      const prompt = () => rl.setPrompt(`${speaker ?? 'you'}> `);
      prompt();
      rl.prompt();
      for await (const raw of rl) {
        const line = raw.trim();
        if (!line) {
          rl.prompt();
          continue;
        }
        if (line.startsWith('/')) {
          const [cmd, ...rest] = line.split(/\s+/);
          const argText = rest.join(' ');
          if (cmd === '/quit' || cmd === '/exit') break;
          else if (cmd === '/help') HELP.forEach((h) => out(h));
          else if (cmd === '/reset') {
            turns = [];
            force = undefined;
            out('(conversation reset)');
          } else if (cmd === '/as') {
            speaker = argText || undefined;
            out(speaker ? `(speaking as ${speaker})` : '(speaking as the user)');
            prompt();
          } else if (cmd === '/force') {
            if (recipe.data.conditioning !== 'token') out(`(/force needs a run trained with behavior tokens; this one is conditioning: ${recipe.data.conditioning})`);
            else if (!recipe.data.behaviors[argText]) out(`(unknown behavior "${argText}"; one of ${Object.keys(recipe.data.behaviors).join(', ')})`);
            else {
              force = argText;
              out(`(the next reply is forced to ${force})`);
            }
          } else out(`(unknown command ${cmd}; /help lists them)`);
          rl.prompt();
          continue;
        }
        turns.push({ role: 'user', content: line, ...(speaker ? { name: speaker } : {}) });
        let ids = await tok.encode(tok.render(contextMessages(spec, turns), true));
        // Over the run's max_seq_len: the oldest turns go first, as the dataset build drops them.
        while (ids.length + maxNew > recipe.data.max_seq_len && turns.length > 1) {
          turns.shift();
          ids = await tok.encode(tok.render(contextMessages(spec, turns), true));
        }
        const forcedId = force ? manifest.behavior_tokens[recipe.data.behaviors[force]!.token]! : undefined;
        if (forcedId !== undefined) ids.push(forcedId);
        // The behavior tokens' probabilities of a free reply (a forced one has its token already).
        const scored = recipe.data.conditioning === 'token' && !force;
        child.stdin!.write(`${JSON.stringify({ prompt: ids, max_new_tokens: maxNew, scored, offsets })}\n`);
        let probs: Record<string, number> | undefined;
        const reply: number[] = [];
        let shown = '';
        let first = true;
        const started = performance.now();
        let generated = 0;
        for (;;) {
          const e = await next();
          if (e.event === 'end') {
            generated = e.tokens;
            break;
          }
          if (e.event === 'behavior') probs = e.behavior_probs;
          if (e.event !== 'token') continue;
          if (first && recipe.data.conditioning === 'token') {
            // The behavior: the forced one, else the first generated token (predict's rule), with how sure the model was.
            const chosen = force ?? behaviors[e.id];
            const how = probs ? ` | ${Object.entries(probs).map(([b, p]) => `${b} ${p.toFixed(2)}`).join(' ')}` : '';
            write(`[${chosen ?? 'no behavior token'}${force ? ', forced' : ''}${how}] `);
          }
          first = false;
          if (behaviors[e.id] !== undefined || e.id === manifest.eos_id) continue;
          reply.push(e.id);
          const text = await tok.decode(reply);
          if (!text.endsWith('\uFFFD')) {
            write(text.slice(shown.length));
            shown = text;
          }
        }
        const seconds = (performance.now() - started) / 1000;
        write(`\n(${generated} tokens, ${(generated / Math.max(seconds, 1e-3)).toFixed(1)} tok/s)\n`);
        turns.push({ role: 'assistant', content: (await tok.decode(reply)).trim() });
        force = undefined;
        rl.prompt();
      }
      rl.close();
      return EXIT.ok;
    } finally {
      child.stdin!.end();
      child.kill();
      rmSync(scratch, { recursive: true, force: true });
    }
  },
};
