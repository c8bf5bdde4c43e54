import { setFlagsFromString } from 'node:v8';
import { runInNewContext } from 'node:vm';

let gc: (() => void) | undefined;

/**
 * A full garbage collection, now. For work whose garbage is mostly native memory the JavaScript heap does not see
 * (the tokenizer library's encodings: each holds its tokens' strings and offsets on the Rust side until its
 * JavaScript wrapper is collected): left to the heap's own pace, that memory grows with the work done. `gc` is
 * V8's own function, made available at run time (the `--expose-gc` flag, set before a new context that sees it).
 */
export function collectGarbage(): void {
  if (!gc) {
    setFlagsFromString('--expose-gc');
    gc = runInNewContext('gc') as () => void;
  }
  gc();
}
