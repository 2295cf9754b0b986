// The wssd status page: polls /status (same origin) every second and draws
// it. Every string from the server goes in with textContent, never as HTML.
'use strict';

const POLL_MS = 1000;
// Points across a chart: the server keeps 60 one-second rates.
const WIDTH = 60;
const $ = (id) => document.getElementById(id);

const CLOSE_MEANINGS = {
  0: 'other codes', 1000: 'normal', 1001: 'going away', 1002: 'protocol error',
  1003: 'unsupported data', 1005: 'no code', 1006: 'dropped (no close)',
  1007: 'invalid payload', 1008: 'policy', 1009: 'too big', 1010: 'extension',
  1011: 'server error', 1012: 'restart', 1013: 'try again later', 1014: 'bad gateway',
};

function closeMeaning(code) {
  if (code in CLOSE_MEANINGS) return CLOSE_MEANINGS[code];
  if (code >= 4000 && code <= 4999) return 'application';
  if (code >= 3000 && code <= 3999) return 'registered';
  return '';
}

function count(n) {
  return Number(n).toLocaleString('en-US', { maximumFractionDigits: n < 10 ? 1 : 0 });
}

function bytes(n) {
  const units = ['B', 'kB', 'MB', 'GB', 'TB'];
  let i = 0;
  while (n >= 1000 && i < units.length - 1) { n /= 1000; i++; }
  return `${n.toFixed(n < 10 && i > 0 ? 1 : 0)} ${units[i]}`;
}

function duration(s) {
  const d = Math.floor(s / 86400), h = Math.floor(s / 3600) % 24, m = Math.floor(s / 60) % 60;
  if (d) return `${d}d ${h}h`;
  if (h) return `${h}h ${m}m`;
  return `${m}m ${s % 60}s`;
}

function ago(unix, now) {
  return unix ? `${duration(Math.max(0, now - unix))} ago` : '—';
}

/** Sets an element's text and, for numbers, its data-value (what tests read). */
function show(id, text, value) {
  const el = $(id);
  el.textContent = text;
  if (value !== undefined) el.dataset.value = String(value);
}

function badge(id, text, state) {
  const el = $(id);
  el.textContent = text;
  el.dataset.state = state;
}

/** Draws `values` (the newest last, at the right edge) as a polyline in a 120x32 viewBox, scaled to `max`. */
function spark(line, values, max) {
  const n = Math.min(values.length, WIDTH);
  if (n < 2) { line.setAttribute('points', ''); return; }
  const top = max > 0 ? max : 1;
  const step = 120 / (WIDTH - 1);
  const pts = values.slice(-n).map((v, i) => `${((WIDTH - n + i) * step).toFixed(1)},${(31 - (v / top) * 29).toFixed(1)}`);
  line.setAttribute('points', pts.join(' '));
}

function sparkPair(id, a, b) {
  const [inLine, outLine] = $(id).querySelectorAll('polyline');
  const max = Math.max(0, ...a, ...b);
  spark(inLine, a, max);
  spark(outLine, b, max);
}

/** Replaces the rows of table `id` with `rows` (arrays of [text, className]). */
function fill(id, rows, empty) {
  const body = $(id).tBodies[0];
  const cols = $(id).tHead.rows[0].cells.length;
  const out = [];
  for (const row of rows) {
    const tr = document.createElement('tr');
    for (const [text, cls] of row) {
      const td = document.createElement('td');
      td.textContent = text;
      if (cls) td.className = cls;
      tr.append(td);
    }
    out.push(tr);
  }
  if (!out.length) {
    const tr = document.createElement('tr');
    const td = document.createElement('td');
    td.colSpan = cols;
    td.className = 'empty';
    td.textContent = empty;
    tr.append(td);
    out.push(tr);
  }
  body.replaceChildren(...out);
}

