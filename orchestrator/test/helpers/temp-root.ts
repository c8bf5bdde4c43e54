import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import path from 'node:path';

/**
 * vitest's globalSetup: every temporary folder of the run (run folders, checkpoints, stores; those of the workers and
 * trainers the tests start too, who inherit TMPDIR) is made under one folder, removed when the run ends, so that runs
 * of the suite do not pile up on a machine (one run leaves about 7 GB). BSFT_TEST_KEEP_TMP=1 keeps it to look at.
 */
export default function setup(): () => void {
  const root = mkdtempSync(path.join(tmpdir(), 'bsft-tests-'));
  process.env.TMPDIR = root;
  return () => {
    if (process.env.BSFT_TEST_KEEP_TMP === '1') {
      console.log(`bsft tests: temporary files kept in ${root}`);
      return;
    }
    try {
      rmSync(root, { recursive: true, force: true });
    } catch (e) {
      console.log(`bsft tests: could not remove ${root} (${(e as Error).message})`); // a tmpfs a test left mounted
    }
  };
}
