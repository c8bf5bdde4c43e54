import { mkdirSync, readFileSync, writeFileSync } from 'node:fs';
import path from 'node:path';
import { ROOT } from './cli.js';

const BEHAVIORS = ['reactive', 'proactive', 'restraint'];
const TOKEN = (b: string) => `<|behavior:${b}|>`;

interface SampleTask {
  id: string;
  case_id: string;
  category: string;
  behavior: string;
  context: { role: string; name?: string; content: string }[];
  target: string;
}

/** The first `n` tasks of the bundled sample. */
export function sampleTasks(n: number): SampleTask[] {
  return readFileSync(path.join(ROOT, 'recipes', 'data', 'behaviorbench-sample.jsonl'), 'utf8').split('\n').filter(Boolean).slice(0, n).map((l) => JSON.parse(l) as SampleTask);
}

/**
 * A run folder as predict leaves it, for study tests: recipe.json, the test split's messages.jsonl (prompt with the
 * speakers' names as bsft renders them; an instruction run's system prompt first) and predictions with replies
 * (`reply(task)`), the behavior token left in front of a token run's reply to check that studies strip it.
 */
export function studyRun(root: string, name: string, conditioning: 'token' | 'none' | 'instruction', method: string, tasks: SampleTask[], reply: (t: SampleTask, i: number) => string): string {
  const dir = path.join(root, name);
  mkdirSync(path.join(dir, 'dataset'), { recursive: true });
  mkdirSync(path.join(dir, 'predictions'), { recursive: true });
  const behaviors = Object.fromEntries(BEHAVIORS.map((b) => [b, { token: TOKEN(b), description: `the ${b} behavior` }]));
  const instruction = 'You are a clinical agent. Behaviors:\n{behaviors}';
  writeFileSync(path.join(dir, 'recipe.json'), JSON.stringify({
    name, run_id: `${name}-0123abcd`, model: { name_or_path: 'Qwen/Qwen2.5-7B-Instruct' },
    data: { behaviors, categories: {}, conditioning, instruction },
    eval: { splits: ['test'], bootstrap: 100 }, train: { method, seed: 1, lr: 2e-4, schedule: 'cosine', max_steps: 10 },
  }));
  const system = instruction.replace('{behaviors}', BEHAVIORS.map((b) => `- ${b}: the ${b} behavior`).join('\n'));
  writeFileSync(path.join(dir, 'dataset', 'test.messages.jsonl'), tasks.map((t) => {
    const prompt = t.context.map((c) => ({ role: c.role, content: c.name ? `${c.name}: ${c.content}` : c.content }));
    return JSON.stringify({ id: t.id, case_id: t.case_id, category: t.category, behavior: t.behavior, hard: false,
      prompt: conditioning === 'instruction' ? [{ role: 'system', content: system }, ...prompt] : prompt, messages: [] });
  }).join('\n'));
  writeFileSync(path.join(dir, 'predictions', 'test.jsonl'), tasks.map((t, i) => JSON.stringify({
    id: t.id, predicted_behavior: conditioning === 'token' ? t.behavior : null,
    reply: `${conditioning === 'token' ? TOKEN(t.behavior) : ''}${reply(t, i)}`,
  })).join('\n'));
  return dir;
}
