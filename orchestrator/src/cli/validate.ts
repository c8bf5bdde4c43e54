import { checkTaskData, taskBytes, VALIDATE_DATA_MAX_BYTES } from '../dataset/check.js';
import { formatDataProblem } from '../dataset/data-error.js';
import { RecipeError, formatProblem } from '../recipe/recipe-error.js';
import { EXIT, recipeOptionHelp, recipeOptions, type CommandImpl } from './command.js';
import { resolveFromArgs } from './recipe-args.js';

const mib = (bytes: number) => `${(bytes / 1024 / 1024).toFixed(1)} MiB`;

export const validate: CommandImpl = {
  async run(files, values, { out: print }) {
    const json = values.json === true;
    const results: Record<string, unknown>[] = [];
    const out = (line: string) => !json && print(line);
    let bad = 0;
    for (const file of files) {
      try {
        const r = resolveFromArgs(file, values);
        const bytes = taskBytes(r);
        const check = !values['no-data'] && (values.data === true || bytes <= VALIDATE_DATA_MAX_BYTES);
        if (!check) {
          const why = values['no-data'] ? '--no-data' : `${mib(bytes)} is over ${mib(VALIDATE_DATA_MAX_BYTES)}; --data checks them`;
          if (!values.quiet) out(`ok  ${file}  (run id ${r.run_id}; ${r.task_files.length} task file(s) not read: ${why})`);
          results.push({ file, ok: true, run_id: r.run_id, task_files: r.task_files.length, data_checked: false, why_not: why });
          continue;
        }
        const data = await checkTaskData(r);
        if (data.problems.length > 0) {
          bad++;
          results.push({ file, ok: false, run_id: r.run_id, data_problems: data.problems });
          out(`bad ${file}: ${data.problems.length} problem(s) in its task data`);
          for (const p of data.problems.slice(0, 50)) out(`  ${formatDataProblem(p)}`);
          if (data.problems.length > 50) out(`  ... and ${data.problems.length - 50} more`);
          continue;
        }
        if (!values.quiet) out(`ok  ${file}  (run id ${r.run_id}; ${data.tasks} tasks in ${data.files} file(s), ${mib(data.bytes)}, checked)`);
        results.push({ file, ok: true, run_id: r.run_id, data_checked: true, tasks: data.tasks, task_files: data.files, bytes: data.bytes });
      } catch (e) {
        if (!(e instanceof RecipeError)) throw e;
        bad++;
        results.push({ file, ok: false, problems: e.problems });
        out(`bad ${file}: ${e.problems.length} problem(s)`);
        for (const p of e.problems) out(`  ${formatProblem(p)}`);
      }
    }
    if (json) print(JSON.stringify(results, null, 2));
    return bad > 0 ? EXIT.usage : EXIT.ok;
  },
};
