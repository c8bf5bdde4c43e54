/** Runs `fn` over `items` with at most `concurrency` calls in flight; results in the items' order. Stops at the first error. */
export async function mapPool<T, R>(items: T[], concurrency: number, fn: (item: T, index: number) => Promise<R>): Promise<R[]> {
  const out = new Array<R>(items.length);
  let next = 0;
  let failed = false;
  const worker = async () => {
    while (!failed && next < items.length) {
      const i = next++;
      try {
        out[i] = await fn(items[i]!, i);
      } catch (e) {
        failed = true;
        throw e;
      }
    }
  };
  await Promise.all(Array.from({ length: Math.min(concurrency, items.length) }, worker));
  return out;
}

/**
 * Runs `fn` over the items of an iterable (an async one too: a file read line by line) with at most `concurrency`
 * calls in flight, taking the next item only when a call ends: memory holds the calls in flight, not the items.
 * Stops taking items at the first error, which it throws once the calls in flight have ended.
 */
export async function forEachPool<T>(items: AsyncIterable<T> | Iterable<T>, concurrency: number, fn: (item: T) => Promise<void>): Promise<void> {
  const it = Symbol.asyncIterator in items ? (items as AsyncIterable<T>)[Symbol.asyncIterator]() : (items as Iterable<T>)[Symbol.iterator]();
  let failed: unknown;
  const worker = async () => {
    while (failed === undefined) {
      const next = await it.next();
      if (next.done) return;
      try {
        await fn(next.value);
      } catch (e) {
        failed ??= e;
      }
    }
  };
  await Promise.all(Array.from({ length: Math.max(1, concurrency) }, worker));
  if (failed !== undefined) throw failed;
}
