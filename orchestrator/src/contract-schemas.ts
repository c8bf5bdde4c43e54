import { mkdirSync, writeFileSync } from 'node:fs';
import path from 'node:path';
import { fileURLToPath, pathToFileURL } from 'node:url';
import { z } from 'zod';
import { manifestSchema } from './dataset/manifest.js';
import { trainerConfigSchema } from './run/trainer-config.js';
import { trainerEventSchema } from './worker/trainer-events.js';

/**
 * The contracts between the orchestrator and the trainer, declared once in zod (here) and published as JSON Schema:
 * train.json (Contract 4), the trainer's events (Contract 4) and manifest.json (Contract 3). The trainer validates
 * its inputs and its own events against these files; a test fails when a checked-in copy is stale.
 * Regenerate with `npm run schemas`.
 */
export const CONTRACT_SCHEMAS = {
  'train.schema.json': trainerConfigSchema,
  'trainer-events.schema.json': trainerEventSchema,
  'manifest.schema.json': manifestSchema,
} as const;

/** Where the files live: the docs, and the trainer package (which reads them at run time). */
export const SCHEMA_DIRS = ['docs/schema', 'trainer-python/src/bsft_trainer/schema'];

/** File name -> its text. */
export function contractJsonSchemas(): Record<string, string> {
  return Object.fromEntries(
    Object.entries(CONTRACT_SCHEMAS).map(([file, schema]) => [file, `${JSON.stringify(z.toJSONSchema(schema, { io: 'output' }), null, 2)}\n`]),
  );
}

export function writeContractSchemas(root: string): string[] {
  const written: string[] = [];
  for (const dir of SCHEMA_DIRS) {
    mkdirSync(path.join(root, dir), { recursive: true });
    for (const [file, text] of Object.entries(contractJsonSchemas())) {
      writeFileSync(path.join(root, dir, file), text);
      written.push(path.join(dir, file));
    }
  }
  return written;
}

if (process.argv[1] && import.meta.url === pathToFileURL(process.argv[1]).href) {
  const root = path.resolve(path.dirname(fileURLToPath(import.meta.url)), '..');
  for (const f of writeContractSchemas(root)) console.log(`wrote ${f}`);
}
