// The inbox controller: sign-in, state, routing (#/…), live updates, decisions, keyboard.
// The API key lives in sessionStorage only (this tab, until sign-out or the tab closes).

import { Api, LiveStream, PENDING_MOST } from './api.js';
import { ACTION_LABELS, ago, h, humanize, replace, updateCountdown } from './render.js';
import {
  checkpointDetail, checkpointRow, empty, executionDetail, executionRow, timeline, timelineItem,
} from './views.js';

const KEY_ITEM = 'hitlhook.key';
const NAME_ITEM = 'hitlhook.reviewer';
const CLOSING = new Set(['checkpoint.decided', 'checkpoint.expired', 'checkpoint.cancelled']);
const $ = (id) => document.getElementById(id);

const state = {
  api: null,
  stream: null,
  identity: null,
  reviewer: '',
  pending: new Map(),
  /** Older pending checkpoints exist than were loaded (see `PENDING_MOST`). */
  pendingMore: false,
  closed: new Map(),
  closedIds: new Set(),
  executions: [],
  drafts: new Map(),
  decidedHere: new Set(),
  route: { tab: 'pending', id: null },
  refreshing: null,
  detail: null,
  loading: null,
  executionsTimer: null,
};

// ------------------------------------------------------------------ sign in / out

function showSignIn(message = '') {
  $('app').hidden = true;
  $('signin').hidden = false;
  const error = $('signin-error');
  error.hidden = !message;
  error.textContent = message;
  $('signin-key').value = '';
  $('signin-name').value = sessionStorage.getItem(NAME_ITEM) || '';
  $('signin-key').focus();
}

function signInMessage(e) {
  if (e.status === 401) return 'This API key was not recognised. Check that you pasted all of it, or ask an administrator for a new key.';
  if (e.status === 403) return 'This key cannot review: it can only send events. Ask an administrator for a key with the reviewer scope.';
  if (e.status === 0) return e.message;
  return `Sign-in failed: ${e.message}`;
}

async function signIn(event) {
  event.preventDefault();
  const key = $('signin-key').value.trim();
  const name = $('signin-name').value.trim();
  const error = $('signin-error');
  if (!key) {
    error.textContent = 'Enter an API key.';
    error.hidden = false;
    $('signin-key').setAttribute('aria-invalid', 'true');
    $('signin-key').focus();
    return;
  }
  const button = $('signin-submit');
  button.disabled = true;
  button.textContent = 'Signing in…';
  try {
    const api = new Api(key);
    const minted = await api.streamToken();
    sessionStorage.setItem(KEY_ITEM, key);
    if (name) sessionStorage.setItem(NAME_ITEM, name); else sessionStorage.removeItem(NAME_ITEM);
    start(api, minted);
  } catch (e) {
    error.textContent = signInMessage(e);
    error.hidden = false;
    $('signin-key').setAttribute('aria-invalid', 'true');
    $('signin-key').select();
  } finally {
    button.disabled = false;
    button.textContent = 'Sign in';
  }
}

function signOut(message = '') {
  state.stream?.stop();
  sessionStorage.removeItem(KEY_ITEM);
  sessionStorage.removeItem(NAME_ITEM);
  Object.assign(state, { api: null, stream: null, identity: null, reviewer: '', executions: [], detail: null, pendingMore: false });
  for (const collection of [state.pending, state.closed, state.closedIds, state.drafts, state.decidedHere]) collection.clear();
  replace($('list'));
  replace($('detail-pane'));
  showSignIn(message);
}

function start(api, minted) {
  state.api = api;
  state.reviewer = sessionStorage.getItem(NAME_ITEM) || '';
  api.onUnauthorized = () => signOut('Your session ended: the API key was revoked or is no longer valid.');
  setIdentity(minted);
  $('signin').hidden = true;
  $('app').hidden = false;
  state.stream = new LiveStream(api, { onMessage, onStatus: setLiveStatus, onIdentity: setIdentity });
  state.stream.start(minted.token);
  route();
}

function setIdentity(minted) {
  state.identity = { name: minted.key_name, scope: minted.scope };
  const who = state.reviewer ? [h('strong', {}, state.reviewer), ' · '] : [];
  replace($('whoami'), who, `key ${minted.key_name}`, h('span', { class: 'scope' }, minted.scope));
}

