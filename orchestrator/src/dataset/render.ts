import { RenderError } from '../errors.js';
import type { Message } from './condition.js';
import type { ChatTokenizer } from './tokenizer.js';

export interface TokenizedDoc {
  ids: number[];
  /** 1 where the token is predicted (the assistant reply through its end-of-turn token). */
  mask: Uint8Array;
  /** Context turns dropped (oldest first) to fit max_seq_len. */
  droppedTurns: number;
  /** The messages actually used, reply included. */
  messages: Message[];
}

export interface Conversation {
  context: Message[];
  reply: string;
}

/**
 * Renders conversations with the chat template and tokenizes them, many at once (the tokenizer's threads). The
 * loss mask covers exactly the final assistant reply (behavior token included) through its end-of-turn token; the
 * template's trailing newline and everything before the reply are context. Over-long conversations lose their
 * oldest non-system context turns first; the reply is never cut.
 *
 * Each result is the document, undefined when even the last context turn with the reply does not fit, or the
 * RenderError of a conversation the template or tokenizer cannot split into prompt and reply.
 *
 * The prompt is the rendered text without the reply (`render(context, true)`); its tokens must be the first tokens
 * of the whole. Where the reply starts with an added token (a behavior token), the tokenizer splits there whatever
 * follows, so one encoding of the whole conversation gives both; otherwise the prompt is encoded too and compared.
 */
export async function tokenizeConversations(tok: ChatTokenizer, convs: Conversation[], maxLen: number): Promise<(TokenizedDoc | undefined | RenderError)[]> {
  const out: (TokenizedDoc | undefined | RenderError)[] = new Array(convs.length);
  let pending = convs.map((c, i) => ({ i, ctx: c.context, reply: c.reply, dropped: 0 }));
  while (pending.length > 0) {
    const rendered = pending.map((p) => {
      const messages: Message[] = [...p.ctx, { role: 'assistant', content: p.reply }];
      return { ...p, messages, prompt: tok.render(p.ctx, true), full: tok.render(messages, false) };
    });
    const encoded = await tok.encodeBatch(rendered.map((r) => r.full));
    const unsplit = rendered.map((r, k) => (tok.splitsAt(r.full, r.prompt.length) ? -1 : k)).filter((k) => k >= 0);
    const prompts = await tok.encodeBatch(unsplit.map((k) => rendered[k]!.prompt));
    const promptIdsOf = new Map(unsplit.map((k, j) => [k, prompts[j]!.ids]));
    const next: typeof pending = [];
    for (const [k, r] of rendered.entries()) {
      if (!r.full.startsWith(r.prompt)) {
        out[r.i] = new RenderError('the chat template renders the prompt differently with and without the reply');
        continue;
      }
      const ids = encoded[k]!.ids;
      const promptIds = promptIdsOf.get(k);
      let promptLen: number;
      if (promptIds === undefined) {
        promptLen = encoded[k]!.tokenAt(r.full, r.prompt.length) ?? ids.length;
      } else {
        const merged = promptIds.findIndex((id, t) => ids[t] !== id);
        if (merged >= 0) {
          out[r.i] = new RenderError(`the reply's first characters merge with the assistant header into one token (at token ${merged}); strip leading whitespace from the target`);
          continue;
        }
        promptLen = promptIds.length;
      }
      if (ids.length <= maxLen) {
        const end = ids.lastIndexOf(tok.eosId);
        if (end < promptLen) {
          out[r.i] = new RenderError('the rendered reply has no end-of-turn token');
          continue;
        }
        const mask = new Uint8Array(ids.length);
        mask.fill(1, promptLen, end + 1);
        out[r.i] = { ids, mask, droppedTurns: r.dropped, messages: r.messages };
        continue;
      }
      const first = r.ctx.findIndex((m) => m.role !== 'system');
      const nonSystem = r.ctx.filter((m) => m.role !== 'system').length;
      if (first < 0 || nonSystem <= 1) {
        out[r.i] = undefined;
        continue;
      }
      next.push({ i: r.i, reply: r.reply, ctx: [...r.ctx.slice(0, first), ...r.ctx.slice(first + 1)], dropped: r.dropped + 1 });
    }
    pending = next;
  }
  return out;
}

/** One conversation (tokenizeConversations); a RenderError is thrown. */
export async function tokenizeConversation(tok: ChatTokenizer, context: Message[], reply: string, maxLen: number): Promise<TokenizedDoc | undefined> {
  const [doc] = await tokenizeConversations(tok, [{ context, reply }], maxLen);
  if (doc instanceof RenderError) throw doc;
  return doc;
}