function draw(s) {
  const now = s.server.now_unix;
  show('server-version', s.server.version);
  show('schema-version', String(s.version));
  show('uptime', `up ${duration(s.server.uptime_seconds)}`);
  if (s.server.ready) badge('ready', 'ready', 'ok');
  else badge('ready', `not ready: ${s.server.not_ready_reason || ''}`, 'bad');
  const b = s.broker;
  badge('broker', `broker ${b.backend || 'none'}: ${b.state}${b.reason ? ` (${b.reason})` : ''}`,
    b.state === 'healthy' ? 'ok' : 'warn');

  const t = s.totals, r = s.rates, h = s.history;
  show('total-open', count(t.connections_open), t.connections_open);
  show('total-connections', `${count(t.connections_total)} since start`);
  show('rate-messages-in', count(r.messages_in_per_second), r.messages_in_per_second);
  show('rate-messages-out', count(r.messages_out_per_second), r.messages_out_per_second);
  show('total-messages', `${count(t.messages_in)} in · ${count(t.messages_out)} out`);
  show('rate-bytes-in', bytes(r.bytes_in_per_second), r.bytes_in_per_second);
  show('rate-bytes-out', bytes(r.bytes_out_per_second), r.bytes_out_per_second);
  show('total-bytes', `${bytes(t.bytes_in)} in · ${bytes(t.bytes_out)} out`);
  spark($('spark-open').querySelector('polyline'), h.connections_open, Math.max(0, ...h.connections_open));
  sparkPair('spark-messages', h.messages_in_per_second, h.messages_out_per_second);
  sparkPair('spark-bytes', h.bytes_in_per_second, h.bytes_out_per_second);

  fill('routes', s.routes.map((x) => [
    [x.path], [x.kind], [count(x.connections_open), 'n'], [count(x.connections_total), 'n'],
    [count(x.messages_in), 'n'], [count(x.messages_out), 'n'], [bytes(x.bytes_in), 'n'], [bytes(x.bytes_out), 'n'],
  ]), 'no WebSocket route yet');
  fill('listeners', s.listeners.map((x) => [
    [x.address], [x.tls === null ? '?' : x.tls ? 'yes' : 'no'],
    [count(x.connections_open), 'n'], [count(x.connections_total), 'n'],
  ]), 'no listener yet');
  fill('certificates', s.certificates.map((c) => {
    const days = c.days_left;
    const cls = days === null ? 'bad' : days < 7 ? 'bad' : days < 21 ? 'warn' : 'ok';
    return [
      [c.names.join(', ') || '—', 'wrap'], [days === null ? 'none loaded' : days.toFixed(1), `n ${cls}`],
      [c.source], [c.last_reload_ok === null ? '—' : c.last_reload_ok ? 'ok' : 'failed', c.last_reload_ok === false ? 'bad' : ''],
      [c.slot, 'wrap muted small'],
    ];
  }), 'no TLS (plain listeners only)');
  fill('upstreams', s.upstreams.map((u) => [
    [u.route], [u.last_connect, u.last_connect === 'ok' ? 'ok' : 'bad'], [ago(u.last_connect_unix, now)],
    [count(u.connects), 'n'], [count(u.failures), u.failures ? 'n bad' : 'n'],
  ]), 'no upstream connect yet');
  fill('close-codes', s.closes.by_code.map((c) => [
    [String(c.code), 'n'], [closeMeaning(c.code)], [count(c.count), 'n'],
  ]), 'no close yet');
  fill('recent-closes', s.closes.recent.slice(0, 20).map((c) => [
    [ago(c.at_unix, now)], [c.route], [String(c.code), 'n'], [c.closed_by],
  ]), 'no close yet');
}

async function poll() {
  try {
    const res = await fetch('/status', { cache: 'no-store' });
    if (!res.ok) throw new Error(`HTTP ${res.status}`);
    draw(await res.json());
    badge('link', 'live', 'ok');
  } catch (e) {
    badge('link', `no answer from /status (${e.message})`, 'bad');
  } finally {
    setTimeout(poll, POLL_MS);
  }
}

poll();
