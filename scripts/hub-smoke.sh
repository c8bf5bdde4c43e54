#!/usr/bin/env bash
# The hub store's flow against the real Hugging Face Hub: create a private repo, push two checkpoints (one through
# LFS), list them, pull the newest back and check its sha256s, prune, clean up. Needs network and HF_TOKEN with
# write access; without HF_TOKEN it says so and exits 0.
#
#   HF_TOKEN=hf_... HUB_REPO=me/bsft-hub-smoke bash scripts/hub-smoke.sh
set -euo pipefail
cd "$(dirname "$0")/.."
if [ -z "${HF_TOKEN:-}" ]; then
  echo "hub-smoke: HF_TOKEN is not set; skipped (set it to a token with write access to run against the real Hub)"
  exit 0
fi
: "${HUB_REPO:?set HUB_REPO=owner/name (a private model repo is created if missing)}"
[ -f dist/store/hub-store.js ] || npm run build >/dev/null
node --input-type=module - <<'JS'
import { mkdirSync, mkdtempSync, readFileSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import path from 'node:path';
import { sha256File } from './dist/store/complete.js';
import { HubStore } from './dist/store/hub-store.js';
import { pruneRemote, pullNewestCheckpoint } from './dist/store/sync.js';

const store = new HubStore({ repo: process.env.HUB_REPO, hubUrl: process.env.HUB_URL });
const run = `smoke-${Date.now()}`;
const root = mkdtempSync(path.join(tmpdir(), 'hub-smoke-'));
const log = { info: console.log, warn: console.warn, debug() {} };
for (const step of [1, 2]) {
  const dir = path.join(root, `step-00000${step}`);
  mkdirSync(dir);
  writeFileSync(path.join(dir, 'weights.bin'), Buffer.alloc(2_000_000, step));
  writeFileSync(path.join(dir, 'state.json'), JSON.stringify({ step }));
  const files = { 'weights.bin': await sha256File(path.join(dir, 'weights.bin')), 'state.json': await sha256File(path.join(dir, 'state.json')) };
  writeFileSync(path.join(dir, 'COMPLETE'), JSON.stringify({ files, step }));
  await store.push(run, dir, `checkpoints/step-00000${step}`);
  console.log(`pushed ${run}/checkpoints/step-00000${step}`);
}
const listed = await store.checkpoints(run);
console.log('listed', listed);
const into = mkdtempSync(path.join(tmpdir(), 'hub-smoke-pull-'));
const step = await pullNewestCheckpoint(store, run, into, log);
if (step !== 2 || readFileSync(path.join(into, 'step-000002', 'weights.bin'))[0] !== 2) throw new Error('pulled the wrong checkpoint');
await pruneRemote(store, run, 1);
if ((await store.checkpoints(run)).length !== 1) throw new Error('prune did not keep exactly one');
await store.remove(run, 'checkpoints/step-000002');
console.log(`hub-smoke: ok (${store.describe()}, run folder ${run})`);
JS
