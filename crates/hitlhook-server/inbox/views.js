// The inbox's views, as pure functions from data (and callbacks) to DOM elements.

import {
  ACTION_LABELS, agoEl, contextView, countdownEl, fullTime, h, humanize, jsonTree, markdown,
} from './render.js';

const ACTIONS = ['continue', 'revise', 'skip', 'stop'];
const KEYS = { continue: 'c', revise: 'r', skip: 's', stop: 'x' };

/** A status pill: pending, decided, expired, cancelled, running, completed… */
export function statusBadge(status, text = humanize(status)) {
  return h('span', { class: `badge badge-${String(status).replace(/[^a-z_]/g, '')}` }, text);
}

/** "Continue by Ada via inbox". */
export function decisionLine(decision) {
  if (!decision) return null;
  return [
    h('strong', {}, ACTION_LABELS[decision.action] || decision.action), ' by ',
    h('strong', {}, decision.decided_by), decision.channel ? ` via ${decision.channel}` : '',
  ];
}

/** One row of the pending (or decided) list. */
export function checkpointRow(cp, { selected, onSelect }) {
  const closed = cp.status !== 'pending';
  return h('li', { class: 'item-row' }, h('button', {
    type: 'button', class: `item${selected ? ' is-selected' : ''}`, id: `item-${cp.checkpoint_id}`,
    'aria-current': selected ? 'true' : null, dataset: { id: cp.checkpoint_id },
    onclick: () => onSelect(cp.checkpoint_id),
  },
  h('span', { class: 'item-main' },
    h('span', { class: 'item-title' }, humanize(cp.checkpoint_name)),
    h('span', { class: 'item-sub' },
      cp.kickoff_id ? h('span', { class: 'mono' }, cp.kickoff_id) : h('span', { class: 'muted' }, 'no execution'),
      ' · ', agoEl(cp.created_at))),
  h('span', { class: 'item-side' },
    closed ? statusBadge(cp.decision ? cp.decision.action : cp.status)
      : cp.expires_at ? countdownEl(cp.expires_at) : h('span', { class: 'muted small' }, 'no expiry'),
    closed && cp.decision ? h('span', { class: 'small muted' }, cp.decision.decided_by) : null)));
}

/** One row of the executions list. */
export function executionRow(ex, { selected, onSelect }) {
  return h('li', { class: 'item-row' }, h('button', {
    type: 'button', class: `item${selected ? ' is-selected' : ''}`, 'aria-current': selected ? 'true' : null,
    dataset: { id: ex.kickoff_id }, onclick: () => onSelect(ex.kickoff_id),
  },
  h('span', { class: 'item-main' },
    h('span', { class: 'item-title mono' }, ex.kickoff_id),
    h('span', { class: 'item-sub' }, `${ex.events_total} events received · ${ex.checkpoints_total} checkpoints · updated `,
      agoEl(ex.updated_at))),
  h('span', { class: 'item-side' }, statusBadge(ex.status),
    ex.checkpoints_pending ? h('span', { class: 'small' }, `${ex.checkpoints_pending} waiting`) : null)));
}

/** An empty state for a pane. */
export function empty(title, text, icon = '✓') {
  return h('div', { class: 'empty' }, h('div', { class: 'empty-icon', 'aria-hidden': 'true' }, icon),
    h('h2', {}, title), h('p', { class: 'muted' }, text));
}

function meta(label, ...value) {
  return h('div', { class: 'meta-item' }, h('dt', {}, label), h('dd', {}, value));
}

/**
 * A checkpoint in full: what it asks, its context, the decision controls (when pending) or the
 * decision (when closed), and its execution's history. `ui.feedback` is the draft text.
 */
