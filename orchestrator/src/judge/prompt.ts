import type { ResolvedRecipe } from '../recipe/resolve.js';
import { sha256 } from '../util/sha256.js';

/** One chat message of the OpenAI chat-completions API. */
export interface ChatMessage {
  role: 'system' | 'user' | 'assistant';
  content: string;
}

/** A dataset document's turns, as messages.jsonl holds them (names are inside `content`: "Dr. Patel: …"). */
export interface Turn {
  role: string;
  content: string;
}

/** Removes every behavior token of the recipe from a text (the judge grades what the reply says, not its token). */
export function stripBehaviorTokens(text: string, tokens: string[]): string {
  let out = text;
  for (const t of tokens) out = out.split(t).join('');
  return out.trim();
}

/** sha256 of the reply text the judge sees: part of each label's cache key. */
export const replyHash = (reply: string) => sha256(reply);

/**
 * The judge prompt, version v1: the behaviors with the recipe's descriptions, the conversation up to the reply
 * (speakers as the task named them), the reply with its behavior tokens removed, and the answer format: one line
 * `label: <behavior>` (or, where the server constrains the answer, JSON `{"label": …}`).
 */
export function judgeMessages(recipe: Pick<ResolvedRecipe, 'data'>, context: Turn[], reply: string): ChatMessage[] {
  const behaviors = Object.entries(recipe.data.behaviors);
  const tokens = behaviors.map(([, b]) => b.token);
  const names = behaviors.map(([n]) => n);
  const system = [
    'You grade the replies of a clinical assistant that takes part in a care-team conversation.',
    'Classify what the reply does as exactly one of these behaviors:',
    ...behaviors.map(([n, b]) => `- ${n}: ${b.description}`),
    'Grade the behavior only, not whether the reply is correct or well written.',
    `Answer with one line and nothing else: label: <${names.join('|')}>`,
  ].join('\n');
  const conversation = context.map((t) => `[${t.role}] ${stripBehaviorTokens(t.content, tokens)}`).join('\n');
  const user = `Conversation:\n${conversation}\n\nReply to grade:\n${stripBehaviorTokens(reply, tokens) || '(empty reply)'}\n\nWhich behavior is the reply?`;
  return [{ role: 'system', content: system }, { role: 'user', content: user }];
}

/**
 * The behavior an answer names: JSON `{"label": "…"}`, or a line `label: …` (case and surrounding quotes,
 * backticks or a final full stop ignored). undefined when it names none of `behaviors`, or more than one line does.
 */
export function parseLabel(answer: string, behaviors: string[]): string | undefined {
  const text = answer.trim();
  try {
    const j = JSON.parse(text) as { label?: unknown };
    if (typeof j?.label === 'string' && behaviors.includes(j.label.trim().toLowerCase())) return j.label.trim().toLowerCase();
  } catch {
    // not JSON: a label line
  }
  const found = new Set<string>();
  for (const line of text.split('\n')) {
    const m = /^\s*label\s*:\s*["'`*]*([a-z_][a-z0-9_]*)["'`*.]*\s*$/i.exec(line);
    if (m) found.add(m[1]!.toLowerCase());
  }
  const [label] = [...found];
  return found.size === 1 && behaviors.includes(label!) ? label : undefined;
}
