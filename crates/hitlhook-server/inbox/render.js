// Safe rendering of untrusted data: every string from the server becomes a text node or an
// attribute value set through the DOM API. Nothing here assigns innerHTML.

/** Builds an element: h('a', {href, class: 'x', onclick}, 'text', child, [more]). */
export function h(tag, props, ...children) {
  const el = document.createElement(tag);
  for (const [name, value] of Object.entries(props || {})) {
    if (value === undefined || value === null || value === false) continue;
    if (name === 'class') el.className = value;
    else if (name === 'dataset') Object.assign(el.dataset, value);
    else if (name.startsWith('on') && typeof value === 'function') el.addEventListener(name.slice(2), value);
    else if (value === true) el.setAttribute(name, '');
    else el.setAttribute(name, String(value));
  }
  append(el, children);
  return el;
}

/** Appends children: nodes, strings (as text), arrays; skips null and false. */
export function append(el, children) {
  for (const child of children.flat(Infinity)) {
    if (child === null || child === undefined || child === false) continue;
    el.append(child instanceof Node ? child : document.createTextNode(String(child)));
  }
  return el;
}

/** Removes every child of `el`, then appends `children`. */
export function replace(el, ...children) {
  el.replaceChildren();
  return append(el, children);
}

// ---------------------------------------------------------------- time

const UNITS = [['d', 86400], ['h', 3600], ['m', 60], ['s', 1]];

/** "3m 12s", "2h 5m", "4d 1h": the two largest units of a duration in seconds. */
export function duration(seconds) {
  let rest = Math.max(0, Math.floor(seconds));
  const parts = [];
  for (const [unit, size] of UNITS) {
    if (rest >= size || (unit === 's' && parts.length === 0)) {
      parts.push(`${Math.floor(rest / size)}${unit}`);
      rest %= size;
    }
    if (parts.length === 2) break;
  }
  return parts.join(' ');
}

/** "just now", "5m ago". */
export function ago(iso, now = Date.now()) {
  const seconds = (now - Date.parse(iso)) / 1000;
  return seconds < 5 ? 'just now' : `${duration(seconds)} ago`;
}

/** A local date and time for tooltips and details. */
export function fullTime(iso) {
  const d = new Date(iso);
  return Number.isNaN(d.getTime()) ? String(iso) : d.toLocaleString(undefined, {
    year: 'numeric', month: 'short', day: 'numeric', hour: '2-digit', minute: '2-digit', second: '2-digit',
  });
}

/** A <time> element kept fresh by the inbox's clock (data-ago). */
export function agoEl(iso) {
  return h('time', { datetime: iso, title: fullTime(iso), dataset: { ago: iso } }, ago(iso));
}

/** An expiry countdown kept fresh by the inbox's clock (data-expires). */
export function countdownEl(iso) {
  const el = h('span', { class: 'countdown', title: `Expires ${fullTime(iso)}`, dataset: { expires: iso } });
  updateCountdown(el);
  return el;
}

/** Updates a countdown's text and urgency. */
export function updateCountdown(el, now = Date.now()) {
  const left = (Date.parse(el.dataset.expires) - now) / 1000;
  el.textContent = left <= 0 ? 'expired' : `expires in ${duration(left)}`;
  el.dataset.urgency = left <= 60 ? 'critical' : left <= 600 ? 'soon' : 'later';
}

// ---------------------------------------------------------------- words

/** "after_planning" → "After planning". */
export function humanize(name) {
  const text = String(name).replace(/[_\-.]+/g, ' ').replace(/([a-z])([A-Z])/g, '$1 $2').trim();
  return text ? text[0].toUpperCase() + text.slice(1).toLowerCase() : String(name);
}

export const ACTION_LABELS = { continue: 'Continue', revise: 'Revise', skip: 'Skip', stop: 'Stop' };

// ---------------------------------------------------------------- Markdown

const SAFE_URL = /^(https?:|mailto:)/i;

function link(url, children) {
  if (!SAFE_URL.test(url)) return h('span', {}, children);
  return h('a', { href: url, target: '_blank', rel: 'noopener noreferrer nofollow' }, children);
}

