import { defaultPolicy } from '../recipe/path-policy.js';
import { resolveRecipe, type ResolvedRecipe } from '../recipe/resolve.js';
import type { OptionValues } from './command.js';

/** Resolves a recipe named on the command line with the common --set and --allow options. */
export function resolveFromArgs(file: string, values: OptionValues): ResolvedRecipe {
  return resolveRecipe(file, {
    set: (values.set as string[] | undefined) ?? [],
    policy: defaultPolicy((values.allow as string[] | undefined) ?? []),
  });
}
