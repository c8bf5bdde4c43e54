import { TokenizerError } from '../errors.js';
import { createHash } from 'node:crypto';
import { createReadStream, readFileSync, statSync } from 'node:fs';
import path from 'node:path';
import { Tokenizer } from 'tokenizers';
import { ChatTemplate } from './chat-template.js';
import type { Message } from './condition.js';

/**
 * The model's own tokenizer (tokenizer.json, exact BPE) and chat template (tokenizer_config.json), with the
 * behavior tokens added as special tokens at IDs len(tokenizer), len(tokenizer)+1, ... (Contract 2).
 *
 * Tokenization is the Hugging Face `tokenizers` library itself (its Rust core through the official Node bindings,
 * the same version as Python's), so IDs are those of Python's `AutoTokenizer` by construction, whatever Node or
 * ICU runs here; batches are encoded on the library's own threads.
 */
export interface ChatTokenizer {
  encode(text: string): Promise<number[]>;
  /** Several texts at once, in parallel (the library's threads): each text's IDs and its `tokenAt` function. */
  encodeBatch(texts: string[]): Promise<Encoded[]>;
  decode(ids: number[]): Promise<string>;
  /** Renders messages with the chat template; `generationPrompt` appends the assistant header. */
  render(messages: Message[], generationPrompt: boolean): string;
  /**
   * Whether the tokenizer splits `text` at `at` (a string index) whatever follows: an added token (a special token,
   * a behavior token) starts there, and the library tokenizes the text between added tokens on its own. Then the
   * tokens of `text.slice(0, at)` are exactly the first tokens of `text`.
   */
  splitsAt(text: string, at: number): boolean;
  /** Behavior token string -> ID, in ID order. */
  addedIds: Record<string, number>;
  /** The special tokens' strings (the template's and the behavior tokens): text that must not occur in task data. */
  controlTokens: string[];
  /** sha256 of tokenizer.json + tokenizer_config.json as read (before adding tokens). */
  hash: string;
  /**
   * tokenizer.json and tokenizer_config.json (and chat_template.jinja where the model has one) with the behavior
   * tokens added at their IDs: what `AutoTokenizer.from_pretrained(<dataset>/tokenizer)` loads.
   */
  files(): Record<string, string>;
  /** Size of the tokenizer before the behavior tokens were added. */
  baseSize: number;
  eosId: number;
}

export interface Encoded {
  ids: number[];
  /** The index of the token holding the character at string index `at` (the first token of `text.slice(at)`). */
  tokenAt(text: string, at: number): number | null;
}

/** Code points before string index `at` (the library counts characters, JavaScript UTF-16 code units). */
function codePoints(text: string, at: number): number {
  let n = 0;
  for (let i = 0; i < at; i++) {
    const c = text.charCodeAt(i);
    if (c < 0xdc00 || c > 0xdfff) n++; // a low surrogate is the second half of one character
  }
  return n;
}

interface AddedTokenJson {
  id: number;
  content: string;
  single_word: boolean;
  lstrip: boolean;
  rstrip: boolean;
  normalized: boolean;
  special: boolean;
}

interface TokenizerJson {
  model: { vocab: Record<string, number> };
  added_tokens: AddedTokenJson[];
}

const cache = new Map<string, ChatTokenizer>();

/**
 * Loads (once per process: a worker builds many datasets) the tokenizer of `dir` with `newTokens` added, in order,
 * from len(tokenizer) upward.
 */
export function loadChatTokenizer(dir: string, newTokens: string[]): ChatTokenizer {
  let stamp = '';
  try {
    stamp = String(statSync(path.join(dir, 'tokenizer.json')).mtimeMs);
  } catch {
    // reported by the loader below
  }
  const key = JSON.stringify([dir, stamp, newTokens]);
  let tok = cache.get(key);
  if (!tok) {
    tok = readChatTokenizer(dir, newTokens);
    cache.set(key, tok);
  }
  return tok;
}

/** The files a tokenizer's `hash` covers, in this order: one definition for the loader and tokenizerHash. */
const HASHED_FILES = ['tokenizer.json', 'tokenizer_config.json'] as const;

/** The `hash` loadChatTokenizer gives `dir`'s tokenizer, from its files alone (streamed: no parse, no long block). */
export async function tokenizerHash(dir: string): Promise<string> {
  const hash = createHash('sha256');
  try {
    for (const name of HASHED_FILES) {
      for await (const chunk of createReadStream(path.join(dir, name))) hash.update(chunk as Buffer);
    }
  } catch (e) {
    throw new TokenizerError(`cannot read the tokenizer in ${dir}: ${(e as Error).message}`);
  }
  return hash.digest('hex');
}

