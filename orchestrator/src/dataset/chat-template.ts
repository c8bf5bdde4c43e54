import { Template } from '@huggingface/jinja';
import type { Message } from './condition.js';

/**
 * A model's chat template, rendered once per shape of conversation: the roles in order, which contents are empty,
 * and whether the generation prompt is added. Of a new shape, the template is rendered with placeholders for the
 * contents (twice, with placeholders of two kinds, which must give the same text around them); a conversation of
 * that shape is then those pieces of text with its contents in the placeholders' places.
 *
 * That is exact only for a template that inserts message contents as they are and tests nothing of them but
 * whether they are empty. `insertsContentOnly` reads the template for that; any other use of a content (a filter,
 * a method, a comparison, `in`) leaves every conversation rendered in full. A content holding the placeholder
 * character (U+E000, private use) is rendered in full too.
 */
export class ChatTemplate {
  private readonly template: Template;
  private readonly byShape = new Map<string, Skeleton | null>();
  readonly shaped: boolean;

  constructor(
    source: string,
    private readonly globals: Record<string, unknown>,
  ) {
    this.template = new Template(source);
    this.shaped = insertsContentOnly(source);
  }

  /** The template's own rendering, in full. */
  renderFull(messages: Message[], generationPrompt: boolean): string {
    return this.template.render({ ...this.globals, messages, add_generation_prompt: generationPrompt });
  }

  render(messages: Message[], generationPrompt: boolean): string {
    if (!this.shaped || messages.some((m) => m.content.includes(MARK))) return this.renderFull(messages, generationPrompt);
    const key = `${generationPrompt ? 'g' : ''}${messages.map((m) => `${m.role}${m.content === '' ? '0' : '1'}`).join(',')}`;
    let skeleton = this.byShape.get(key);
    if (skeleton === undefined) {
      skeleton = this.skeleton(messages, generationPrompt);
      if (this.byShape.size < MAX_SHAPES) this.byShape.set(key, skeleton);
    }
    if (skeleton === null) return this.renderFull(messages, generationPrompt);
    let out = skeleton.pieces[0]!;
    for (let i = 0; i < skeleton.slots.length; i++) out += messages[skeleton.slots[i]!]!.content + skeleton.pieces[i + 1]!;
    return out;
  }

  /** The pieces of text around the contents of a shape, or null when the template's text depends on them. */
  private skeleton(messages: Message[], generationPrompt: boolean): Skeleton | null {
    const parse = (close: string): Skeleton | null => {
      const text = this.renderFull(messages.map((m, i) => ({ ...m, content: m.content === '' ? '' : `${MARK}${i}${close}` })), generationPrompt);
      const pieces: string[] = [];
      const slots: number[] = [];
      const re = new RegExp(`${MARK}(\\d+)${close}`, 'g');
      let last = 0;
      for (const m of text.matchAll(re)) {
        pieces.push(text.slice(last, m.index));
        slots.push(Number(m[1]));
        last = m.index! + m[0].length;
      }
      pieces.push(text.slice(last));
      return pieces.some((p) => p.includes(MARK)) ? null : { pieces, slots };
    };
    const a = parse('\ue001');
    const b = parse('\ue002\ue002\ue002');
    return a && b && JSON.stringify(a) === JSON.stringify(b) ? a : null;
  }
}

interface Skeleton {
  /** Text before the first content, between contents, after the last. */
  pieces: string[];
  /** The message whose content goes into each place, in order. */
  slots: number[];
}

const MARK = '\ue000';
const MAX_SHAPES = 10_000;

/**
 * Whether every use of a message's `content` in a template source is inserted as it is (concatenated, output) or
 * tested for emptiness (`if`, `not`, `is string`): `.content` / `['content']` followed by `+`, the end of an output or
 * a tag, `)`, `and`/`or`, or an `is` test, and not preceded by `in` or a comparison.
 */
export function insertsContentOnly(source: string): boolean {
  const uses = [...source.matchAll(/(?:\.content\b|\[\s*['"]content['"]\s*\])/g)];
  return uses.every((u) => {
    const after = source.slice(u.index! + u[0].length, u.index! + u[0].length + 24);
    // The text before the object whose content it is (`message`, `messages[0]`).
    const before = source.slice(Math.max(0, u.index! - 48), u.index!).replace(/[\w.[\]'"]+$/, '');
    const inserted = /^\s*(\+|-?\}\}|-?%\}|\)|and\b|or\b|is\s+(not\s+)?(string|none|defined)\b)/.test(after);
    const compared = /(\bin|==|!=|<=|>=|<|>|\|)\s*$/.test(before);
    return inserted && !compared;
  });
}
