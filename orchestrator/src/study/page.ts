import { raterOrder } from './raters.js';
import type { Item, Rating, Study } from './study-files.js';
import type { Rubric } from './rubric.js';

/** What the page is given: nothing of the blinding key (no run, method, task or study name). */
export interface RaterView {
  rubric: Pick<Rubric, 'instructions' | 'questions' | 'comment'>;
  /** This rater's order of the pairs. */
  order: string[];
  /** This rater's own answers so far, by pair. */
  answered: Record<string, { answers: Record<string, string>; comment: string }>;
}

/** What one rater's page is given: the rubric's text, their order of the pairs, their own answers (`latest` ratings). */
export function raterView(study: Study, items: string[], latest: Rating[], rater: string): RaterView {
  const answered: RaterView['answered'] = {};
  for (const r of latest) if (r.rater === rater) answered[r.item] = { answers: r.answers, comment: r.comment };
  const { instructions, questions, comment } = study.rubric;
  return { rubric: { instructions, questions, comment }, order: raterOrder(items, study.seed, rater), answered };
}

/** An offline form carries its pairs and the ids that let `bsft study import` take its ratings back. */
export interface OfflineData extends RaterView {
  study_id: string;
  rater: string;
  items: Record<string, Item>;
}

/** `</script>` and U+2028/2029 cannot end or break the inline script that embeds the data. */
const inlineJson = (v: unknown) => JSON.stringify(v).replace(/</g, '\\u003c').replace(/\u2028/g, '\\u2028').replace(/\u2029/g, '\\u2029');

/**
 * The rating page: served per rater (`offline` null; data through the API), or written as a self-contained form
 * for a rater without network access (answers kept in the browser, downloaded as a file for `bsft study import`).
 * Keyboard: A / B / T (or 1 / 2 / 3) answer the current question and move on, Backspace goes back a question,
 * Enter saves the pair and opens the next unrated one, C writes a comment (Esc leaves it), ← / → move between pairs.
 */
