/**
 * White space as Python's `str.isspace()` defines it (Unicode White_Space less U+180E: bidi classes WS, B, S and
 * category Zs). JavaScript's `trim()` differs: it strips U+FEFF and keeps U+0085 and U+001C..U+001F.
 */
const PY_SPACE = '\\t\\n\\v\\f\\r\\x1c-\\x1f \\x85\\xa0\\u1680\\u2000-\\u200a\\u2028\\u2029\\u202f\\u205f\\u3000';
const EDGES = new RegExp(`^[${PY_SPACE}]+|[${PY_SPACE}]+$`, 'g');

/** `s.strip()` of Python: the rule for task targets (Contract 1), so both languages read a reply the same. */
export function pyStrip(s: string): string {
  return s.replace(EDGES, '');
}
