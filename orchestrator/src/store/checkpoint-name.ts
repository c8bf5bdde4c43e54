/**
 * A checkpoint's folder name, `step-000120` (Contract 4; the trainer's `checkpoint.step_dir_name` writes the same):
 * built and parsed only here on this side.
 */
export function checkpointDirName(step: number): string {
  return `step-${String(step).padStart(6, '0')}`;
}

/** The step of a checkpoint folder name, or undefined for any other name (`step-000120.tmp` included). */
export function checkpointStep(name: string): number | undefined {
  const m = /^step-(\d{6,})$/.exec(name);
  return m ? Number(m[1]) : undefined;
}
