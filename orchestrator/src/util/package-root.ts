import path from 'node:path';
import { fileURLToPath } from 'node:url';

/** Root of the bsft package (holds recipes/ and trainer-python/). */
export const PACKAGE_ROOT = path.resolve(path.dirname(fileURLToPath(import.meta.url)), '..', '..');
