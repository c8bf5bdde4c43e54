import { z } from 'zod';
import { pyStrip } from './strip.js';

/** Contract 1: one task record (one JSONL line). Extra fields are allowed and ignored. */
export const turnSchema = z.object({
  role: z.enum(['system', 'user', 'assistant']),
  name: z.string().min(1).optional(),
  content: z.string(),
});

export const taskSchema = z.object({
  id: z.string().min(1),
  case_id: z.string().min(1),
  category: z.string().min(1),
  behavior: z.string().min(1).optional(),
  context: z.array(turnSchema).min(1, 'context needs at least one turn'),
  target: z.string().refine((s) => pyStrip(s).length > 0, 'target is empty'),
  answer: z.string().optional(),
  options: z.array(z.string()).optional(),
  hard: z.boolean().optional(),
});

export type Turn = z.infer<typeof turnSchema>;
export type Task = z.infer<typeof taskSchema>;

/** A task with its behavior settled and the place it was read from. */
export interface SourcedTask extends Task {
  behavior: string;
  file: string;
  line: number;
}

/** What scoring needs of a task: written with every document to `<split>.messages.jsonl`. */
export interface TaskLabels {
  id: string;
  case_id: string;
  category: string;
  behavior: string;
  hard: boolean;
  answer?: string;
}
