/**
 * Aligned text columns, two spaces apart: the first left-aligned, the rest right-aligned (figures), except the
 * columns named in `left` (text).
 */
export function table(rows: string[][], left: number[] = []): string[] {
  const widths = rows[0]!.map((_, i) => Math.max(...rows.map((r) => (r[i] ?? '').length)));
  const leftAligned = new Set([0, ...left]);
  return rows.map((r) => r.map((c, i) => (leftAligned.has(i) ? c.padEnd(widths[i]!) : c.padStart(widths[i]!))).join('  ').trimEnd());
}
