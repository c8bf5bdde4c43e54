import { est, kappa, pct } from '../score/format.js';
import type { StudyResult, WinTieLoss } from './stats.js';

/** The study's tables, shared by the terminal, Markdown and HTML reports (first row: header). */
const wtl = (x: WinTieLoss) => [est(x.win), est(x.tie), est(x.loss)];

export function preferenceRows(s: StudyResult): string[][] {
  return [
    ['first run vs second run', 'question', 'tasks', 'ratings', 'first preferred', 'tie', 'second preferred'],
    ...s.pairs.flatMap((p) => s.questions.map((q) => [`${p.a} vs ${p.b}`, q.id, String(p.tasks), String(p.questions[q.id]!.n), ...wtl(p.questions[q.id]!)])),
  ];
}

export function groupRows(s: StudyResult): string[][] {
  return [
    ['first run vs second run', 'tasks calling for', 'ratings', 'first preferred', 'tie', 'second preferred'],
    ...s.pairs.flatMap((p) => Object.entries(p.groups).map(([g, x]) => [`${p.a} vs ${p.b}`, g, String(x.n), ...wtl(x)])),
  ];
}

export function rankingRows(s: StudyResult): string[][] {
  return [['rank', 'run', 'Bradley–Terry score [95% CI]'], ...(s.bradley_terry ?? []).map((r) => [String(r.rank), r.label, kappa(r.score)])];
}

export function agreementRows(s: StudyResult): string[][] {
  return [
    ['question', 'pairs rated by 2+', "Krippendorff's alpha", "Cohen's kappa (2 raters)"],
    ...s.questions.map((q) => {
      const a = s.agreement[q.id]!;
      return [q.id, String(a.units), a.units ? kappa(a.alpha) : '-', a.cohen ? kappa(a.cohen.kappa) : '-'];
    }),
  ];
}

export function raterRows(s: StudyResult): string[][] {
  return [['rater', 'ratings', 'median seconds per pair'], ...s.raters.map((r) => [r.name, String(r.ratings), r.median_s.toFixed(1)])];
}

export function positionLine(s: StudyResult): string {
  const b = s.position_bias;
  return b.n
    ? `position bias: the left reply (A) won ${pct(b.left_share.value)}%${b.left_share.ci ? ` [${pct(b.left_share.ci[0])}, ${pct(b.left_share.ci[1])}]` : ''} of ${b.n} overall answers that were not a tie (exact binomial test against 50%: p = ${b.p_value!.toPrecision(2)})`
    : 'position bias: no overall answer other than a tie yet';
}

export function studyHeadline(s: StudyResult): string {
  return `blind pairwise study "${s.name}" (split ${s.split}, rubric ${s.rubric_version}): ${s.ratings} ratings of ${s.rated_items} of ${s.items} pairs by ${s.raters.length} rater(s); ` +
    `95% intervals from ${s.resamples} bootstrap resamples of raters and tasks; shares in percent of each pair\'s ratings, whichever side each reply was shown on`;
}

export const studyConventions = (s: StudyResult) => [
  `"First preferred" is how often the first-named run's reply was chosen over the second's (sides were drawn at random per pair).`,
  s.bradley_terry ? 'Bradley–Terry scores: log-strengths from the overall preference, mean 0; ties count half a win each way, and each pair of runs starts from one tie.' : '',
  `Comments left with the ratings: ${s.comments} (in the export).`,
].filter(Boolean);

type Render = (rows: string[][]) => string[];

/** The study section in any of the report's forms, given how that form draws a table and a heading (and a chart of the preferences, where it draws one). */
export function studySection(s: StudyResult, table: Render, heading: (text: string) => string, para: (text: string) => string,
  chart?: (s: StudyResult) => string): string[] {
  const out = [heading('Blind pairwise study'), para(studyHeadline(s)), ...table(preferenceRows(s)), ...(chart ? [chart(s)] : [])];
  if (s.pairs.some((p) => Object.keys(p.groups).length)) out.push(heading('Overall preference by the behavior the task calls for'), ...table(groupRows(s)));
  if (s.bradley_terry) out.push(heading('Ranking (Bradley–Terry, overall preference)'), ...table(rankingRows(s)));
  out.push(heading('Agreement between raters'), ...table(agreementRows(s)), para(positionLine(s)), heading('Raters'), ...table(raterRows(s)));
  for (const c of studyConventions(s)) out.push(para(c));
  return out;
}