const INLINE = [
  { re: /`([^`]+)`/, make: (m) => h('code', {}, m[1]) },
  { re: /!?\[([^\]]*)\]\(([^()\s]+)\)/, make: (m) => link(m[2], inline(m[1] || m[2])) },
  { re: /\*\*(\S(?:[^*]*\S)?)\*\*|__(\S(?:[^_]*\S)?)__/, make: (m) => h('strong', {}, inline(m[1] ?? m[2])) },
  { re: /~~(\S(?:[^~]*\S)?)~~/, make: (m) => h('del', {}, inline(m[1])) },
  { re: /\*(\S(?:[^*]*\S)?)\*|(?<![\w])_(\S(?:[^_]*\S)?)_(?![\w])/, make: (m) => h('em', {}, inline(m[1] ?? m[2])) },
  { re: /\bhttps?:\/\/[^\s<>()]*[^\s<>().,;:!?'"]/, make: (m) => link(m[0], m[0]) },
];

/** Inline Markdown → nodes (code, links, bold, italic, strikethrough, bare URLs). */
export function inline(text) {
  const out = [];
  let rest = text;
  while (rest) {
    let best = null;
    for (const rule of INLINE) {
      const m = rule.re.exec(rest);
      if (m && (!best || m.index < best.m.index)) best = { rule, m };
    }
    if (!best) { out.push(rest); break; }
    if (best.m.index > 0) out.push(rest.slice(0, best.m.index));
    out.push(best.rule.make(best.m));
    rest = rest.slice(best.m.index + best.m[0].length);
  }
  return out;
}

/** Inline text with hard line breaks kept (agent output relies on them). */
function lines(text) {
  return text.split('\n').flatMap((line, i) => (i ? [h('br'), inline(line)] : [inline(line)]));
}

const LIST_ITEM = /^(\s*)([-*+]|\d{1,9}[.)])\s+(.*)$/;
const FENCE = /^\s*(```|~~~)(.*)$/;
const HEADING = /^\s{0,3}(#{1,6})\s+(.*?)\s*#*\s*$/;
const RULE = /^\s{0,3}([-*_])(\s*\1){2,}\s*$/;
const TABLE_SEP = /^\s*\|?\s*:?-{2,}:?\s*(\|\s*:?-{2,}:?\s*)*\|?\s*$/;

function cells(line) {
  return line.trim().replace(/^\|/, '').replace(/\|$/, '').split('|').map((c) => c.trim());
}

/** Block Markdown → a fragment: headings, paragraphs, lists, quotes, code, tables, rules. */
export function markdown(text) {
  const frag = document.createDocumentFragment();
  append(frag, blocks(String(text).replace(/\r\n?/g, '\n').split('\n'), 0));
  return h('div', { class: 'md' }, frag);
}

function blocks(src, depth) {
  const out = [];
  let i = 0;
  const para = [];
  const flush = () => { if (para.length) { out.push(h('p', {}, lines(para.join('\n')))); para.length = 0; } };
  while (i < src.length) {
    const line = src[i];
    let m;
    if (!line.trim()) { flush(); i++; continue; }
    if ((m = FENCE.exec(line))) {
      flush();
      const body = [];
      for (i++; i < src.length && !src[i].trim().startsWith(m[1]); i++) body.push(src[i]);
      i++;
      out.push(h('pre', {}, h('code', { 'data-lang': m[2].trim() || null }, body.join('\n'))));
      continue;
    }
    if ((m = HEADING.exec(line))) {
      flush();
      const level = Math.min(6, m[1].length + 2);
      out.push(h(`h${level}`, { class: 'md-heading' }, inline(m[2])));
      i++;
      continue;
    }
    if (RULE.test(line)) { flush(); out.push(h('hr')); i++; continue; }
    if (/^\s{0,3}>/.test(line)) {
      flush();
      const quoted = [];
      for (; i < src.length && /^\s{0,3}>/.test(src[i]); i++) quoted.push(src[i].replace(/^\s{0,3}>\s?/, ''));
      out.push(h('blockquote', {}, depth < 8 ? blocks(quoted, depth + 1) : quoted.join('\n')));
      continue;
    }
    if (line.includes('|') && i + 1 < src.length && TABLE_SEP.test(src[i + 1])) {
      flush();
      const head = cells(line);
      const rows = [];
      for (i += 2; i < src.length && src[i].includes('|') && src[i].trim(); i++) rows.push(cells(src[i]));
      out.push(h('div', { class: 'md-table' }, h('table', {},
        h('thead', {}, h('tr', {}, head.map((c) => h('th', { scope: 'col' }, inline(c))))),
        h('tbody', {}, rows.map((r) => h('tr', {}, head.map((_, j) => h('td', {}, inline(r[j] ?? '')))))))));
      continue;
    }
    if ((m = LIST_ITEM.exec(line)) && depth < 8) {
      flush();
      const indent = m[1].length;
      const ordered = /\d/.test(m[2]);
      const items = [];
      while (i < src.length) {
        const im = LIST_ITEM.exec(src[i]);
        if (im && im[1].length === indent && /\d/.test(im[2]) === ordered) {
          items.push([im[3]]);
          i++;
        } else if (items.length && src[i].trim() && (/^\s/.test(src[i]) && leading(src[i]) > indent)) {
          items[items.length - 1].push(src[i].slice(Math.min(leading(src[i]), indent + 2)));
          i++;
        } else if (!src[i].trim() && i + 1 < src.length && leading(src[i + 1]) > indent && items.length) {
          items[items.length - 1].push('');
          i++;
        } else break;
      }
      const start = ordered ? parseInt(m[2], 10) : null;
      out.push(h(ordered ? 'ol' : 'ul', { start: start && start !== 1 ? start : null },
        items.map((body) => listItem(body, depth))));
      continue;
    }
    para.push(line);
    i++;
  }
  flush();
  return out;
}

function leading(line) {
  return line.length - line.trimStart().length;
}

function listItem(body, depth) {
  let first = body[0];
  let box = null;
  const task = /^\[([ xX])\]\s+(.*)$/.exec(first);
  if (task) {
    box = h('span', { class: 'md-task', 'aria-label': task[1] === ' ' ? 'not done' : 'done' }, task[1] === ' ' ? '☐ ' : '☑ ');
    first = task[2];
  }
  if (body.length === 1) return h('li', {}, box, inline(first));
  return h('li', {}, box, blocks([first, ...body.slice(1)], depth + 1));
}

// ---------------------------------------------------------------- JSON

function scalar(value) {
  if (value === null) return h('span', { class: 'json-null' }, 'null');
  switch (typeof value) {
    case 'string': return h('span', { class: 'json-string' }, JSON.stringify(value));
    case 'number': return h('span', { class: 'json-number' }, String(value));
    case 'boolean': return h('span', { class: 'json-bool' }, String(value));
    default: return h('span', {}, String(value));
  }
}

/** Levels of a JSON tree rendered before the rest is shown as "…". */
const JSON_TREE_MAX_DEPTH = 20;

/** A collapsible tree of any JSON value (native <details>, so it is keyboard-usable). */
export function jsonTree(value, label = null, depth = 0) {
  const key = label === null ? null : h('span', { class: 'json-key' }, label);
  if (value === null || typeof value !== 'object') {
    return h('div', { class: 'json-leaf' }, key, key && ': ', scalar(value));
  }
  // Deeper levels are elided: a hostile or runaway payload must not exhaust the call stack.
  if (depth >= JSON_TREE_MAX_DEPTH) {
    return h('div', { class: 'json-leaf' }, key, key && ': ', h('span', { class: 'json-meta', title: 'nested too deep to show' }, '…'));
  }
  const isArray = Array.isArray(value);
  const entries = isArray ? value.map((v, i) => [String(i), v]) : Object.entries(value);
  const size = isArray ? `${entries.length} item${entries.length === 1 ? '' : 's'}`
    : `${entries.length} key${entries.length === 1 ? '' : 's'}`;
  if (!entries.length) return h('div', { class: 'json-leaf' }, key, key && ': ', h('span', { class: 'json-null' }, isArray ? '[]' : '{}'));
  return h('details', { class: 'json-node', open: depth < 2 },
    h('summary', {}, key, key && ': ', h('span', { class: 'json-meta' }, isArray ? `[ ${size} ]` : `{ ${size} }`)),
    h('div', { class: 'json-children', role: 'group' }, entries.map(([k, v]) => jsonTree(v, k, depth + 1))));
}

/**
 * A checkpoint's context, readable: each top-level field under its own heading, strings as
 * Markdown, numbers and booleans as values, objects and arrays as trees.
 */
export function contextView(context) {
  if (typeof context === 'string') return markdown(context);
  if (context === null || typeof context !== 'object' || Array.isArray(context)) return jsonTree(context);
  const entries = Object.entries(context);
  if (!entries.length) return h('p', { class: 'muted' }, 'No context was sent with this checkpoint.');
  return h('dl', { class: 'context-fields' }, entries.map(([k, v]) => h('div', { class: 'context-field' },
    h('dt', { title: k }, humanize(k)),
    h('dd', {}, typeof v === 'string' ? markdown(v)
      : v !== null && typeof v === 'object' ? jsonTree(v) : scalar(v)))));
}
