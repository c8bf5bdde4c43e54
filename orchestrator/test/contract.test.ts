import { execFileSync } from 'node:child_process';
import { readFileSync } from 'node:fs';
import path from 'node:path';
import { describe, expect, it } from 'vitest';
import { contractJsonSchemas, SCHEMA_DIRS } from '../src/contract-schemas.js';
import { ROOT } from './helpers/cli.js';

describe('the contracts as JSON Schema (train.json, trainer events, manifest.json)', () => {
  it('the checked-in schema files are what the zod schemas generate (else: npm run schemas)', () => {
    const generated = contractJsonSchemas();
    expect(Object.keys(generated).sort()).toEqual(['manifest.schema.json', 'train.schema.json', 'trainer-events.schema.json']);
    for (const dir of SCHEMA_DIRS) {
      for (const [file, text] of Object.entries(generated)) {
        expect(readFileSync(path.join(ROOT, dir, file), 'utf8'), `${dir}/${file} is stale: run npm run schemas`).toBe(text);
      }
    }
  });

  it('the trainer package ships them (package data)', () => {
    const toml = readFileSync(path.join(ROOT, 'trainer-python', 'pyproject.toml'), 'utf8');
    expect(toml).toMatch(/\[tool\.setuptools\.package-data\][^[]*\nbsft_trainer = \["schema\/\*\.json"\]/);
    expect(execFileSync('python3', ['-c', 'import json,sys; [json.load(open(f)) for f in sys.argv[1:]]', ...SCHEMA_DIRS.map((d) => path.join(ROOT, d, 'train.schema.json'))]).toString()).toBe('');
  });
});
