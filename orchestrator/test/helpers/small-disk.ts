import { execFileSync } from 'node:child_process';
import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import path from 'node:path';

/** A tmpfs of `kib` KiB mounted on a new folder (a full disk for tests); `unmount()` removes it. */
export function smallDisk(kib: number): { dir: string; unmount: () => void } {
  const dir = mkdtempSync(path.join(tmpdir(), 'bsft-small-disk-'));
  execFileSync('mount', ['-t', 'tmpfs', '-o', `size=${kib}k`, 'tmpfs', dir], { stdio: 'pipe' });
  return {
    dir,
    unmount: () => {
      execFileSync('umount', ['-l', dir], { stdio: 'ignore' });
      rmSync(dir, { recursive: true, force: true });
    },
  };
}

/** Why this machine cannot mount a tmpfs for a test (not root, no right to mount), or undefined when it can. */
export function cannotMount(): string | undefined {
  try {
    smallDisk(4).unmount();
    return undefined;
  } catch (e) {
    return (e as Error).message.split('\n')[0];
  }
}