function deciderLabel() {
  return state.reviewer || `key:${state.identity?.name ?? ''}`;
}

const STATUS_TEXT = { live: 'Live', connecting: 'Connecting…', reconnecting: 'Reconnecting…' };

function setLiveStatus(status) {
  const el = $('live-status');
  el.dataset.state = status;
  el.textContent = STATUS_TEXT[status] || status;
}

// ------------------------------------------------------------------ data

/** Reloads what the current view shows; live events arriving meanwhile are re-applied after. */
async function refresh() {
  if (!state.api) return;
  const ops = [];
  state.refreshing = ops;
  try {
    const [pending, recent] = await Promise.all([state.api.pending(), state.api.recent()]);
    state.pending = new Map(pending.items.filter((cp) => !state.closedIds.has(cp.checkpoint_id)).map((cp) => [cp.checkpoint_id, cp]));
    state.pendingMore = pending.more;
    state.closed = new Map(recent.items.filter((cp) => cp.status !== 'pending').map((cp) => [cp.checkpoint_id, cp]));
    if (state.route.tab === 'executions') state.executions = (await state.api.executions()).items;
  } catch (e) {
    if (e.status !== 401) toast(`Could not load the inbox: ${e.message}`, 'error');
  } finally {
    state.refreshing = null;
  }
  for (const op of ops) op();
  render();
}

function onMessage(message) {
  if (message.type === 'ready') refresh();
  else if (message.type === 'event') applyEvent(message.event);
  else if (message.type === 'resync' && message.reason === 'revoked') {
    signOut('Your session ended: the API key was revoked.');
  }
}

function applyEvent(ev) {
  const apply = () => applyEventNow(ev);
  if (state.refreshing) state.refreshing.push(apply);
  apply();
  appendHistory(ev);
  if (state.route.tab === 'executions') refreshExecutionsSoon();
}

/** Executions change with every event: refetch them at most every 400 ms while in view. */
function refreshExecutionsSoon() {
  if (state.executionsTimer) return;
  state.executionsTimer = setTimeout(async () => {
    state.executionsTimer = null;
    if (!state.api || state.route.tab !== 'executions') return;
    try {
      state.executions = (await state.api.executions()).items;
      const d = state.detail;
      if (d?.redraw) {
        const fresh = await state.api.execution(d.kickoffId);
        if (state.detail === d) d.redraw(fresh);
      }
      render();
    } catch { /* the next event or reconnect refreshes again */ }
  }, 400);
}

function applyEventNow(ev) {
  const id = ev.checkpoint_id;
  if (ev.event_type === 'checkpoint.required' && id && !state.closedIds.has(id) && !state.pending.has(id)) {
    state.api.checkpoint(id).then((cp) => {
      if (cp.status !== 'pending' || state.closedIds.has(id) || state.pending.has(id)) return;
      state.pending.set(id, cp);
      render();
      toast(`New: ${humanize(cp.checkpoint_name)}${cp.kickoff_id ? ` · ${cp.kickoff_id}` : ''}`);
    }).catch(() => {});
  } else if (CLOSING.has(ev.event_type) && id) {
    // Re-applied after a refresh that raced with it, so it must be idempotent; it speaks once.
    const first = !state.closedIds.has(id);
    state.closedIds.add(id);
    const before = state.pending.get(id) || state.closed.get(id);
    state.pending.delete(id);
    const p = ev.payload || {};
    const closed = {
      ...(before || { checkpoint_id: id, checkpoint_name: p.checkpoint_name || id, kickoff_id: ev.kickoff_id, context: null, allowed_actions: [], created_at: ev.received_at }),
      status: p.status || ev.event_type.split('.')[1], decision: p.decision || null, closed_reason: p.closed_reason || null,
    };
    state.closed = new Map([[id, closed], ...state.closed]);
    if (first && !state.decidedHere.has(id) && before) {
      const what = p.decision ? `decided: ${ACTION_LABELS[p.decision.action]} by ${p.decision.decided_by}${p.decision.channel ? ` via ${p.decision.channel}` : ''}`
        : ev.event_type === 'checkpoint.expired' ? 'expired' : 'was cancelled';
      toast(`${humanize(closed.checkpoint_name)} ${what}`);
    }
    render();
  }
}

