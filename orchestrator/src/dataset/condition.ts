import type { Conditioning } from '../recipe/schema.js';
import type { Turn } from './task.js';

/** A chat message as templates (and TRL/axolotl `messages` files) take it. */
export interface Message {
  role: 'system' | 'user' | 'assistant';
  content: string;
}

export interface ConditioningSpec {
  mode: Conditioning;
  /** behavior name -> { token, description } */
  behaviors: Record<string, { token: string; description: string }>;
  /** System prompt of `instruction` mode; `{behaviors}` expands to the behavior list. */
  instruction: string;
}

/** Multi-party talk keeps the speaker: `Dr. Patel: Potassium came back at 6.9...` (ChatML has no name field). */
export function turnToMessage(turn: Turn): Message {
  return { role: turn.role, content: turn.name ? `${turn.name}: ${turn.content}` : turn.content };
}

export function instructionPrompt(spec: ConditioningSpec): string {
  const list = Object.entries(spec.behaviors)
    .map(([name, b]) => `- ${name}: ${b.description}`)
    .join('\n');
  // split/join: every placeholder is filled, and `$&`, `$'` or `$$` in a description stay literal text.
  return spec.instruction.split('{behaviors}').join(list);
}

/**
 * The assistant reply for one task under a conditioning mode: `token` puts the behavior token first (BehaviorSFT),
 * `none` and `instruction` use the target alone.
 */
export function assistantReply(spec: ConditioningSpec, behavior: string, target: string): string {
  return spec.mode === 'token' ? `${spec.behaviors[behavior]!.token}${target}` : target;
}

/** Context messages for one task; `instruction` mode prepends (or merges into) the system message. */
export function contextMessages(spec: ConditioningSpec, context: Turn[]): Message[] {
  const messages = context.map(turnToMessage);
  if (spec.mode !== 'instruction') return messages;
  const prompt = instructionPrompt(spec);
  if (messages[0]?.role === 'system') {
    return [{ role: 'system', content: `${prompt}\n\n${messages[0].content}` }, ...messages.slice(1)];
  }
  return [{ role: 'system', content: prompt }, ...messages];
}
