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

/**
 * Renders one conversation with the chat template and tokenizes it. The loss mask covers exactly the final
 * assistant reply (behavior token included) through its end-of-turn token; the template's trailing newline and
 * everything before the reply are context. Over-long conversations lose their oldest non-system context turns
 * first; the reply is never cut. Returns undefined if even the last context turn with the reply does not fit.
 */
export function tokenizeConversation(tok: ChatTokenizer, context: Message[], reply: string, maxLen: number): TokenizedDoc | undefined {
  let ctx = context;
  let dropped = 0;
  for (;;) {
    const messages: Message[] = [...ctx, { role: 'assistant', content: reply }];
    const promptText = tok.render(ctx, true);
    const fullText = tok.render(messages, false);
    if (!fullText.startsWith(promptText)) {
      throw new RenderError('the chat template renders the prompt differently with and without the reply');
    }
    const promptIds = tok.encode(promptText);
    const ids = tok.encode(fullText);
    for (let i = 0; i < promptIds.length; i++) {
      if (ids[i] !== promptIds[i]) {
        throw new RenderError(`the reply's first characters merge with the assistant header into one token (at token ${i}); strip leading whitespace from the target`);
      }
    }
    if (ids.length <= maxLen) {
      const end = ids.lastIndexOf(tok.eosId);
      if (end < promptIds.length) throw new RenderError('the rendered reply has no end-of-turn token');
      const mask = new Uint8Array(ids.length);
      mask.fill(1, promptIds.length, end + 1);
      return { ids, mask, droppedTurns: dropped, messages };
    }
    const first = ctx.findIndex((m) => m.role !== 'system');
    const nonSystem = ctx.filter((m) => m.role !== 'system').length;
    if (first < 0 || nonSystem <= 1) return undefined;
    ctx = [...ctx.slice(0, first), ...ctx.slice(first + 1)];
    dropped++;
  }
}