/** Adds a live event to the history shown in the detail pane, if it belongs there. */
function appendHistory(ev) {
  const d = state.detail;
  if (!d || !d.kickoffId || ev.kickoff_id !== d.kickoffId || !d.timelineEl) return;
  if (d.timelineEl.querySelector(`[data-seq="${ev.seq}"]`)) return;
  d.timelineEl.querySelector('.muted')?.remove();
  d.timelineEl.append(timelineItem(ev));
}

// ------------------------------------------------------------------ routing and rendering

function route() {
  const parts = location.hash.replace(/^#\/?/, '').split('/').map(decodeURIComponent);
  const [head, id] = parts;
  const tab = head === 'closed' ? 'closed' : head === 'executions' ? 'executions' : 'pending';
  const previous = state.route.tab;
  state.route = { tab, id: id || null };
  for (const t of ['pending', 'closed', 'executions']) {
    $(`tab-${t}`).setAttribute('aria-current', t === tab ? 'page' : 'false');
  }
  if (tab === 'executions' && previous !== 'executions' && state.api) {
    state.api.executions().then((r) => { state.executions = r.items; render(); }).catch(() => {});
  }
  render();
}

function navigate(hash) {
  if (location.hash !== hash) location.hash = hash;
  else route();
}

function matches(cp, q) {
  if (!q) return true;
  const hay = [cp.checkpoint_name, humanize(cp.checkpoint_name), cp.checkpoint_id, cp.kickoff_id,
    JSON.stringify(cp.context), cp.decision?.decided_by].join(' ').toLowerCase();
  return q.split(/\s+/).every((word) => hay.includes(word));
}

function visibleItems() {
  const q = $('search').value.trim().toLowerCase();
  if (state.route.tab === 'executions') return state.executions.filter((ex) => !q || ex.kickoff_id.toLowerCase().includes(q));
  const source = state.route.tab === 'closed' ? [...state.closed.values()] : [...state.pending.values()];
  const name = $('filter-name').value;
  const kickoff = $('filter-kickoff').value;
  const items = source.filter((cp) => (!name || cp.checkpoint_name === name) && (!kickoff || cp.kickoff_id === kickoff) && matches(cp, q));
  const sort = $('sort').value;
  const time = (cp) => Date.parse(cp.created_at);
  const expiry = (cp) => (cp.expires_at ? Date.parse(cp.expires_at) : Infinity);
  const closedAt = (cp) => Date.parse(cp.decision?.decided_at || cp.created_at);
  if (state.route.tab === 'closed') items.sort((a, b) => closedAt(b) - closedAt(a));
  else if (sort === 'newest') items.sort((a, b) => time(b) - time(a));
  else if (sort === 'expiring') items.sort((a, b) => expiry(a) - expiry(b) || time(a) - time(b));
  else items.sort((a, b) => time(a) - time(b));
  return items;
}

function fillSelect(select, values, allLabel) {
  const current = select.value;
  const sorted = [...new Set(values.filter(Boolean))].sort();
  replace(select, h('option', { value: '' }, allLabel), sorted.map((v) => h('option', { value: v }, v)));
  select.value = sorted.includes(current) ? current : '';
}

function render() {
  if (!state.api) return;
  const tab = state.route.tab;
  const count = `${state.pending.size}${state.pendingMore ? '+' : ''}`;
  $('pending-count').textContent = count;
  document.title = state.pending.size ? `(${count}) hitlhook · Review inbox` : 'hitlhook · Review inbox';
  const all = tab === 'closed' ? [...state.closed.values()] : [...state.pending.values()];
  $('list-pane').classList.toggle('is-executions', tab === 'executions');
  $('list-pane').classList.toggle('is-closed', tab === 'closed');
  if (tab !== 'executions') {
    fillSelect($('filter-name'), all.map((cp) => cp.checkpoint_name), 'All names');
    fillSelect($('filter-kickoff'), all.map((cp) => cp.kickoff_id), 'All runs');
  }
  const items = visibleItems();
  const selected = state.route.id;
  const list = $('list');
  const focused = document.activeElement?.closest?.('#list') ? document.activeElement.dataset.id : null;
  if (tab === 'executions') {
    replace(list, items.map((ex) => executionRow(ex, { selected: ex.kickoff_id === selected, onSelect: (id) => navigate(`#/executions/${encodeURIComponent(id)}`) })));
  } else {
    const base = tab === 'closed' ? '#/closed/' : '#/checkpoint/';
    replace(list, items.map((cp) => checkpointRow(cp, { selected: cp.checkpoint_id === selected, onSelect: (id) => navigate(base + encodeURIComponent(id)) })));
  }
  if (focused) list.querySelector(`[data-id="${CSS.escape(focused)}"]`)?.focus();
  const noun = tab === 'executions' ? 'execution' : tab === 'closed' ? 'decided checkpoint' : 'pending checkpoint';
  $('list-summary').textContent = (items.length === all.length || tab === 'executions'
    ? `${items.length} ${noun}${items.length === 1 ? '' : 's'}`
    : `${items.length} of ${all.length} ${noun}s match`)
    + (tab === 'pending' && state.pendingMore
      ? ` · more are waiting: the oldest ${PENDING_MOST.toLocaleString('en')} are loaded (and new ones as they come); reload after deciding some`
      : '');
  if (!items.length) {
    list.append(h('li', { class: 'list-empty' }, tab === 'pending' && !all.length
      ? 'Nothing is waiting for a human. New checkpoints appear here the moment an agent asks.'
      : 'Nothing matches these filters.'));
  }
  renderDetail(items);
}

function renderDetail(items) {
  const { tab, id } = state.route;
  const pane = $('detail-pane');
  document.body.classList.toggle('detail-open', Boolean(id));
  if (tab === 'executions') {
    if (!id) { state.detail = null; replace(pane, empty('Executions', 'Pick an execution to see its checkpoints and full audit trail.', '⎇')); return; }
    if (state.detail?.key !== `execution:${id}`) loadExecution(id);
    return;
  }
  const cp = id ? state.pending.get(id) || state.closed.get(id) : null;
  if (!cp) {
    state.detail = null;
    if (id) loadCheckpoint(id);
    else replace(pane, tab === 'pending' && !state.pending.size
      ? empty('All caught up', 'No checkpoint is waiting for a decision. This page updates live.')
      : empty('Select a checkpoint', `${items.length ? 'Pick one from the list, or press j.' : 'Nothing to show.'}`, '☰'));
    return;
  }
  const key = `checkpoint:${id}:${cp.status}`;
  if (state.detail?.key === key) return;
  const history = h('ol', { class: 'timeline' }, h('li', { class: 'muted small' }, 'Loading…'));
  const detail = checkpointDetail(cp, {
    feedback: state.drafts.get(id) || '',
    onDraft: (text) => state.drafts.set(id, text),
    onDecide: (action, textarea, error) => decide(cp, action, textarea, error),
    onBack: () => navigate(tab === 'closed' ? '#/closed' : '#/'),
    deciderLabel: deciderLabel(),
    history,
  });
  state.detail = { key, kickoffId: cp.kickoff_id, timelineEl: history };
  replace(pane, detail);
  pane.scrollTop = 0;
  if (cp.kickoff_id) loadHistory(cp.kickoff_id, history);
}

async function loadHistory(kickoffId, el) {
  try {
    const page = await state.api.events(kickoffId, null, 500);
    if (state.detail?.timelineEl !== el) return;
    const fresh = timeline(page.items);
    el.replaceChildren(...fresh.childNodes);
  } catch { el.replaceChildren(h('li', { class: 'muted small' }, 'History unavailable.')); }
}

async function loadCheckpoint(id) {
  const pane = $('detail-pane');
  if (state.loading === id) return;
  state.loading = id;
  try {
    const cp = await state.api.checkpoint(id);
    if (state.route.id !== id) return;
    (cp.status === 'pending' ? state.pending : state.closed).set(id, cp);
    render();
  } catch (e) {
    if (state.route.id === id) replace(pane, empty('Not found', e.message, '?'));
  } finally {
    state.loading = null;
  }
}

async function loadExecution(kickoffId) {
  const pane = $('detail-pane');
  state.detail = { key: `execution:${kickoffId}`, kickoffId, timelineEl: null };
  replace(pane, empty('Loading…', kickoffId, '…'));
  try {
    const [status, page] = await Promise.all([state.api.execution(kickoffId), state.api.events(kickoffId, null, 200)]);
    if (state.detail?.key !== `execution:${kickoffId}`) return;
    const events = timeline(page.items);
    let cursor = page.next_cursor;
    const more = h('button', { type: 'button', class: 'btn btn-small', hidden: !cursor }, 'Load more');
    more.addEventListener('click', async () => {
      more.disabled = true;
      const next = await state.api.events(kickoffId, cursor, 200);
      for (const ev of next.items) if (!events.querySelector(`[data-seq="${ev.seq}"]`)) events.append(timelineItem(ev));
      cursor = next.next_cursor;
      more.hidden = !cursor;
      more.disabled = false;
    });
    state.detail.timelineEl = events;
    state.detail.redraw = (fresh) => replace(pane, executionDetail(fresh, events, { more, onBack: () => navigate('#/executions') }));
    state.detail.redraw(status);
  } catch (e) {
    replace(pane, empty('Execution unavailable', e.message, '?'));
  }
}

// ------------------------------------------------------------------ deciding

const CONFIRM = {
  continue: (cp) => ['Continue?', `The agent goes on with its work after “${humanize(cp.checkpoint_name)}”.`],
  revise: () => ['Send back for revision?', 'The agent redoes this step with your feedback:'],
  skip: () => ['Skip this review?', 'The agent goes on; the checkpoint is recorded as skipped.'],
  stop: (cp) => [`Stop ${cp.kickoff_id ? `execution ${cp.kickoff_id}` : 'this execution'}?`,
    'The execution ends and its other pending checkpoints are cancelled. This cannot be undone.'],
};

function confirmDialog(cp, action, feedback) {
  const dialog = $('confirm');
  const [title, text] = CONFIRM[action](cp);
  $('confirm-title').textContent = title;
  replace($('confirm-body'), h('p', {}, text),
    feedback ? h('blockquote', { class: 'confirm-feedback' }, feedback) : null);
  const ok = $('confirm-ok');
  ok.textContent = ACTION_LABELS[action];
  ok.className = `btn btn-action btn-${action}`;
  return new Promise((resolve) => {
    const form = dialog.querySelector('form');
    const done = (answer) => { form.onsubmit = null; dialog.onclose = null; if (dialog.open) dialog.close(); resolve(answer); };
    form.onsubmit = (e) => { e.preventDefault(); done(e.submitter?.value === 'ok'); };
    dialog.onclose = () => done(false);
    dialog.showModal();
    ok.focus();
  });
}

async function decide(cp, action, textarea, error) {
  const feedback = textarea.value.trim();
  if (action === 'revise' && !feedback) {
    error.textContent = 'Write what the agent should change before choosing Revise.';
    error.hidden = false;
    textarea.setAttribute('aria-invalid', 'true');
    textarea.focus();
    return;
  }
  if (!(await confirmDialog(cp, action, feedback))) return;
  const body = { action, channel: 'inbox' };
  if (feedback) body.feedback = feedback;
  if (state.reviewer) body.decided_by = state.reviewer;
  const buttons = document.querySelectorAll('.decision-card .btn-action');
  buttons.forEach((b) => { b.disabled = true; });
  state.decidedHere.add(cp.checkpoint_id);
  try {
    const decided = await state.api.decide(cp.checkpoint_id, body);
    state.drafts.delete(cp.checkpoint_id);
    state.closedIds.add(cp.checkpoint_id);
    state.pending.delete(cp.checkpoint_id);
    state.closed = new Map([[cp.checkpoint_id, decided], ...state.closed]);
    toast(`${ACTION_LABELS[action]}: ${humanize(cp.checkpoint_name)} — sent`, 'success');
    selectNext(cp.checkpoint_id);
  } catch (e) {
    state.decidedHere.delete(cp.checkpoint_id);
    if (e.code === 'already_decided' || e.code === 'checkpoint_closed') {
      const current = e.problem.checkpoint;
      if (current) { state.pending.delete(current.checkpoint_id); state.closed.set(current.checkpoint_id, current); }
      toast(e.problem.decision ? `Already decided: ${ACTION_LABELS[e.problem.decision.action]} by ${e.problem.decision.decided_by}` : e.message, 'error');
      render();
    } else {
      error.textContent = e.message;
      error.hidden = false;
      buttons.forEach((b) => { b.disabled = !cp.allowed_actions.includes(b.dataset.action); });
    }
  }
}

/** After deciding, go to the next pending item (or the empty state). */
function selectNext(decidedId) {
  const items = visibleItems();
  const next = items.find((cp) => cp.checkpoint_id !== decidedId);
  navigate(next ? `#/checkpoint/${encodeURIComponent(next.checkpoint_id)}` : '#/');
}

// ------------------------------------------------------------------ toasts, clock, keyboard

function toast(text, kind = 'info') {
  const el = h('div', { class: `toast toast-${kind}` }, text);
  $('toasts').append(el);
  setTimeout(() => el.classList.add('is-leaving'), 5000);
  setTimeout(() => el.remove(), 5600);
  while ($('toasts').children.length > 4) $('toasts').firstChild.remove();
}

function tick() {
  const now = Date.now();
  document.querySelectorAll('[data-expires]').forEach((el) => updateCountdown(el, now));
  document.querySelectorAll('[data-ago]').forEach((el) => { el.textContent = ago(el.dataset.ago, now); });
}

function moveSelection(step) {
  const buttons = [...$('list').querySelectorAll('button.item')];
  if (!buttons.length) return;
  const current = buttons.findIndex((b) => b.dataset.id === state.route.id);
  const next = buttons[Math.max(0, Math.min(buttons.length - 1, current + step))] || buttons[0];
  next.focus();
  next.click();
}

function onKey(e) {
  if ($('app').hidden || e.ctrlKey || e.metaKey || e.altKey) return;
  const typing = e.target.closest('input, textarea, select, [contenteditable]');
  if (e.key === 'Escape' && typing) { e.target.blur(); return; }
  if (typing || document.querySelector('dialog[open]')) return;
  const press = (action) => document.querySelector(`.decision-card [data-action="${action}"]:not(:disabled)`)?.click();
  const handlers = {
    j: () => moveSelection(1), ArrowDown: () => moveSelection(1),
    k: () => moveSelection(-1), ArrowUp: () => moveSelection(-1),
    '/': () => $('search').focus(),
    c: () => press('continue'), s: () => press('skip'), x: () => press('stop'),
    r: () => {
      const textarea = document.querySelector('.decision-card textarea');
      if (textarea && !textarea.value.trim()) textarea.focus(); else press('revise');
    },
    1: () => navigate('#/'), 2: () => navigate('#/closed'), 3: () => navigate('#/executions'),
    '?': () => $('shortcuts').showModal(),
  };
  const handler = handlers[e.key];
  if (handler) { e.preventDefault(); handler(); }
}

function boot() {
  $('signin-form').addEventListener('submit', signIn);
  $('signin-key').addEventListener('input', () => $('signin-key').removeAttribute('aria-invalid'));
  $('signout').addEventListener('click', () => signOut());
  $('shortcuts-button').addEventListener('click', () => $('shortcuts').showModal());
  $('shortcuts').querySelector('form').addEventListener('submit', (e) => { e.preventDefault(); $('shortcuts').close(); });
  for (const id of ['search', 'filter-name', 'filter-kickoff', 'sort']) $(id).addEventListener('input', render);
  window.addEventListener('hashchange', route);
  document.addEventListener('keydown', onKey);
  setInterval(tick, 1000);
  const key = sessionStorage.getItem(KEY_ITEM);
  if (!key) { showSignIn(); return; }
  const api = new Api(key);
  api.streamToken().then((minted) => start(api, minted)).catch((e) => {
    if (e.status === 401 || e.status === 403) signOut(signInMessage(e));
    else showSignIn(e.message);
  });
}

boot();