export function checkpointDetail(cp, ui) {
  const pending = cp.status === 'pending';
  const titleId = `title-${cp.checkpoint_id}`;
  let raw = false;
  const contextBody = h('div', { class: 'context-body' }, contextView(cp.context));
  const toggle = h('button', {
    type: 'button', class: 'btn btn-ghost btn-small', 'aria-pressed': 'false',
    onclick: () => {
      raw = !raw;
      toggle.setAttribute('aria-pressed', String(raw));
      toggle.textContent = raw ? 'Formatted' : 'Raw JSON';
      contextBody.replaceChildren(raw ? h('pre', { class: 'raw-json' }, JSON.stringify(cp.context, null, 2)) : contextView(cp.context));
    },
  }, 'Raw JSON');

  const header = h('header', { class: 'detail-header' },
    h('button', { type: 'button', class: 'btn btn-ghost back', onclick: ui.onBack, 'aria-label': 'Back to the list' }, '← Back'),
    h('div', { class: 'detail-title-row' },
      h('h2', { id: titleId, tabindex: '-1' }, humanize(cp.checkpoint_name)),
      statusBadge(cp.status)),
    h('p', { class: 'detail-ids' },
      h('span', {}, 'Checkpoint ', h('code', {}, cp.checkpoint_id)),
      cp.kickoff_id ? h('span', {}, ' · Execution ', h('a', { href: `#/executions/${encodeURIComponent(cp.kickoff_id)}` }, h('code', {}, cp.kickoff_id))) : null));

  const facts = h('dl', { class: 'meta' },
    meta('Requested', agoEl(cp.created_at), h('span', { class: 'small muted block' }, fullTime(cp.created_at))),
    meta('Expires', cp.expires_at && pending ? countdownEl(cp.expires_at) : cp.expires_at ? fullTime(cp.expires_at) : 'Never'),
    meta('On timeout', cp.on_timeout ? `${ACTION_LABELS[cp.on_timeout] || cp.on_timeout} automatically`
      : cp.expires_at ? 'Closes undecided' : 'Waits for a person'),
    meta('Allowed', cp.allowed_actions.map((a) => ACTION_LABELS[a] || a).join(', ')));

  const sections = [
    header, pending ? null : outcome(cp), facts,
    h('section', { class: 'card', 'aria-labelledby': `ctx-${cp.checkpoint_id}` },
      h('div', { class: 'card-header' }, h('h3', { id: `ctx-${cp.checkpoint_id}` }, 'Context'), toggle),
      contextBody),
    pending ? decisionForm(cp, ui) : null,
    h('section', { class: 'card', 'aria-labelledby': `hist-${cp.checkpoint_id}` },
      h('div', { class: 'card-header' }, h('h3', { id: `hist-${cp.checkpoint_id}` }, 'Execution history'),
        cp.kickoff_id ? h('a', { class: 'small', href: `#/executions/${encodeURIComponent(cp.kickoff_id)}` }, 'Full audit trail →') : null),
      ui.history),
  ];
  return h('article', { class: 'detail', 'aria-labelledby': titleId }, sections);
}

function decisionForm(cp, ui) {
  const feedbackId = `feedback-${cp.checkpoint_id}`;
  const errorId = `feedback-error-${cp.checkpoint_id}`;
  const textarea = h('textarea', {
    id: feedbackId, class: 'feedback', rows: '4', maxlength: '20000', 'aria-describedby': `${feedbackId}-hint ${errorId}`,
    placeholder: 'What should the agent change or keep in mind?',
    oninput: (e) => { ui.onDraft(e.target.value); error.hidden = true; textarea.removeAttribute('aria-invalid'); },
  });
  textarea.value = ui.feedback || '';
  const error = h('p', { id: errorId, class: 'form-error', role: 'alert', hidden: true });
  const buttons = ACTIONS.map((action) => h('button', {
    type: 'button', class: `btn btn-action btn-${action}`, disabled: !cp.allowed_actions.includes(action),
    'aria-keyshortcuts': KEYS[action], dataset: { action },
    onclick: () => ui.onDecide(action, textarea, error),
  }, ACTION_LABELS[action], h('kbd', { 'aria-hidden': 'true' }, KEYS[action])));
  return h('section', { class: 'card decision-card', 'aria-labelledby': `dec-${cp.checkpoint_id}` },
    h('div', { class: 'card-header' }, h('h3', { id: `dec-${cp.checkpoint_id}` }, 'Your decision')),
    h('label', { for: feedbackId, class: 'label' }, 'Feedback to the agent'),
    textarea,
    h('p', { id: `${feedbackId}-hint`, class: 'hint' }, 'Required to revise; sent along with any decision.'),
    error,
    h('div', { class: 'actions', role: 'group', 'aria-label': 'Decide' }, buttons),
    h('p', { class: 'hint' }, 'Deciding as ', h('strong', {}, ui.deciderLabel), '. You confirm before anything is sent.'));
}

function outcome(cp) {
  const d = cp.decision;
  const text = d ? decisionLine(d)
    : cp.status === 'expired' ? ['Expired before anyone decided.']
      : [`Cancelled${cp.closed_reason ? `: ${cp.closed_reason}` : ''}.`];
  return h('section', { class: `card outcome outcome-${d ? d.action : cp.status}`, role: 'status' },
    h('p', { class: 'outcome-line' }, text, d ? [' · ', agoEl(d.decided_at)] : null),
    d && d.feedback ? h('blockquote', { class: 'outcome-feedback' }, markdown(d.feedback)) : null,
    cp.closed_reason && d ? h('p', { class: 'small muted' }, cp.closed_reason) : null);
}

