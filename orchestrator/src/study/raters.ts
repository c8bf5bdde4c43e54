import { randomBytes } from 'node:crypto';
import { InputError } from '../errors.js';
import { Rng } from '../util/rng.js';
import { readRaters, tokenHash, writeRaters, type Rater } from './study-files.js';

export const RATER_NAME = /^[A-Za-z0-9][A-Za-z0-9._@-]{0,59}$/;

/**
 * Adds a rater (or, with `rotate`, gives one a new link: the old one stops working) and returns the link token. Only
 * the token's sha256 is kept: the link is printed once and cannot be read back from the study folder.
 */
export function addRater(dir: string, name: string, rotate = false): string {
  if (!RATER_NAME.test(name)) throw new InputError(`rater "${name}": letters, digits, . _ @ - (at most 60), starting with a letter or digit`);
  const raters = readRaters(dir);
  const known = raters.find((r) => r.name === name);
  if (known && !rotate) throw new InputError(`rater ${name} exists; --rotate gives them a new link (the old one stops working)`);
  const token = randomBytes(24).toString('base64url');
  const entry: Rater = { name, token_sha256: tokenHash(token), added: new Date().toISOString() };
  writeRaters(dir, known ? raters.map((r) => (r.name === name ? entry : r)) : [...raters, entry]);
  return token;
}

/** The rater a link token belongs to, or undefined. */
export function raterOf(dir: string, token: string): Rater | undefined {
  const h = tokenHash(token);
  return readRaters(dir).find((r) => r.token_sha256 === h);
}

/** Each rater's own order of the pairs (seeded by the study seed and the rater's name), so position in the queue averages out. */
export function raterOrder(items: string[], seed: number, rater: string): string[] {
  let h = seed >>> 0;
  for (const ch of rater) h = Math.imul(h ^ ch.codePointAt(0)!, 0x01000193) >>> 0;
  return new Rng(h).shuffle([...items]);
}