export function ratingPage(offline: OfflineData | null): string {
  return `<!doctype html>
<html lang="en">
<head>
<meta charset="utf-8">
<meta name="viewport" content="width=device-width, initial-scale=1">
<meta name="robots" content="noindex">
<meta name="referrer" content="no-referrer">
<title>Pairwise rating</title>
<style>
body { font: 15px/1.45 system-ui, sans-serif; margin: 0; color: #1a1a1a; background: #f6f6f4; }
header { display: flex; justify-content: space-between; align-items: baseline; padding: 10px 20px; background: #fff; border-bottom: 1px solid #ddd; position: sticky; top: 0; }
header h1 { font-size: 17px; margin: 0; }
#progress { font-variant-numeric: tabular-nums; }
main, #done, #intro { max-width: 1200px; margin: 0 auto; padding: 12px 20px 40px; }
details { margin: 8px 0 12px; background: #fff; border: 1px solid #ddd; border-radius: 6px; padding: 6px 12px; }
kbd { border: 1px solid #bbb; border-bottom-width: 2px; border-radius: 3px; padding: 0 4px; font-size: 12px; background: #fafafa; }
.turn { background: #fff; border: 1px solid #e1e1e1; border-radius: 6px; padding: 8px 12px; margin: 6px 0; white-space: pre-wrap; }
.turn .who { font-weight: 600; font-size: 13px; color: #555; display: block; white-space: normal; }
.turn.system { background: #f0f0ec; font-size: 14px; }
.turn.assistant { border-left: 4px solid #8a8a8a; }
#replies { display: grid; grid-template-columns: 1fr 1fr; gap: 14px; margin: 14px 0; }
#replies article { background: #fff; border: 2px solid #c9c9c9; border-radius: 8px; padding: 10px 14px; }
#replies h2 { font-size: 15px; margin: 0 0 6px; }
#replies .text { white-space: pre-wrap; }
#replies .empty { color: #777; font-style: italic; }
.q { display: grid; grid-template-columns: 1fr auto; gap: 10px; align-items: center; padding: 6px 10px; border-radius: 6px; margin: 3px 0; background: #fff; border: 1px solid #e1e1e1; }
.q.current { outline: 3px solid #2b6cb0; }
.q button { min-width: 64px; margin-left: 4px; padding: 4px 8px; border: 1px solid #aaa; border-radius: 4px; background: #fff; cursor: pointer; font: inherit; }
.q button.on { background: #2b6cb0; color: #fff; border-color: #2b6cb0; }
textarea { width: 100%; box-sizing: border-box; min-height: 56px; font: inherit; margin-top: 8px; }
#actions { display: flex; gap: 8px; margin-top: 10px; }
#actions button { font: inherit; padding: 6px 12px; }
#status { margin-top: 8px; min-height: 1.4em; }
#status.error { color: #b00020; font-weight: 600; }
.saved { color: #276738; }
</style>
</head>
<body>
<header><h1>Which reply is better?</h1><div id="progress" aria-live="polite">loading…</div></header>
<main id="main" hidden>
  <details id="help"><summary>Instructions and keys</summary>
    <p id="instructions"></p>
    <p><kbd>A</kbd> <kbd>B</kbd> <kbd>T</kbd> (or <kbd>1</kbd> <kbd>2</kbd> <kbd>3</kbd>) answer the highlighted question and move on ·
    <kbd>Backspace</kbd> back a question · <kbd>Enter</kbd> save and go to the next unrated pair · <kbd>C</kbd> comment (<kbd>Esc</kbd> leaves it) ·
    <kbd>←</kbd> <kbd>→</kbd> previous / next pair. You can stop at any time and continue later with the same link.</p>
  </details>
  <section id="conversation" aria-label="conversation"></section>
  <section id="replies">
    <article id="reply-A"><h2>Reply A</h2><div class="text"></div></article>
    <article id="reply-B"><h2>Reply B</h2><div class="text"></div></article>
  </section>
  <section id="questions" aria-label="questions"></section>
  <textarea id="comment" placeholder="Comment (optional; C to write, Esc to leave)" hidden></textarea>
  <div id="actions">
    <button id="prev" type="button">← Previous pair</button>
    <button id="save" type="button">Save and next (Enter)</button>
    <button id="next" type="button">Next pair →</button>
    <button id="download" type="button" hidden>Download my ratings</button>
  </div>
  <div id="status" role="status"></div>
</main>
<div id="done" hidden><h2>Every pair is rated. Thank you.</h2><p>You can still go back with <kbd>←</kbd> and change an answer.</p></div>
<script>
"use strict";
const OFFLINE = ${inlineJson(offline)};
const token = OFFLINE ? null : location.pathname.split('/').filter(Boolean).pop();
const api = (p) => '/api/r/' + encodeURIComponent(token) + p;
const $ = (id) => document.getElementById(id);
const storeKey = OFFLINE ? 'bsft-study-' + OFFLINE.study_id + '-' + OFFLINE.rater : null;
let view, order, answered, index = 0, item = null, answers = {}, current = 0, shownAt = 0, ratingId = '', saving = false;

function randomId() {
  const b = new Uint8Array(16);
  crypto.getRandomValues(b);
  return Array.from(b, (x) => x.toString(16).padStart(2, '0')).join('');
}
function status(text, error) { const s = $('status'); s.textContent = text; s.className = error ? 'error' : ''; }
function progress() {
  const n = order.filter((i) => answered[i]).length;
  $('progress').textContent = n + ' of ' + order.length + ' rated' + (item ? ' · pair ' + (index + 1) : '');
}
function offlineSaved() {
  const kept = JSON.parse(localStorage.getItem(storeKey) || '{"ratings":[]}');
  return kept.ratings;
}

async function load() {
  if (OFFLINE) {
    view = OFFLINE;
    answered = Object.assign({}, OFFLINE.answered);
    for (const r of offlineSaved()) answered[r.item] = { answers: r.answers, comment: r.comment };
    $('download').hidden = false;
  } else {
    const res = await fetch(api('/state'), { cache: 'no-store' });
    if (!res.ok) { $('progress').textContent = 'This link is not valid.'; return; }
    view = await res.json();
    answered = view.answered;
  }
  order = view.order;
  $('instructions').textContent = view.rubric.instructions;
  $('comment').hidden = !view.rubric.comment;
  const first = order.findIndex((i) => !answered[i]);
  if (first < 0) { showDone(); return; }
  $('main').hidden = false;
  await show(first);
}

function showDone() {
  item = null;
  $('main').hidden = true;
  $('done').hidden = false;
  if (OFFLINE) { $('main').hidden = false; $('done').hidden = false; }
  progress();
}

async function fetchItem(id) {
  if (OFFLINE) return OFFLINE.items[id];
  for (;;) {
    try {
      const res = await fetch(api('/items/' + encodeURIComponent(id)), { cache: 'no-store' });
      if (res.ok) return await res.json();
      status('Cannot load this pair (' + res.status + ').', true);
      return null;
    } catch (e) {
      status('The server does not answer; retrying…', true);
      await new Promise((r) => setTimeout(r, 1500));
    }
  }
}

function turnEl(t) {
  const d = document.createElement('div');
  d.className = 'turn ' + t.role;
  const who = document.createElement('span');
  who.className = 'who';
  who.textContent = t.name ? t.name + ' (' + t.role + ')' : t.role;
  d.append(who, document.createTextNode(t.content));
  return d;
}

function replyText(el, text) {
  el.textContent = text || '(no reply: the agent says nothing)';
  el.className = text ? 'text' : 'text empty';
}

async function show(i) {
  index = (i + order.length) % order.length;
  const id = order[index];
  const it = await fetchItem(id);
  if (!it) return;
  item = it;
  $('main').hidden = false;
  $('done').hidden = true;
  $('conversation').replaceChildren(...item.conversation.map(turnEl));
  replyText($('reply-A').querySelector('.text'), item.A);
  replyText($('reply-B').querySelector('.text'), item.B);
  const prior = answered[id];
  answers = prior ? Object.assign({}, prior.answers) : {};
  $('comment').value = prior ? prior.comment : '';
  current = Math.max(0, view.rubric.questions.findIndex((q) => !answers[q.id]));
  ratingId = randomId();
  shownAt = Date.now();
  status(prior ? 'You rated this pair; saving again replaces your answers.' : '', false);
  drawQuestions();
  progress();
  window.scrollTo(0, 0);
}

function drawQuestions() {
  const rows = view.rubric.questions.map((q, qi) => {
    const row = document.createElement('div');
    row.className = 'q' + (qi === current ? ' current' : '');
    row.dataset.q = q.id;
    const label = document.createElement('div');
    label.textContent = (qi + 1) + '. ' + q.text;
    if (q.help) label.title = q.help;
    const buttons = document.createElement('div');
    for (const [v, text] of [['A', 'A'], ['B', 'B'], ['tie', 'Tie']]) {
      const b = document.createElement('button');
      b.type = 'button';
      b.textContent = text;
      b.dataset.v = v;
      if (answers[q.id] === v) b.className = 'on';
      b.addEventListener('click', () => { current = qi; answer(v); });
      buttons.append(b);
    }
    row.append(label, buttons);
    return row;
  });
  $('questions').replaceChildren(...rows);
}

function answer(v) {
  if ($('status').className === 'saved') status('', false);
  const qs = view.rubric.questions;
  answers[qs[current].id] = v;
  const next = qs.findIndex((q, qi) => qi > current && !answers[q.id]);
  current = next >= 0 ? next : Math.min(current + 1, qs.length - 1);
  drawQuestions();
}

async function save() {
  if (!item || saving) return;
  const missing = view.rubric.questions.filter((q) => !answers[q.id]);
  if (missing.length) { status('Answer every question first (' + missing.map((q) => q.id).join(', ') + ').', true); return; }
  const rating = { rating_id: ratingId, item: item.item, answers: Object.assign({}, answers), comment: $('comment').value.trim(), ms: Date.now() - shownAt };
  saving = true;
  try {
    if (OFFLINE) {
      const kept = offlineSaved();
      kept.push(Object.assign({ submitted_at: new Date().toISOString() }, rating));
      localStorage.setItem(storeKey, JSON.stringify({ ratings: kept }));
    } else {
      for (;;) {
        let res;
        try {
          res = await fetch(api('/ratings'), { method: 'POST', headers: { 'content-type': 'application/json' }, body: JSON.stringify(rating) });
        } catch (e) {
          status('Not saved yet: the server does not answer; retrying…', true);
          await new Promise((r) => setTimeout(r, 1500));
          continue;
        }
        if (res.ok) break;
        if (res.status >= 500) { status('Not saved yet (server error ' + res.status + '); retrying…', true); await new Promise((r) => setTimeout(r, 1500)); continue; }
        const body = await res.json().catch(() => ({}));
        status('Not saved: ' + (body.problems || [res.statusText]).join('; '), true);
        return;
      }
    }
    answered[item.item] = { answers: rating.answers, comment: rating.comment };
    const savedPair = index + 1;
    const next = order.findIndex((id, i) => i > index && !answered[id]);
    const wrap = order.findIndex((id) => !answered[id]);
    if (next < 0 && wrap < 0) showDone();
    else await show(next >= 0 ? next : wrap);
    // Names the pair that was saved, and goes as soon as this pair is answered: never "saved" beside unsaved answers.
    status('Pair ' + savedPair + ' saved.', false);
    $('status').className = 'saved';
  } finally {
    saving = false;
  }
}

function download() {
  const data = { format: 'bsft-study-offline-v1', study_id: OFFLINE.study_id, rater: OFFLINE.rater, ratings: offlineSaved() };
  const a = document.createElement('a');
  a.href = URL.createObjectURL(new Blob([JSON.stringify(data, null, 2)], { type: 'application/json' }));
  a.download = 'ratings-' + OFFLINE.rater + '.json';
  document.body.append(a);
  a.click();
  a.remove();
}

document.addEventListener('keydown', (e) => {
  if (e.ctrlKey || e.metaKey || e.altKey) return;
  if (e.target === $('comment')) { if (e.key === 'Escape') $('comment').blur(); return; }
  if (!item && e.key !== 'ArrowLeft') return;
  const k = e.key.toLowerCase();
  if (k === 'a' || k === '1') answer('A');
  else if (k === 'b' || k === '2') answer('B');
  else if (k === 't' || k === '3') answer('tie');
  else if (e.key === 'Backspace' || e.key === 'ArrowUp') { current = Math.max(0, current - 1); drawQuestions(); }
  else if (e.key === 'ArrowDown') { current = Math.min(view.rubric.questions.length - 1, current + 1); drawQuestions(); }
  else if (e.key === 'Enter') save();
  else if (k === 'c' && view.rubric.comment) $('comment').focus();
  else if (e.key === 'ArrowLeft') show(item ? index - 1 : order.length - 1);
  else if (e.key === 'ArrowRight') show(index + 1);
  else return;
  e.preventDefault();
});
$('save').addEventListener('click', save);
$('prev').addEventListener('click', () => show(index - 1));
$('next').addEventListener('click', () => show(index + 1));
$('download').addEventListener('click', download);
load();
</script>
</body>
</html>
`;
}
