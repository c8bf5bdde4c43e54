/**
 * JSON with object keys sorted at every level (but in objects marked `keyOrdered`): equal values give equal strings
 * (for hashes and byte-stable files).
 */
export function canonicalJson(value: unknown, indent?: number): string {
  return JSON.stringify(sortKeys(value), null, indent);
}

const ordered = new WeakSet<object>();

/** Marks an object whose keys carry an order (behavior tokens by ID): canonicalJson keeps it as inserted. */
export function keyOrdered<T extends object>(value: T): T {
  ordered.add(value);
  return value;
}

function sortKeys(value: unknown): unknown {
  if (Array.isArray(value)) return value.map(sortKeys);
  if (value && typeof value === 'object') {
    const keys = Object.keys(value);
    return Object.fromEntries(
      (ordered.has(value) ? keys : keys.sort())
        .map((k) => [k, sortKeys((value as Record<string, unknown>)[k])]),
    );
  }
  return value;
}