const SUMMARY_FIELDS = ['task_name', 'task', 'step_name', 'agent', 'description', 'name', 'output', 'error'];

/** One line saying what an event means. */
export function eventSummary(ev) {
  const p = ev.payload && typeof ev.payload === 'object' ? ev.payload : {};
  switch (ev.event_type) {
    case 'checkpoint.required': return `Review requested: ${humanize(p.checkpoint_name || ev.checkpoint_id || '')}`;
    case 'checkpoint.decided': return p.decision ? decisionLine(p.decision) : 'Decided';
    case 'checkpoint.expired': return p.decision ? ['Expired; ', decisionLine(p.decision)] : 'Expired';
    case 'checkpoint.cancelled': return `Cancelled${p.closed_reason ? `: ${p.closed_reason}` : ''}`;
    default: {
      for (const field of SUMMARY_FIELDS) {
        const v = p[field];
        if (typeof v === 'string' && v.trim()) return `${humanize(ev.event_type)}: ${v.length > 140 ? `${v.slice(0, 140)}…` : v}`;
      }
      return humanize(ev.event_type);
    }
  }
}

/** One event in a timeline, expandable to its payload. */
export function timelineItem(ev) {
  const family = ev.event_type.split('.')[0].replace(/[^a-z]/g, '');
  const outcome = ev.event_type.split('.')[1] || '';
  return h('li', { class: `event event-${family} event-${outcome.replace(/[^a-z]/g, '')}`, dataset: { seq: ev.seq } },
    h('span', { class: 'event-dot', 'aria-hidden': 'true' }),
    h('details', { class: 'event-body' },
      h('summary', {},
        h('span', { class: 'event-summary' }, eventSummary(ev)),
        h('span', { class: 'event-meta' }, h('code', {}, ev.event_type), ' · ', agoEl(ev.received_at),
          ' · ', h('span', { title: 'Recorded source' }, ev.source), ' · #', String(ev.seq))),
      h('div', { class: 'event-payload' }, jsonTree(ev.payload))));
}

/** A timeline (oldest first) of events. */
export function timeline(events) {
  if (!events.length) return h('ol', { class: 'timeline' }, h('li', { class: 'muted small' }, 'No events yet.'));
  return h('ol', { class: 'timeline' }, events.map(timelineItem));
}

/** An execution: its state, its checkpoints and its whole audit trail. */
export function executionDetail(status, events, ui) {
  const ex = status.execution;
  return h('article', { class: 'detail', 'aria-labelledby': 'execution-title' },
    h('header', { class: 'detail-header' },
      h('button', { type: 'button', class: 'btn btn-ghost back', onclick: ui.onBack, 'aria-label': 'Back to the list' }, '← Back'),
      h('div', { class: 'detail-title-row' }, h('h2', { id: 'execution-title', tabindex: '-1', class: 'mono' }, ex.kickoff_id), statusBadge(ex.status)),
      h('p', { class: 'detail-ids' }, 'Started ', agoEl(ex.started_at), ex.finished_at ? [' · finished ', agoEl(ex.finished_at)] : null)),
    h('dl', { class: 'meta' },
      meta('Events received', String(ex.events_total)),
      meta('Tasks', `${ex.tasks_completed}/${ex.tasks_started} done`, ex.tasks_failed ? `, ${ex.tasks_failed} failed` : ''),
      meta('Checkpoints', `${ex.checkpoints_total}`, ex.checkpoints_pending ? ` (${ex.checkpoints_pending} waiting)` : ''),
      meta('Last update', agoEl(ex.updated_at))),
    h('section', { class: 'card', 'aria-labelledby': 'execution-checkpoints' },
      h('div', { class: 'card-header' }, h('h3', { id: 'execution-checkpoints' }, 'Checkpoints')),
      status.checkpoints.length ? h('ul', { class: 'mini-list' }, status.checkpoints.map((cp) => h('li', {},
        h('a', { href: `#/${cp.status === 'pending' ? 'checkpoint' : 'closed'}/${encodeURIComponent(cp.checkpoint_id)}` }, humanize(cp.checkpoint_name)),
        ' ', statusBadge(cp.decision ? cp.decision.action : cp.status),
        cp.decision ? h('span', { class: 'small muted' }, ` by ${cp.decision.decided_by}`) : null)))
        : h('p', { class: 'muted' }, 'No checkpoints.')),
    h('section', { class: 'card', 'aria-labelledby': 'execution-audit' },
      h('div', { class: 'card-header' }, h('h3', { id: 'execution-audit' }, 'Audit trail'),
        h('span', { class: 'small muted' }, 'Every event, in the order it was recorded')),
      events,
      ui.more));
}
