import { execFileSync } from 'node:child_process';
import { existsSync, mkdirSync, mkdtempSync, readdirSync, readFileSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import path from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { behaviorScores, shardPrompts } from '../src/predict/endpoint-predict.js';
import { logitBias } from '../src/score/balance.js';
import { bsft, FIXTURES, ROOT } from './helpers/cli.js';
import { FakeOpenAI } from './helpers/fake-openai.js';
import { pythonWith, torchPython } from './helpers/python.js';
import { limit } from './helpers/time-scale.js';

/** Issue 28: predictions through a serving engine's OpenAI-compatible completions endpoint (vLLM, SGLang). */
const py = torchPython();
const pyHF = pythonWith(['torch', 'transformers', 'peft']);
const KEY = 'sk-predict-SECRET-0123456789';

describe('the behavior probabilities of an endpoint\'s completion (issue 37)', () => {
  const ids = { reactive: 151665, proactive: 151666, restraint: 151667 };
  const tokens = { '<|behavior:reactive|>': 151665, '<|behavior:proactive|>': 151666, '<|behavior:restraint|>': 151667 };
  it('reads them from the first position\'s top log-probabilities, by token ID or by the token\'s text, and says which were not returned', () => {
    expect(behaviorScores(null, ids, tokens)).toBeUndefined();
    const all = behaviorScores({ 'token_id:151665': Math.log(0.5), '<|behavior:proactive|>': Math.log(0.3), 'token_id:151667': Math.log(0.1), 'token_id:9906': Math.log(0.1) }, ids, tokens)!;
    expect(all.behavior_logprobs).toEqual({ reactive: +Math.log(0.5).toFixed(6), proactive: +Math.log(0.3).toFixed(6), restraint: +Math.log(0.1).toFixed(6) });
    expect(all.behavior_probs).toEqual({ reactive: 0.555556, proactive: 0.333333, restraint: 0.111111 }); // 0.5, 0.3, 0.1 over 0.9
    const some = behaviorScores({ 'token_id:151666': -0.2, 'token_id:9906': -1.8 }, ids, tokens)!;
    expect(some).toEqual({ behavior_logprobs: { reactive: null, proactive: -0.2, restraint: null }, behavior_probs: { reactive: null, proactive: 1, restraint: null } });
    expect(behaviorScores({ 'token_id:9906': -0.01 }, ids, tokens)!.behavior_probs).toEqual({ reactive: null, proactive: null, restraint: null });
  });
});

describe.skipIf(!py)('eval.engine: openai (a local server that implements vLLM\'s completions route)', () => {
  const server = new FakeOpenAI();
  const root = mkdtempSync(path.join(tmpdir(), 'bsft-endpoint-'));
  beforeAll(() => server.start());
  afterAll(() => server.stop());

  it('sends each prompt as the dataset\'s token IDs, reads the behavior from the first generated token ID, and continues after a failure without asking again', async () => {
    // A toy run, trained: its dataset is what the server is asked about.
    const env = { BSFT_PYTHON: py!, BSFT_LOG_LEVEL: 'info' };
    const train = await bsft(['run', path.join(FIXTURES, 'recipes', 'toy-run.yaml'), '--allow', root, '--set', `store.path=${root}`], { env });
    expect(train.code, train.stderr.slice(-2000)).toBe(0);
    const runDir = path.join(root, readdirSync(root).find((d) => d.startsWith('toy-run-'))!);
    const manifest = JSON.parse(readFileSync(path.join(runDir, 'dataset', 'manifest.json'), 'utf8'));
    const prompts = shardPrompts(path.join(runDir, 'dataset', 'test.tokens.safetensors'));
    const docs = readFileSync(path.join(runDir, 'dataset', 'test.messages.jsonl'), 'utf8').trim().split('\n').map((l) => JSON.parse(l));
    expect(prompts).toHaveLength(docs.length);
    expect(prompts.every((p) => p[0] === 151644 && p.at(-1) === 198)).toBe(true); // <|im_start|> … "assistant\n"
    // The server answers each prompt with its gold behavior's token, then text; forced prompts end in the forced token.
    const gold = new Map(prompts.map((p, i) => [p.join(','), docs[i].behavior as string]));
    server.models = ['toy-served'];
    server.key = KEY;
    let failAfter = 25;
    // Its first position's top log-probabilities: the gold behavior -0.1, the next behavior -2.5, a plain token, and
    // the third behavior not among them.
    const names = Object.keys(manifest.behavior_ids);
    const next = (b: string) => names[(names.indexOf(b) + 1) % names.length]!;
    server.complete = (prompt, body) => {
      expect(body).toMatchObject({ model: 'toy-served', temperature: 0, max_tokens: 2, return_tokens_as_token_ids: true, logprobs: 20 });
      if (failAfter-- <= 0) return { status: 503 };
      const behavior = gold.get(prompt.join(','))!;
      return { ids: [manifest.behavior_ids[behavior], 9906, 151645], text: 'Hello',
        top: { [manifest.behavior_ids[behavior]]: -0.1, 9906: -1.9, [manifest.behavior_ids[next(behavior)]]: -2.5 } };
    };
    // The recipe's per-run settings: the engine and its endpoint (the key only from the environment).
    const recipeFile = path.join(runDir, 'recipe.json');
    const recipe = JSON.parse(readFileSync(recipeFile, 'utf8'));
    writeFileSync(recipeFile, JSON.stringify({ ...recipe, eval: { ...recipe.eval, engine: 'openai', endpoint: { base_url: server.url, model: 'toy-served', max_concurrency: 4, timeout_s: 10, max_retries: 0 } } }));
    const penv = { ...env, BSFT_PREDICT_API_KEY: KEY };
    const failed = await bsft(['predict', runDir], { env: penv });
    expect(failed.code).toBe(1);
    expect(failed.stderr).toMatch(/prediction endpoint http:\/\/127\.0\.0\.1:\d+\/v1 answered 503 while predicting, after 0 retries/);
    expect(failed.stderr).not.toContain(KEY);
    const asked = server.requests.filter((r) => r.path === '/v1/completions').length;
    failAfter = Infinity;
    const ok = await bsft(['predict', runDir], { env: penv });
    expect(ok.code, ok.stderr.slice(-2000)).toBe(0);
    expect(ok.stderr).toMatch(/predict: continuing where the last attempt stopped/);
    expect(ok.stderr).toMatch(/step predict: generate predictions on the eval splits \(eval\.engine openai: http:\/\/127\.0\.0\.1:\d+\/v1, model toy-served\)/);
    expect(ok.stderr).not.toContain('bsft_trainer predict'); // no trainer runs here
    const second = server.requests.filter((r) => r.path === '/v1/completions').length - asked;
    expect(second).toBe(prompts.length - 25); // only the prompts not answered before (25 answered, then 503s)
    const rows = readFileSync(path.join(runDir, 'predictions', 'test.jsonl'), 'utf8').trim().split('\n').map((l) => JSON.parse(l));
    expect(rows.map((r) => r.id)).toEqual(manifest.documents.test);
    expect(rows.every((r, i) => r.predicted_behavior === docs[i].behavior && r.reply === 'Hello' && r.raw_token_ids.length === 3)).toBe(true);
    const p = Math.exp(-0.1) / (Math.exp(-0.1) + Math.exp(-2.5));
    for (const [i, r] of rows.entries()) {
      const b = docs[i].behavior as string;
      const third = names.find((n) => n !== b && n !== next(b))!;
      expect(r.behavior_logprobs).toEqual({ [b]: -0.1, [next(b)]: -2.5, [third]: null });
      expect(r.behavior_probs[b]).toBeCloseTo(p, 6);
      expect(r.behavior_probs[next(b)]).toBeCloseTo(1 - p, 6);
      expect(r.behavior_probs[third]).toBeNull();
    }
    expect(JSON.parse(readFileSync(path.join(runDir, 'predictions', 'predict.json'), 'utf8'))['test.jsonl']).toMatchObject({ engine: 'openai', model: 'toy-served', tasks: prompts.length,
      generated_tokens: 3 * prompts.length, generated_tokens_this_attempt: 3 * (prompts.length - 25), resumed_after_prompts: 25 }); // both attempts' rows
    expect(existsSync(path.join(runDir, 'predictions', 'COMPLETE'))).toBe(true);
    const score = JSON.parse((await bsft(['score', runDir, '--json'], { env })).stdout);
    expect(score.overall.macro_f1.value).toBe(1);
    // An operating point goes to the server as logit_bias on the behavior token's ID, and the predictions are made again.
    const withPoint = JSON.parse(readFileSync(recipeFile, 'utf8'));
    writeFileSync(recipeFile, JSON.stringify({ ...withPoint, eval: { ...withPoint.eval, behavior_offsets: { proactive: 1.5, restraint: 0 } } }));
    const sent = server.requests.length;
    expect((await bsft(['predict', runDir], { env: penv })).code).toBe(0);
    const biased = server.requests.slice(sent).filter((r) => r.path === '/v1/completions');
    expect(biased).toHaveLength(prompts.length);
    expect(biased.every((r) => JSON.stringify(r.body!.logit_bias) === JSON.stringify({ [manifest.behavior_ids.proactive]: 1.5 }))).toBe(true);
    writeFileSync(recipeFile, JSON.stringify(withPoint));
    // A model the server does not serve, or a wrong key: said at once, before any prompt.
    server.models = ['other'];
    const wrong = await bsft(['predict', runDir], { env: penv });
    expect(wrong.code).toBe(2);
    expect(wrong.stderr).toMatch(/does not serve model "toy-served" \(it serves: other\); serve the run's export: bsft export/);
    server.models = ['toy-served'];
    expect((await bsft(['predict', runDir], { env: { ...penv, BSFT_PREDICT_API_KEY: 'wrong' } })).stderr).toMatch(/refused the key \(401\).*BSFT_PREDICT_API_KEY/);
  }, limit(300_000));

  it('a recipe with engine openai and no endpoint is refused with its path', async () => {
    const res = await bsft(['validate', 'recipes/smoke.yaml', '--no-data', '--set', 'eval.engine=openai']);
    expect(res.code).toBe(2);
    expect(res.stderr + res.stdout).toMatch(/eval\.endpoint: engine openai needs eval\.endpoint/);
    const secret = await bsft(['validate', 'recipes/smoke.yaml', '--no-data', '--set', 'eval.engine=openai', '--set', 'eval.endpoint={base_url: "http://u:sk-1@h:8000/v1", model: m}']);
    expect(secret.stderr + secret.stdout).toMatch(/BSFT_PREDICT_API_KEY/);
  });
});

describe.skipIf(!pyHF)('bsft export (tiny Qwen2 LoRA run)', () => {
  it('writes the folder a serving engine loads: merged weights, the tokenizer with the behavior tokens, a greedy generation config', async () => {
    const root = mkdtempSync(path.join(tmpdir(), 'bsft-export-'));
    const env = { BSFT_PYTHON: pyHF!, BSFT_LOG_LEVEL: 'warn' };
    const train = await bsft(['run', 'recipes/smoke.yaml', '--allow', root, '--set', `store.path=${root}`, '--set', 'train.method=lora', '--set', 'train.max_steps=2', '--set', 'eval.bootstrap=20'], { env });
    expect(train.code, train.stderr.slice(-2000)).toBe(0);
    const runDir = path.join(root, readdirSync(root).find((d) => d.startsWith('smoke-'))!);
    // An operating point (bsft balance on the val split's predictions) goes beside the exported model.
    expect((await bsft(['predict', runDir, '--split', 'val'], { env })).code).toBe(0);
    const balanced = await bsft(['balance', runDir, '--bootstrap', '20'], { env });
    expect(balanced.code, balanced.stderr).toBe(0);
    const res = await bsft(['export', runDir, '--out', path.join(root, 'served')], { env });
    expect(res.code, res.stderr.slice(-2000)).toBe(0);
    const runId = path.basename(runDir);
    expect(res.stdout).toContain(`vllm serve ${path.join(root, 'served')} --served-model-name ${runId} --max-model-len 1028 --generation-config auto`);
    const served = path.join(root, 'served');
    expect(JSON.parse(readFileSync(path.join(served, 'generation_config.json'), 'utf8'))).toMatchObject({ do_sample: false, eos_token_id: 151645, max_new_tokens: 4 });
    // transformers loads it without peft, and its tokenizer knows the behavior tokens as the dataset's IDs.
    const check = execFileSync(pyHF!, ['-c', [
      'import json, sys, transformers',
      `m = transformers.AutoModelForCausalLM.from_pretrained(${JSON.stringify(served)})`,
      `t = transformers.AutoTokenizer.from_pretrained(${JSON.stringify(served)})`,
      'print(json.dumps({"peft": hasattr(m, "peft_config"), "ids": t.convert_tokens_to_ids(["<|behavior:reactive|>", "<|behavior:proactive|>", "<|behavior:restraint|>"])}))',
    ].join('\n')], { encoding: 'utf8' });
    const manifest = JSON.parse(readFileSync(path.join(runDir, 'dataset', 'manifest.json'), 'utf8'));
    expect(JSON.parse(check.trim().split('\n').at(-1)!)).toEqual({ peft: false, ids: ['reactive', 'proactive', 'restraint'].map((b) => manifest.behavior_ids[b]) });
    expect(existsSync(path.join(served, 'COMPLETE'))).toBe(true);
    const point = JSON.parse(readFileSync(path.join(runDir, 'balance.json'), 'utf8'));
    const offsets = JSON.parse(readFileSync(path.join(served, 'behavior_offsets.json'), 'utf8'));
    expect(offsets).toMatchObject({ offsets: point.offsets, token_ids: manifest.behavior_ids, logit_bias: logitBias(point.offsets, manifest.behavior_ids), split: 'val' });
    expect(res.stdout).toContain(`"logit_bias": ${JSON.stringify(offsets.logit_bias)}`);
    expect(res.stdout).toMatch(/curl http:\/\/<host>:8000\/v1\/completions .*"logit_bias"/);
  }, limit(300_000));
});

describe('which predictions a change of eval.engine keeps (predict step)', () => {
  it("the trainer's engines keep each other's predictions and say so; an endpoint's model makes them again, and back", async () => {
    const { predictStep } = await import('../src/run/steps.js');
    const { resolveRecipe } = await import('../src/recipe/resolve.js');
    const { pino } = await import('pino');
    const runDir = mkdtempSync(path.join(tmpdir(), 'bsft-engine-'));
    const lines: string[] = [];
    const log = pino({ level: 'info' }, { write: (l: string) => lines.push(l) });
    const ctx = (set: string[]) => ({ recipe: resolveRecipe(path.join(ROOT, 'recipes', 'smoke.yaml'), { policy: { workspace: ROOT, allow: [] }, set }), runDir, log }) as never;
    const endpoint = ['eval.engine=openai', `eval.endpoint={base_url: "http://127.0.0.1:9/v1", model: served}`];
    const pred = path.join(runDir, 'predictions');
    mkdirSync(pred);
    const made = ctx(['eval.engine=static']);
    for (const f of ['test.jsonl', 'test.forced-reactive.jsonl', 'test.forced-proactive.jsonl', 'test.forced-restraint.jsonl']) writeFileSync(path.join(pred, f), '');
    writeFileSync(path.join(pred, 'predict.json'), JSON.stringify({ 'test.jsonl': { engine: 'static' } }));
    const { writeStamp } = await import('../src/run/settings-stamp.js');
    writeStamp(path.join(pred, 'settings.json'), { max_new_tokens: (made as { recipe: { eval: { max_new_tokens: number } } }).recipe.eval.max_new_tokens });
    expect(await predictStep.done(made)).toBe(true);
    expect(await predictStep.done(ctx(['eval.engine=continuous']))).toBe(true);
    expect(lines.join('')).toMatch(/predictions made with engine static are kept for eval.engine continuous/);
    expect(await predictStep.done(ctx(endpoint))).toBe(false); // another model serves them: made again
    writeStamp(path.join(pred, 'settings.json'), { max_new_tokens: (made as { recipe: { eval: { max_new_tokens: number } } }).recipe.eval.max_new_tokens, source: { engine: 'openai', base_url: 'http://127.0.0.1:9/v1', model: 'served' } });
    expect(await predictStep.done(ctx(endpoint))).toBe(true);
    expect(await predictStep.done(ctx(['eval.engine=static']))).toBe(false); // and back
  });
});

void ROOT;
