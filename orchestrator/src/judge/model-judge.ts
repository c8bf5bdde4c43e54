import { readFileSync, rmSync, writeFileSync } from 'node:fs';
import path from 'node:path';
import type { ModelJudgeSettings } from '../recipe/schema.js';
import { StepUnavailableError, type RunContext } from '../run/step.js';
import { checkTrainerRun } from '../run/trainer-outcome.js';
import type { Judgment } from './openai-judge.js';
import type { Judge, JudgeRequest } from './run-judge.js';

/**
 * A local Hugging Face chat model as the judge: the trainer's `judge` command (trainer-python judge.py) scores each
 * label's answer line by log-likelihood after the prompt, batched, on this machine's GPU (the train job's in the
 * queue). It runs as the trainer runs, on the host: its progress line, its lease, its GPUs.
 */
export class ModelJudge implements Judge {
  readonly showsProgress = true;
  readonly endpoint: string;

  constructor(
    private readonly ctx: RunContext,
    private readonly settings: ModelJudgeSettings,
    private readonly behaviors: string[],
  ) {
    this.endpoint = `local model ${settings.model}`;
  }

  async check(): Promise<void> {
    const why = await this.ctx.host.trainerUnavailable(this.ctx.recipe);
    if (why) throw new StepUnavailableError('judge', why);
  }

  async answer(requests: JudgeRequest[], onAnswer: (key: string, j: Judgment) => void): Promise<void> {
    const dir = path.join(this.ctx.runDir, 'judge');
    const files = { requests: path.join(dir, 'model-requests.jsonl'), out: path.join(dir, 'model-answers.jsonl'), config: path.join(dir, 'model-judge.json') };
    writeFileSync(files.requests, requests.map((r) => `${JSON.stringify({ key: r.key, messages: r.messages })}\n`).join(''));
    const { model, tokenizer, revision, dtype, batch_size } = this.settings;
    writeFileSync(files.config, `${JSON.stringify({ requests: files.requests, out: files.out, model, tokenizer: tokenizer ?? null, revision: revision ?? null, dtype, batch_size, labels: this.behaviors }, null, 2)}\n`);
    try {
      checkTrainerRun('judge', await this.ctx.host.trainer(this.ctx, 'judge', files.config, []));
      for (const line of readFileSync(files.out, 'utf8').split('\n')) {
        if (!line.trim()) continue;
        const a = JSON.parse(line) as { key: string; label: string; raw: string; status: 'ok' };
        onAnswer(a.key, { label: a.label, raw: a.raw, status: a.status, tokens: 0 });
      }
    } finally {
      for (const f of Object.values(files)) rmSync(f, { force: true });
    }
  }
}
