import type { ResolvedRecipe } from '../recipe/resolve.js';
import type { JudgePromptVersion } from '../recipe/schema.js';
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
 * The judge prompts, by version (`judge.prompt_version`; the label cache keys on it, so a changed prompt asks again).
 * - v1: the behaviors with the recipe's descriptions, the conversation up to the reply (speakers as the task named
 *   them), the reply with its behavior tokens removed, and the answer format: one line `label: <behavior>` (or,
 *   where the server constrains the answer, JSON `{"label": …}`).
 * - v2: v1 with the conversation's last message set apart and a procedure: what that message asks of the assistant,
 *   whether the reply answers it, raises something nobody asked about, or holds back; then the behavior whose
 *   description fits. Same answer format.
 */
export function judgeMessages(recipe: Pick<ResolvedRecipe, 'data'>, context: Turn[], reply: string, version: JudgePromptVersion = 'v1'): ChatMessage[] {
  const behaviors = Object.entries(recipe.data.behaviors);
  const tokens = behaviors.map(([, b]) => b.token);
  const names = behaviors.map(([n]) => n);
  const turn = (t: Turn) => `[${t.role}] ${stripBehaviorTokens(t.content, tokens)}`;
  const answer = `Answer with one line and nothing else: label: <${names.join('|')}>`;
  const graded = stripBehaviorTokens(reply, tokens) || '(empty reply)';
  if (version === 'v1') {
    const system = [
      'You grade the replies of a clinical assistant that takes part in a care-team conversation.',
      'Classify what the reply does as exactly one of these behaviors:',
      ...behaviors.map(([n, b]) => `- ${n}: ${b.description}`),
      'Grade the behavior only, not whether the reply is correct or well written.',
      answer,
    ].join('\n');
    const user = `Conversation:\n${context.map(turn).join('\n')}\n\nReply to grade:\n${graded}\n\nWhich behavior is the reply?`;
    return [{ role: 'system', content: system }, { role: 'user', content: user }];
  }
  const system = [
    'You grade the replies of a clinical assistant that takes part in a care-team conversation.',
    'The behaviors, with what each means:',
    ...behaviors.map(([n, b]) => `- ${n}: ${b.description}`),
    'Decide in this order, silently:',
    '1. What does the last message before the reply ask of the assistant, if anything?',
    '2. Does the reply answer that, raise something nobody asked about (an omission, an error, an inconsistency, a risk), or hold back with at most a brief acknowledgement?',
    '3. Pick the behavior whose description fits what the reply does. Grade the behavior only, not whether the reply is correct or well written.',
    answer,
  ].join('\n');
  const earlier = context.slice(0, -1);
  const last = context.at(-1);
  const user = [
    earlier.length ? `Conversation so far:\n${earlier.map(turn).join('\n')}\n` : '',
    last ? `Last message before the reply:\n${turn(last)}\n` : '',
    `Reply to grade:\n${graded}\n`,
    'Which behavior is the reply?',
  ].filter(Boolean).join('\n');
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
