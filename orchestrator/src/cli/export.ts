import { existsSync, mkdtempSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import path from 'node:path';
import { execa } from 'execa';
import { UsageError } from '../errors.js';
import { findRunDir, readRunRecipe } from '../run/run-dir.js';
import { pythonEnv, trainerPython, trainerUnavailable } from '../run/python-env.js';
import { trainerConfig } from '../run/trainer-config.js';
import { logitBias, readOperatingPoint } from '../score/balance.js';
import { readManifest } from '../dataset/manifest.js';
import { parseEvent } from '../worker/trainer-events.js';
import { EXIT, type CommandImpl } from './command.js';

/**
 * `bsft export <run>`: the folder a serving engine loads (vLLM, SGLang, TGI): the run's model with its LoRA adapter
 * and behavior-token rows merged (python -m bsft_trainer merge), the dataset's tokenizer with the behavior tokens,
 * and a greedy generation config; then the command line that serves it for `eval.engine: openai`.
 */
export const exportRun: CommandImpl = {
  async run([arg], values, { out }) {
    const runDir = findRunDir(arg!, path.resolve((values.dir as string | undefined) ?? 'runs'));
    const recipe = readRunRecipe(runDir)!;
    if (!existsSync(path.join(runDir, 'final', 'COMPLETE'))) throw new UsageError(`run ${recipe.run_id} has no final model yet (train it first: bsft run, or bsft pull ${recipe.run_id} --final)`);
    const missing = await trainerUnavailable(recipe);
    if (missing) throw new UsageError(missing);
    const target = path.resolve((values.out as string | undefined) ?? path.join(runDir, 'export'));
    // The trainer's config in a temporary folder: the run folder is only read (the export goes where --out says).
    const scratch = mkdtempSync(path.join(tmpdir(), 'bsft-export-'));
    try {
      const config = path.join(scratch, 'export.json');
      writeFileSync(config, JSON.stringify(trainerConfig(recipe, runDir)));
      const res = await execa(trainerPython(), ['-m', 'bsft_trainer', 'merge', '--config', config, '--out', target], {
        reject: false, extendEnv: false, env: pythonEnv({ PYTHONUNBUFFERED: '1' }), stderr: 'inherit',
      });
      if (res.exitCode !== 0) {
        const error = String(res.stdout).split('\n').map(parseEvent).find((e) => e?.event === 'error');
        throw new UsageError(`export of ${recipe.run_id} failed (exit ${res.exitCode}): ${error?.event === 'error' ? error.message : 'see the trainer output above'}`);
      }
    } finally {
      rmSync(scratch, { recursive: true, force: true });
    }
    const len = recipe.data.max_seq_len + recipe.eval.max_new_tokens;
    const meta = JSON.parse(readFileSync(path.join(target, 'bsft.json'), 'utf8')) as { method: string };
    out(`exported ${recipe.run_id} (${meta.method}, merged) to ${path.relative(process.cwd(), target) || target}: weights, the tokenizer with the behavior tokens, a greedy generation config`);
    out('serve it (vLLM; SGLang: python -m sglang.launch_server --model-path <folder> --served-model-name <name>):');
    out(`  vllm serve ${target} --served-model-name ${recipe.run_id} --max-model-len ${len} --generation-config auto`);
    out('and predict through it:');
    out(`  bsft predict ${arg} with the recipe's  eval: { engine: openai, endpoint: { base_url: http://<host>:8000/v1, model: ${recipe.run_id} } }`);
    const point = readOperatingPoint(runDir);
    if (point) {
      // The operating point beside the model: a serving engine applies it as logit_bias on the behavior tokens.
      const ids = readManifest(path.join(runDir, 'dataset'))!.behavior_ids;
      const bias = logitBias(point.offsets, ids);
      writeFileSync(path.join(target, 'behavior_offsets.json'), `${JSON.stringify({
        offsets: point.offsets, token_ids: ids, logit_bias: bias, rule: point.rule.text, split: point.split, date: point.date,
        applies: 'add each offset to its behavior token\'s logit (OpenAI logit_bias); the answering behavior keeps 0',
      }, null, 1)}\n`);
      out(`its operating point (bsft balance: ${point.rule.text}, chosen on ${point.split}) is in behavior_offsets.json; a server applies it per request as`);
      out(`  "logit_bias": ${JSON.stringify(bias)}`);
      out(`  e.g. curl http://<host>:8000/v1/completions -H 'Content-Type: application/json' -d '${JSON.stringify({ model: recipe.run_id, prompt: '<the conversation as the dataset renders it>', max_tokens: recipe.eval.max_new_tokens, temperature: 0, logit_bias: bias })}'`);
    }
    return EXIT.ok;
  },
};
