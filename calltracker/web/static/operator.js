/* Operator console: call cards pushed over a websocket, reconnecting by itself.
 * Every value from the server is set with textContent (UTM tags, referrers and landing URLs
 * come from visitors); the only attribute set from data is a CRM link's http(s) href. */
(() => {
  'use strict';
  const root = document.getElementById('console');
  if (!root) return;
  const cardsEl = document.getElementById('cards');
  const statusEl = document.getElementById('console-status');
  const template = document.getElementById('card-template');
  const CLOSE_LOGGED_OUT = 4401;
  const MAX_CARDS = 20;
  const cards = new Map(); // call id (Linkedid) -> {data, el}
  const dismissed = new Set();
  let socket = null;
  let attempts = 0;
  let retryTimer = null;
  let stopped = false;

  function setStatus(state, text) {
    statusEl.dataset.state = state;
    statusEl.textContent = text;
  }

  // -- connection ---------------------------------------------------------------------------

  function connect() {
    retryTimer = null;
    if (stopped) return;
    const url = new URL(root.dataset.ws, window.location.href);
    url.protocol = url.protocol === 'https:' ? 'wss:' : 'ws:';
    setStatus('connecting', attempts ? 'Reconnecting…' : 'Connecting…');
    const ws = new WebSocket(url.href);
    socket = ws;
    ws.addEventListener('message', (event) => {
      let msg;
      try { msg = JSON.parse(event.data); } catch (err) { return; }
      handle(msg);
    });
    ws.addEventListener('close', (event) => {
      if (socket !== ws) return;
      socket = null;
      closed(event.code);
    });
  }

  function closed(code) {
    if (code === CLOSE_LOGGED_OUT) {
      stop('Your session ended.');
      return;
    }
    attempts += 1;
    // Exponential backoff with jitter, so a restarted server is not hit by every console
    // at the same instant: 0.25 s, 0.5 s, 1 s ... up to 10 s.
    const delay = Math.min(10000, 250 * 2 ** Math.min(attempts - 1, 6)) * (0.8 + Math.random() * 0.4);
    setStatus('reconnecting', `Disconnected; reconnecting in ${Math.max(1, Math.round(delay / 1000))} s…`);
    if (attempts >= 3) checkLogin();
    retryTimer = setTimeout(connect, delay);
  }

  // A refused handshake looks like any dropped connection; ask whether we are still logged in.
  async function checkLogin() {
    try {
      const resp = await fetch('/api/v1/me', { credentials: 'same-origin', headers: { Accept: 'application/json' } });
      if (resp.status === 401) stop('Your session ended.');
    } catch (err) { /* offline: keep retrying */ }
  }

  function stop(text) {
    stopped = true;
    if (retryTimer) clearTimeout(retryTimer);
    setStatus('stopped', text + ' ');
    const link = document.createElement('a');
    link.href = '/login?next=' + encodeURIComponent(window.location.pathname);
    link.textContent = 'Log in again';
    statusEl.append(link);
  }

  function handle(msg) {
    if (msg.type === 'hello') {
      attempts = 0;
      const exts = msg.extensions.join(', ');
      setStatus('live', exts ? `Live: calls to extension ${exts} pop up here.` : 'Connected, but you have no extension.');
      const current = new Set(msg.cards.map((c) => c.id));
      for (const [id, entry] of cards) {
        // Gone from the server's memory: the call ended long ago while we were away.
        if (!current.has(id) && entry.data.state !== 'ended') {
          upsert({ ...entry.data, state: 'ended', version: entry.data.version + 1 });
        }
      }
      for (const card of msg.cards) upsert(card);
    } else if (msg.type === 'card') {
      upsert(msg.card);
    }
  }

  // -- cards --------------------------------------------------------------------------------

  function upsert(card) {
    if (dismissed.has(card.id)) return;
    let entry = cards.get(card.id);
    if (entry && entry.data.version >= card.version) return;
    if (!entry) {
      const el = template.content.firstElementChild.cloneNode(true);
      el.querySelector('.dismiss').addEventListener('click', () => {
        dismissed.add(card.id);
        cards.delete(card.id);
        el.remove();
      });
      entry = { data: card, el };
      cards.set(card.id, entry);
      cardsEl.prepend(el);
      trim();
    }
    entry.data = card;
    render(entry.el, card);
  }

  function trim() {
    const ended = [...cards.values()].filter((e) => e.data.state === 'ended');
    while (cards.size > MAX_CARDS && ended.length) {
      const oldest = ended.shift();
      cards.delete(oldest.data.id);
      oldest.el.remove();
    }
  }

  function text(el, selector, value) {
    el.querySelector(selector).textContent = value == null ? '' : String(value);
  }

  function render(el, c) {
    el.dataset.id = c.id;
    el.dataset.state = c.state;
    const state = el.querySelector('.state');
    state.className = 'badge state ' + (c.state === 'ended' ? c.status : c.state);
    state.textContent = c.state === 'ringing' ? 'ringing'
      : c.state === 'answered' ? `answered by ${c.answered_by}` : c.status;
    text(el, '.caller', c.caller || 'hidden number');
    el.querySelector('.repeat').hidden = !(c.history && c.history.total > 0);
    text(el, '.tracking-number', c.tracking_number);
    text(el, '.site', c.site ? `(${c.site})` : '');
    text(el, '.source', c.source || 'no source');
    text(el, '.medium', c.medium || '—');
    text(el, '.campaign', c.campaign);
    el.querySelector('.campaign-row').hidden = !c.campaign;
    text(el, '.keyword', c.keyword);
    el.querySelector('.keyword-row').hidden = !c.keyword;
    text(el, '.attribution', c.attribution);
    const visit = c.visit || {};
    text(el, '.landing', visit.url || '—');
    text(el, '.referrer', visit.referrer || '—');
    text(el, '.visit-time', visit.started_at ? when(visit.started_at, c.timezone) : '—');
    renderTiming(el, c);
    renderLead(el.querySelector('.lead'), c.lead);
    renderHistory(el, c);
  }

  function renderTiming(el, c) {
    if (c.state === 'ringing') {
      text(el, '.timing', `ringing since ${when(c.started_at, c.timezone, true)}`);
      text(el, '.talk-time', '');
    } else if (c.state === 'answered') {
      text(el, '.timing', 'talking');
      text(el, '.talk-time', duration((Date.now() - Date.parse(c.answered_at)) / 1000));
    } else if (c.status === 'answered') {
      text(el, '.timing', 'talk time');
      text(el, '.talk-time', duration(c.talk_seconds));
    } else {
      text(el, '.timing', `${c.status} after ${duration(c.wait_seconds)} of ringing`);
      text(el, '.talk-time', '');
    }
  }

  function renderLead(dd, lead) {
    dd.replaceChildren();
    if (!lead || !/^https?:\/\//i.test(lead.url)) {
      dd.textContent = '—';
      return;
    }
    const a = document.createElement('a');
    a.href = lead.url;
    a.target = '_blank';
    a.rel = 'noopener noreferrer';
    a.textContent = lead.label || 'open in CRM';
    dd.append(a);
  }

  function renderHistory(el, c) {
    const history = c.history || { total: 0, calls: [] };
    text(el, '.history-total', history.total ? String(history.total) : 'none');
    const list = el.querySelector('.history-list');
    list.replaceChildren();
    for (const h of history.calls) {
      const li = document.createElement('li');
      const label = [h.source, h.medium].filter(Boolean).join(' / ') || 'no source';
      li.textContent = `${when(h.started_at, c.timezone)} · ${label} · ${h.status}`;
      list.append(li);
    }
  }

  // -- formatting ---------------------------------------------------------------------------

  function when(iso, timeZone, timeOnly) {
    if (!iso) return '';
    const date = new Date(iso);
    const options = timeOnly ? { timeStyle: 'medium' } : { dateStyle: 'medium', timeStyle: 'short' };
    try {
      return new Intl.DateTimeFormat(undefined, { ...options, timeZone }).format(date);
    } catch (err) { // an unknown zone: the browser's own
      return new Intl.DateTimeFormat(undefined, options).format(date);
    }
  }

  function duration(seconds) {
    const s = Math.max(0, Math.round(seconds || 0));
    return `${Math.floor(s / 60)}:${String(s % 60).padStart(2, '0')}`;
  }

  // Running talk timers of answered calls.
  setInterval(() => {
    for (const { el, data } of cards.values()) {
      if (data.state === 'answered') renderTiming(el, data);
    }
  }, 1000);

  connect();
})();