function readChatTokenizer(dir: string, newTokens: string[]): ChatTokenizer {
  let tokenizerText: string;
  let configText: string;
  try {
    [tokenizerText, configText] = HASHED_FILES.map((name) => readFileSync(path.join(dir, name), 'utf8')) as [string, string];
  } catch (e) {
    throw new TokenizerError(`cannot read the tokenizer in ${dir}: ${(e as Error).message}`);
  }
  const json = JSON.parse(tokenizerText) as TokenizerJson;
  const config = JSON.parse(configText) as { chat_template?: string; eos_token?: string; added_tokens_decoder?: Record<string, unknown> };
  let template = config.chat_template;
  const templateFile = !template;
  if (!template) {
    try {
      template = readFileSync(path.join(dir, 'chat_template.jinja'), 'utf8');
    } catch {
      throw new TokenizerError(`${dir}: no chat_template in tokenizer_config.json and no chat_template.jinja`);
    }
  }

  // len(tokenizer) in transformers: one past the largest ID of the vocabulary and the added tokens.
  let baseSize = 0;
  for (const id of Object.values(json.model.vocab)) baseSize = Math.max(baseSize, id + 1);
  for (const t of json.added_tokens) baseSize = Math.max(baseSize, t.id + 1);

  const addedIds: Record<string, number> = {};
  const existing = new Map(json.added_tokens.map((t) => [t.content, t.id]));
  const added: AddedTokenJson[] = newTokens.map((content, i) => {
    if (existing.has(content) || content in json.model.vocab) {
      throw new TokenizerError(`behavior token "${content}" is already in the tokenizer's vocabulary; choose another string`);
    }
    addedIds[content] = baseSize + i;
    return { id: baseSize + i, content, single_word: false, lstrip: false, rstrip: false, normalized: false, special: true };
  });
  json.added_tokens.push(...added);
  let tokenizer: Tokenizer;
  try {
    tokenizer = Tokenizer.fromString(JSON.stringify(json));
  } catch (e) {
    throw new TokenizerError(`${dir}/tokenizer.json cannot be loaded by the tokenizers library: ${(e as Error).message}`);
  }
  const chat = new ChatTemplate(template, { bos_token: '', eos_token: config.eos_token });
  const eosId = config.eos_token ? (tokenizer.tokenToId(config.eos_token) ?? undefined) : undefined;
  if (eosId === undefined) throw new TokenizerError(`${dir}: eos_token missing from tokenizer_config.json or the vocabulary`);
  // Added tokens matched on the raw text (not normalized first) split it wherever they occur.
  const splitters = json.added_tokens.filter((t) => !t.normalized).map((t) => t.content);
  let files: Record<string, string> | undefined;
  const options = { addSpecialTokens: false };

  return {
    encode: async (text) => (await tokenizer.encode(text, null, options)).getIds(),
    encodeBatch: async (texts) =>
      texts.length === 0
        ? []
        : (await tokenizer.encodeBatch(texts, options)).map((e) => ({
            ids: e.getIds(),
            tokenAt: (text: string, at: number) => e.charToToken(codePoints(text, at)),
          })),
    decode: (ids) => tokenizer.decode(ids, false),
    splitsAt: (text, at) => splitters.some((t) => text.startsWith(t, at)),
    render: (messages, generationPrompt) => chat.render(messages, generationPrompt),
    addedIds,
    // Made once per tokenizer (a worker's warm child builds many datasets with one): 7 MB of JSON for Qwen2.5.
    files: () => (files ??= {
      'tokenizer.json': `${JSON.stringify(json)}\n`,
      'tokenizer_config.json': `${JSON.stringify({ ...config, added_tokens_decoder: { ...(config.added_tokens_decoder ?? {}),
        ...Object.fromEntries(added.map(({ id, ...token }) => [String(id), token])) } }, null, 2)}\n`,
      ...(templateFile ? { 'chat_template.jinja': template } : {}),
    }),
    controlTokens: json.added_tokens.filter((t) => t.special).map((t) => t.content),
    hash: createHash('sha256').update(tokenizerText).update(configText).digest('hex'), // HASHED_FILES' order
    baseSize,
    eosId,
  };
}
