import path from 'node:path';
import { tokenSafeUrl } from '../recipe/hub-url.js';
import { defaultPolicy, isLocalPath, withinPolicy, type PathPolicy } from '../recipe/path-policy.js';
import { JUDGE_KEY_ENV, PREDICT_KEY_ENV } from '../recipe/secrets.js';
import { JobDataError, parseRunJobData, type RunJobData } from '../queue/job-data.js';

export const DEFAULT_HUB_ENDPOINT = 'https://huggingface.co';

/**
 * What a worker's owner lets jobs touch: paths inside the worker's workspace (its cwd) or its allowed roots
 * (`--allow`, BSFT_ALLOW_PATHS: the same policy as recipes), Hub endpoints its HF_TOKEN may be sent to
 * (HF_ENDPOINT, else huggingface.co, plus `--hub-endpoint`), and the endpoints its BSFT_JUDGE_API_KEY and
 * BSFT_PREDICT_API_KEY may be sent to (one list: BSFT_JUDGE_ENDPOINTS, `--judge-endpoint`).
 */
export interface JobPolicy {
  paths: PathPolicy;
  hubEndpoints: string[];
  /** Endpoints this worker's judge and prediction keys may be sent to (BSFT_JUDGE_ENDPOINTS, `--judge-endpoint`). */
  judgeEndpoints: string[];
  /** Whether this worker holds a judge key at all (without one, a job's judge endpoint risks no secret of ours). */
  judgeKey: boolean;
  /** Whether it holds a prediction endpoint's key (eval.engine: openai). */
  predictKey: boolean;
}

function normalizeEndpoint(url: string): string {
  const u = new URL(url);
  return `${u.protocol}//${u.host}${u.pathname.replace(/\/+$/, '')}`;
}

export function workerJobPolicy(allow: string[] = [], hubEndpoints: string[] = [], judgeEndpoints: string[] = []): JobPolicy {
  const endpoints = [process.env.HF_ENDPOINT || DEFAULT_HUB_ENDPOINT, ...hubEndpoints].map(normalizeEndpoint);
  const judges = [...(process.env.BSFT_JUDGE_ENDPOINTS ?? '').split(',').map((u) => u.trim()).filter(Boolean), ...judgeEndpoints].map(normalizeEndpoint);
  return { paths: defaultPolicy(allow), hubEndpoints: [...new Set(endpoints)], judgeEndpoints: [...new Set(judges)], judgeKey: !!process.env[JUDGE_KEY_ENV], predictKey: !!process.env[PREDICT_KEY_ENV] };
}

/** Where a job would send one of this worker's endpoint keys; a problem when the owner did not allow it. */
function endpointProblem(field: string, baseUrl: string, keyEnv: string, hasKey: boolean, policy: JobPolicy): string | undefined {
  if (!hasKey) return undefined;
  const endpoint = normalizeEndpoint(baseUrl);
  if (policy.judgeEndpoints.includes(endpoint)) return undefined;
  return `${field}: ${endpoint} is not an endpoint this worker sends its ${keyEnv} to ` +
    `(${policy.judgeEndpoints.join(', ') || 'none allowed'}); its owner can allow it with BSFT_JUDGE_ENDPOINTS or bsft worker --judge-endpoint`;
}

/** Where a hub store job would send this worker's token; a problem when the owner did not allow it. */
function hubProblem(hubUrl: string | undefined, policy: JobPolicy): string | undefined {
  let endpoint: string;
  try {
    endpoint = normalizeEndpoint(hubUrl ?? DEFAULT_HUB_ENDPOINT);
  } catch {
    return 'recipe.store.hub_url: not a URL';
  }
  if (!tokenSafeUrl(endpoint)) {
    return `recipe.store.hub_url: ${endpoint} is not https; this worker sends its HF_TOKEN only over https`;
  }
  if (!policy.hubEndpoints.includes(endpoint)) {
    return `recipe.store.hub_url: ${endpoint} is not an endpoint this worker allows (${policy.hubEndpoints.join(', ')}); ` +
      'its owner can allow it with HF_ENDPOINT or bsft worker --hub-endpoint';
  }
  return undefined;
}

/**
 * Parses job data (parseRunJobData) and checks it against the worker's policy: every path the job would read or
 * write, and the Hub endpoint of a hub store. Throws JobDataError listing every problem; messages name fields and
 * paths, never file contents.
 */
export function checkJob(data: unknown, policy: JobPolicy): RunJobData {
  const job = parseRunJobData(data);
  const { recipe } = job;
  const problems: string[] = [];
  const checkPathField = (field: string, p: string) => {
    if (!path.isAbsolute(p)) problems.push(`${field}: expected an absolute path`);
    else if (!withinPolicy(p, policy.paths)) {
      problems.push(`${field}: ${p} is outside this worker's workspace ${policy.paths.workspace} and allowed roots; ` +
        'its owner can allow it with bsft worker --allow <dir> or BSFT_ALLOW_PATHS');
    }
  };
  recipe.task_files.forEach((f, i) => checkPathField(`recipe.task_files.${i}`, f));
  if (isLocalPath(recipe.model.name_or_path) || path.isAbsolute(recipe.model.name_or_path)) checkPathField('recipe.model.name_or_path', recipe.model.name_or_path);
  if (path.isAbsolute(recipe.tokenizer)) checkPathField('recipe.tokenizer', recipe.tokenizer);
  if (recipe.judge?.kind === 'openai') {
    const judge = endpointProblem('recipe.judge.base_url', recipe.judge.base_url, JUDGE_KEY_ENV, policy.judgeKey, policy);
    if (judge) problems.push(judge);
  } else if (recipe.judge?.kind === 'model') {
    if (isLocalPath(recipe.judge.model) || path.isAbsolute(recipe.judge.model)) checkPathField('recipe.judge.model', recipe.judge.model);
    if (recipe.judge.tokenizer && (isLocalPath(recipe.judge.tokenizer) || path.isAbsolute(recipe.judge.tokenizer))) checkPathField('recipe.judge.tokenizer', recipe.judge.tokenizer);
  }
  if (recipe.eval.endpoint) {
    const predict = endpointProblem('recipe.eval.endpoint.base_url', recipe.eval.endpoint.base_url, PREDICT_KEY_ENV, policy.predictKey, policy);
    if (predict) problems.push(predict);
  }
  if (recipe.store.kind === 'hub') {
    const hub = hubProblem(recipe.store.hub_url, policy);
    if (hub) problems.push(hub);
  } else {
    checkPathField('run_dir', job.run_dir);
  }
  if (problems.length) throw new JobDataError(problems);
  return job;
}
