import { table } from '../util/table.js';
import type { Estimate, ScoreReport } from './metrics.js';

export const pct = (v: number) => (Number.isFinite(v) ? (100 * v).toFixed(1) : 'n/a');
/** A kappa to two decimals, with its interval. */
export const kappa = (e: Estimate) => `${e.value.toFixed(2)}${e.ci ? ` [${e.ci[0].toFixed(2)}, ${e.ci[1].toFixed(2)}]` : ''}`;
export const est = (e: Estimate) => `${pct(e.value)}${e.ci ? ` [${pct(e.ci[0])}, ${pct(e.ci[1])}]` : ''}`;
/** A difference with its sign and interval: `+3.2 [1.0, 5.4]`. */
export const signedEst = (e: Estimate) => `${e.value >= 0 ? '+' : ''}${est(e)}`;

/** The terminal view of one score. */
export function formatScore(label: string, r: ScoreReport): string[] {
  const out = [`${label}${r.split ? ` — split ${r.split}` : ''}: ${r.n_tasks} tasks, ${r.n_predictions} predictions`];
  if (r.missing.count) out.push(`  ${r.missing.count} task(s) without a prediction, counted as wrong (e.g. ${r.missing.ids.slice(0, 3).join(', ')})`);
  if (r.no_behavior) out.push(`  ${r.no_behavior} prediction(s) with no behavior token first, counted as wrong`);
  out.push(`  behavior macro-F1 ${est(r.overall.macro_f1)}   accuracy ${est(r.overall.accuracy)}   (95% CI, ${r.bootstrap.resamples} case resamples)`);
  out.push(`  majority baseline (always ${r.majority.behavior}): macro-F1 ${pct(r.majority.macro_f1)}   accuracy ${pct(r.majority.accuracy)}` +
    `   -> ${r.overall.macro_f1.value > r.majority.macro_f1 ? `${pct(r.overall.macro_f1.value - r.majority.macro_f1)} points above it` : 'not above it'}`);
  const src = r.label_source;
  if (src && (src.judge > 0 || r.judge)) out.push(`  labels: ${src.token} from the first token, ${src.judge} from the judge, ${src.none} without one`);
  if (r.tag) {
    out.push(`  reply tags (eval.reply_tag): macro-F1 ${est(r.tag.macro_f1)}   accuracy ${est(r.tag.accuracy)}` +
      `${r.tag.untagged ? `   ${r.tag.untagged} repl${r.tag.untagged === 1 ? 'y' : 'ies'} without a tag, counted wrong` : ''}` +
      `${r.tag.judge_agreement ? `; tag vs judge on ${r.tag.judge_agreement.n} replies: agreement ${est(r.tag.judge_agreement.accuracy)}, Cohen's kappa ${kappa(r.tag.judge_agreement.kappa)}` : ''}`);
  }
  if (r.judge) {
    const j = r.judge;
    out.push(`  judge ${j.model} (prompt ${j.prompt_version}) on the ${j.validity.n} gold replies: accuracy ${est(j.validity.accuracy)}, Cohen's kappa ${kappa(j.validity.kappa)}` +
      `${j.validity.unparseable ? `; ${j.validity.unparseable} answer(s) unparseable, counted wrong` : ''}`);
    if (j.agreement) out.push(`  token vs judge on ${j.agreement.n} replies: agreement ${est(j.agreement.accuracy)}, Cohen's kappa ${kappa(j.agreement.kappa)}`);
  }
  out.push('');
  out.push(...table([
    ['behavior', 'precision', 'recall', 'F1 [95% CI]', 'support', 'predicted', 'flags'],
    ...Object.entries(r.overall.per_class).map(([b, c]) => [b, pct(c.precision), pct(c.recall), est(c.f1), String(c.support), String(c.predicted), c.flags.join('; ')]),
  ]).map((l) => `  ${l}`));
  out.push('');
  out.push('  confusion (rows gold, columns predicted):');
  out.push(...table([['', ...r.behaviors, 'none'], ...r.overall.confusion.map((row, g) => [r.behaviors[g]!, ...row.map(String)])]).map((l) => `    ${l}`));
  out.push('');
  out.push(...table([
    ['category', 'group', 'n', 'accuracy [95% CI]', 'macro-F1'],
    ...Object.entries(r.per_category).map(([c, s]) => [c, s.group, String(s.n), est(s.accuracy), pct(s.macro_f1)]),
    ...Object.entries(r.per_group).map(([g, s]) => [`group ${g}`, g, String(s.n), est(s.accuracy), pct(s.macro_f1)]),
  ]).map((l) => `  ${l}`));
  if (r.hard) out.push('', `  hard subset (${r.hard.n}): macro-F1 ${est(r.hard.macro_f1)}, accuracy ${est(r.hard.accuracy)}`);
  if (r.hard_subset) out.push(`${r.hard ? '' : '\n'}  Hard subset ${r.hard_subset.name} (${r.hard_subset.n} tasks): macro-F1 ${est(r.hard_subset.macro_f1)}, accuracy ${est(r.hard_subset.accuracy)}`);
  if (r.answers) out.push(`  answer accuracy (${r.answers.n} tasks with an answer): ${est(r.answers.accuracy)}`);
  for (const [b, f] of Object.entries(r.forced)) {
    out.push(`  forced ${b}: ${f.n} replies; steering accuracy ${f.steering_accuracy === null ? `n/a (${f.judged} judged)` : `${pct(f.steering_accuracy)} of ${f.judged} judged`}` +
      `${f.answer_accuracy === null ? '' : `; answer accuracy ${pct(f.answer_accuracy)}`}`);
  }
  out.push('', ...r.conventions.map((c) => `  note: ${c}`));
  return out;
}
