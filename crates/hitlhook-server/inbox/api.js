// The inbox's only ways to talk to the server: the public JSON API (API key in the
// Authorization header, never in a URL) and the live stream (a single-use token in the URL).

/** Most pending checkpoints the inbox loads at once (ten pages of 500). */
export const PENDING_MOST = 5000;

/** A refused request, carrying the server's problem JSON (`code`, `detail`). */
export class ApiError extends Error {
  constructor(status, problem) {
    super(problem?.detail || `HTTP ${status}`);
    this.status = status;
    this.code = problem?.code || (status ? `http_${status}` : 'network_error');
    this.problem = problem || {};
  }
}

export class Api {
  constructor(key) {
    this.key = key;
    /** Called once when the key stops working (revoked while signed in). */
    this.onUnauthorized = null;
  }

  async request(method, path, body) {
    const headers = { Authorization: `Bearer ${this.key}`, Accept: 'application/json' };
    if (body !== undefined) headers['Content-Type'] = 'application/json';
    let response;
    try {
      response = await fetch(path, {
        method, headers, body: body === undefined ? undefined : JSON.stringify(body),
        cache: 'no-store', credentials: 'omit', redirect: 'error',
      });
    } catch (e) {
      throw new ApiError(0, { detail: 'Cannot reach the hitlhook server. Check your connection and try again.' });
    }
    if (!response.ok) {
      let problem = null;
      try { problem = await response.json(); } catch { /* not JSON: keep the status */ }
      const error = new ApiError(response.status, problem);
      if (response.status === 401 && this.onUnauthorized) this.onUnauthorized(error);
      throw error;
    }
    return response.status === 204 ? null : response.json();
  }

  /** Who this key is: mints a stream token, which needs a reviewer key (so it doubles as sign-in). */
  streamToken() { return this.request('POST', '/v1/stream-tokens'); }

  /**
   * The pending checkpoints, oldest first, following pages up to `PENDING_MOST`; `more` says
   * whether older ones were left out (the inbox says so rather than look complete).
   */
  async pending() {
    const items = [];
    let cursor = null;
    for (let page = 0; page < PENDING_MOST / 500; page++) {
      const q = new URLSearchParams({ status: 'pending', order: 'oldest', limit: '500' });
      if (cursor) q.set('cursor', cursor);
      const result = await this.request('GET', `/v1/checkpoints?${q}`);
      items.push(...result.items);
      cursor = result.next_cursor;
      if (!cursor) break;
    }
    return { items, more: Boolean(cursor) };
  }

  /** The latest checkpoints in any state, newest first. */
  recent(limit = 200) {
    return this.request('GET', `/v1/checkpoints?status=all&order=newest&limit=${limit}`);
  }

  checkpoint(id) { return this.request('GET', `/v1/checkpoints/${encodeURIComponent(id)}`); }

  decide(id, decision) {
    return this.request('POST', `/v1/checkpoints/${encodeURIComponent(id)}/decision`, decision);
  }

  executions(cursor) {
    const q = new URLSearchParams({ limit: '100' });
    if (cursor) q.set('cursor', cursor);
    return this.request('GET', `/v1/executions?${q}`);
  }

  execution(kickoffId) { return this.request('GET', `/v1/executions/${encodeURIComponent(kickoffId)}`); }

  events(kickoffId, cursor, limit = 200) {
    const q = new URLSearchParams({ limit: String(limit) });
    if (cursor) q.set('cursor', cursor);
    return this.request('GET', `/v1/executions/${encodeURIComponent(kickoffId)}/events?${q}`);
  }
}

/**
 * The live stream over WebSocket. Keeps the position (the last seq it is complete up to) and
 * reconnects with ?after= so nothing is missed: on a `resync` at once, after a drop with backoff.
 */
export class LiveStream {
  constructor(api, { onMessage, onStatus, onIdentity }) {
    this.api = api;
    this.onMessage = onMessage;
    this.onStatus = onStatus;
    this.onIdentity = onIdentity;
    this.position = null;
    this.socket = null;
    this.stopped = true;
    this.attempt = 0;
    this.timer = null;
    this.watchdog = null;
  }

  /** Starts streaming; `token` may be one already minted (at sign-in). */
  start(token = null) {
    this.stopped = false;
    this.connect(token);
  }

  stop() {
    this.stopped = true;
    clearTimeout(this.timer);
    clearTimeout(this.watchdog);
    if (this.socket) this.socket.close(1000, 'signed out');
    this.socket = null;
  }

  async connect(token) {
    if (this.stopped) return;
    this.onStatus(this.attempt ? 'reconnecting' : 'connecting');
    try {
      if (!token) {
        const minted = await this.api.streamToken();
        token = minted.token;
        this.onIdentity?.(minted);
      }
    } catch (e) {
      if (e.status === 401 || e.status === 403) return; // the app signs out
      this.retry();
      return;
    }
    if (this.stopped) return;
    const q = new URLSearchParams({ token });
    if (this.position !== null) q.set('after', String(this.position));
    const scheme = location.protocol === 'https:' ? 'wss:' : 'ws:';
    const socket = new WebSocket(`${scheme}//${location.host}/ws?${q}`);
    this.socket = socket;
    socket.onmessage = (e) => this.receive(socket, e.data);
    socket.onclose = () => {
      if (this.socket !== socket) return;
      this.socket = null;
      clearTimeout(this.watchdog);
      this.retry();
    };
    this.arm(socket);
  }

  /** A silent connection (no heartbeat for 45 s) is presumed dead and replaced. */
  arm(socket) {
    clearTimeout(this.watchdog);
    this.watchdog = setTimeout(() => socket.close(4000, 'silent'), 45000);
  }

  receive(socket, data) {
    let message;
    try { message = JSON.parse(data); } catch { return; }
    this.arm(socket);
    switch (message.type) {
      case 'event': case 'heartbeat': case 'ready':
        this.position = Math.max(this.position ?? 0, message.seq);
        break;
      case 'resync':
        this.position = message.after;
        this.attempt = 0;
        break;
      default: break;
    }
    if (message.type === 'ready') { this.attempt = 0; this.onStatus('live'); }
    this.onMessage(message);
  }

  retry() {
    if (this.stopped) return;
    this.attempt += 1;
    this.onStatus('reconnecting');
    const delay = Math.min(10000, 250 * 2 ** Math.min(this.attempt - 1, 6)) * (0.8 + Math.random() * 0.4);
    clearTimeout(this.timer);
    this.timer = setTimeout(() => this.connect(null), delay);
  }
}
