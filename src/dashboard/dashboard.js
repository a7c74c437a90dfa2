// The fanout dashboard: a reference client of the broker's public interfaces
// (the /ws JSON protocol and GET /api/topics), with no framework. Message
// data only ever reaches the page through textContent, never as markup.
'use strict';

const STATS = '$sys.stats';
const WINDOW_MS = 5 * 60 * 1000; // what the charts show
const MAX_ROWS = 500; // watch log rows kept
const TOPICS_EVERY_MS = 2000;

const $ = (id) => document.getElementById(id);
const token = new URLSearchParams(location.search).get('token');

const conn = { ws: null, nextId: 1, pending: new Map(), attempt: 0, countdown: 0, retry: 0, everOpen: false, restartNoted: false };
// Watched filters (the text the user typed) -> the seq their ack reported (exact topics).
const watches = new Map();
// Last seq seen per topic: resubscribing passes it as `since`, so nothing is lost or repeated.
const lastSeq = new Map();
// The epoch each topic's seqs count in (from subscribe acks), sent back with `since`.
const epochs = new Map();
const series = new Map(); // stat name -> [[ts, value]]
let paused = false;
const held = [];
let drawQueued = false;

// ---- connection ---------------------------------------------------------

function wsUrl() {
  const u = new URL('/ws', location.href);
  u.protocol = location.protocol === 'https:' ? 'wss:' : 'ws:';
  if (token) u.searchParams.set('token', token);
  return u.href;
}

function setStatus(state, text) {
  const el = $('status');
  el.dataset.state = state;
  el.textContent = text;
}

function connect() {
  clearInterval(conn.countdown);
  clearTimeout(conn.retry);
  setStatus('connecting', conn.everOpen ? 'reconnecting…' : 'connecting…');
  const ws = new WebSocket(wsUrl());
  conn.ws = ws;
  ws.onopen = () => {
    conn.attempt = 0;
    conn.restartNoted = false;
    setStatus('connected', 'connected');
    // permessage-deflate when the broker agreed to it: shown on hover, read by the browser test.
    document.body.dataset.wsExtensions = ws.extensions;
    $('status').title = ws.extensions ? `compressed (${ws.extensions})` : 'uncompressed';
    if (conn.everOpen) note('reconnected: resuming every watch after the last seq seen');
    conn.everOpen = true;
    subscribeStats();
    for (const [f, ackSeq] of watches) resubscribe(f, ackSeq);
    refreshTopics();
  };
  ws.onmessage = (e) => {
    let m;
    try { m = JSON.parse(e.data); } catch { return; }
    onServerMessage(m);
  };
  ws.onclose = () => {
    if (conn.ws !== ws) return;
    conn.ws = null;
    for (const reply of conn.pending.values()) reply({ type: 'error', code: 'closed', message: 'connection lost' });
    conn.pending.clear();
    if (conn.everOpen && conn.attempt === 0) note('connection lost: reconnecting');
    scheduleReconnect();
  };
}

// Exponential backoff with jitter: 0.5 s doubling to a 10 s cap, each wait between half and all of it.
function scheduleReconnect() {
  const cap = Math.min(10000, 500 * 2 ** conn.attempt++);
  const delay = cap / 2 + Math.random() * cap / 2;
  const at = Date.now() + delay;
  const show = () => setStatus('reconnecting', `reconnecting in ${Math.max(0, (at - Date.now()) / 1000).toFixed(1)} s…`);
  show();
  conn.countdown = setInterval(show, 200);
  conn.retry = setTimeout(connect, delay);
}

function connected() {
  return conn.ws !== null && conn.ws.readyState === WebSocket.OPEN;
}

// Sends `msg` with a fresh id; `onReply` gets its ack or error.
function request(msg, onReply) {
  if (!connected()) return false;
  msg.id = conn.nextId++;
  if (msg.op === 'subscribe' && msg.since !== undefined && epochs.has(msg.topic)) msg.epoch = epochs.get(msg.topic);
  conn.pending.set(msg.id, onReply);
  conn.ws.send(JSON.stringify(msg));
  return true;
}

function onServerMessage(m) {
  if (m.type === 'message') return onPublished(m);
  if (m.type === 'gap') return onGap(m);
  if (m.type === 'ack' || m.type === 'error') {
    if (m.epoch && m.topic) epochs.set(m.topic, m.epoch);
    const reply = conn.pending.get(m.id);
    conn.pending.delete(m.id);
    if (reply) reply(m);
    else if (m.type === 'error') note(`error: ${m.message}`);
  }
}

// A resume the broker could not honour (another epoch, or a seq it never reached):
// the topic started again (the broker restarted), and the live stream follows the ack.
function restarted(m) {
  return m.type === 'ack' && m.recovered === false;
}

function brokerRestarted(topic, seq) {
  lastSeq.set(topic, seq ?? 0);
  if (!conn.restartNoted) note('the broker restarted: its seqs start again from 1');
  conn.restartNoted = true;
}

// ---- $sys.stats ---------------------------------------------------------

function subscribeStats() {
  // `since` 0 the first time: the broker keeps 5 minutes of snapshots, which fill the charts.
  const since = lastSeq.get(STATS) ?? 0;
  request({ op: 'subscribe', topic: STATS, since }, (r) => {
    if (restarted(r)) brokerRestarted(STATS, r.seq);
  });
}

function onStats(m) {
  const s = m.data;
  document.body.dataset.statsSeq = m.seq;
  for (const card of document.querySelectorAll('.card')) {
    const key = card.dataset.stat;
    const v = s[key];
    card.querySelector('.value').textContent = fmt(v);
    if (typeof v !== 'number') continue;
    const points = series.get(key) || [];
    points.push([m.ts, v]);
    while (points.length && points[0][0] < m.ts - WINDOW_MS) points.shift();
    series.set(key, points);
  }
  $('uptime').textContent = `up ${duration(s.uptime_s)}`;
  if (!drawQueued) {
    drawQueued = true;
    requestAnimationFrame(drawCharts);
  }
}

function fmt(v) {
  if (typeof v !== 'number') return '–';
  if (v >= 1e9) return `${(v / 1e9).toFixed(1)}G`;
  if (v >= 1e6) return `${(v / 1e6).toFixed(1)}M`;
  if (v >= 1e4) return `${(v / 1e3).toFixed(1)}k`;
  return Number.isInteger(v) ? String(v) : v.toFixed(v < 10 ? 2 : 1);
}

function duration(s) {
  if (s < 60) return `${s} s`;
  if (s < 3600) return `${Math.floor(s / 60)} min`;
  return `${Math.floor(s / 3600)} h ${Math.floor((s % 3600) / 60)} min`;
}

// Draws every card's last five minutes; a hole over 3 s (the broker was away) breaks the line.
function drawCharts() {
  drawQueued = false;
  const color = getComputedStyle(document.documentElement).getPropertyValue('--accent').trim() || '#2463eb';
  const dpr = window.devicePixelRatio || 1;
  const newest = Math.max(0, ...[...series.values()].map((p) => (p.length ? p[p.length - 1][0] : 0)));
  for (const card of document.querySelectorAll('.card')) {
    const canvas = card.querySelector('canvas');
    const w = Math.max(1, Math.round(canvas.clientWidth * dpr));
    const h = Math.max(1, Math.round(canvas.clientHeight * dpr));
    if (canvas.width !== w || canvas.height !== h) Object.assign(canvas, { width: w, height: h });
    const ctx = canvas.getContext('2d');
    ctx.clearRect(0, 0, w, h);
    const points = series.get(card.dataset.stat) || [];
    if (!points.length) continue;
    const max = Math.max(1, ...points.map((p) => p[1]));
    const x = (ts) => w - ((newest - ts) / WINDOW_MS) * w;
    const y = (v) => h - 2 * dpr - (v / max) * (h - 4 * dpr);
    ctx.strokeStyle = color;
    ctx.lineWidth = 1.5 * dpr;
    ctx.beginPath();
    let prev = null;
    for (const [ts, v] of points) {
      if (prev === null || ts - prev > 3000) ctx.moveTo(x(ts), y(v));
      else ctx.lineTo(x(ts), y(v));
      prev = ts;
    }
    ctx.stroke();
  }
}

// ---- topics ---------------------------------------------------------------

let topics = [];

async function refreshTopics() {
  if (!connected()) return;
  const q = new URLSearchParams({ limit: '500' });
  if (token) q.set('token', token);
  try {
    const res = await fetch(`/api/topics?${q}`);
    if (!res.ok) return;
    topics = (await res.json()).topics || [];
    renderTopics();
  } catch {
    // The broker went away mid-request: the status line already says so.
  }
}

function renderTopics() {
  const filter = $('topic-filter').value.trim().toLowerCase();
  const shown = topics.filter((t) => t.topic.toLowerCase().includes(filter));
  const rows = shown.map((t) => {
    const tr = document.createElement('tr');
    tr.dataset.topic = t.topic;
    for (const v of [t.topic, t.subscribers, fmt(t.rate), t.seq]) {
      const td = document.createElement('td');
      td.textContent = String(v);
      tr.append(td);
    }
    return tr;
  });
  $('topic-rows').replaceChildren(...rows);
  $('topic-count').textContent = filter ? `${shown.length} of ${topics.length}` : String(topics.length);
}

// ---- watch ----------------------------------------------------------------

// Whether `filter` (a topic or a `*`/`>` pattern) covers `topic`, as the broker decides.
function covers(filter, topic) {
  const f = filter.split('.');
  const t = topic.split('.');
  if (topic.startsWith('$') && (f[0] === '*' || f[0] === '>')) return false;
  for (let i = 0; i < f.length; i++) {
    if (f[i] === '>') return t.length > i;
    if (i >= t.length || (f[i] !== '*' && f[i] !== t[i])) return false;
  }
  return f.length === t.length;
}

function exact(filter) {
  return !/(^|\.)[*>](\.|$)/.test(filter);
}

// After a reconnect: an exact topic resumes after the last seq seen (or the seq it was
// subscribed at), so what was published meanwhile arrives, once; a pattern cannot.
function resubscribe(filter, ackSeq) {
  const since = exact(filter) ? lastSeq.get(filter) ?? ackSeq ?? undefined : undefined;
  subscribe(filter, since);
}

// Starts watching `filter`. An exact topic that retains messages is subscribed from just
// before its current seq, so its last value shows at once whatever the topic's rules.
async function watch(filter) {
  let since;
  if (exact(filter) && /^[\w\-:@$.]+$/.test(filter)) {
    const q = new URLSearchParams({ prefix: filter, limit: '1' });
    if (token) q.set('token', token);
    try {
      const res = await fetch(`/api/topics?${q}`);
      const t = res.ok ? (await res.json()).topics?.[0] : undefined;
      if (t && t.topic === filter && t.retained > 0 && t.seq > 0) since = t.seq - 1;
    } catch {
      // Not reachable now: subscribing (or queueing the watch for the reconnect) still works.
    }
  }
  subscribe(filter, since);
}

// Subscribes to `filter`; `since` undefined asks only for a last value the rules keep.
function subscribe(filter, since) {
  const resuming = watches.has(filter);
  const msg = { op: 'subscribe', topic: filter };
  if (since !== undefined) msg.since = since;
  if (!watches.has(filter)) watches.set(filter, null);
  renderWatches();
  const sent = request(msg, (r) => {
    if (restarted(r)) {
      brokerRestarted(filter, r.seq);
      watches.set(filter, r.seq ?? null);
    } else if (r.type === 'error') {
      if (r.code === 'closed') return; // resubscribed on reconnect
      watches.delete(filter);
      renderWatches();
      note(`cannot watch ${filter}: ${r.message}`);
    } else {
      watches.set(filter, r.seq ?? null);
      if (!resuming) note(`watching ${filter}`);
    }
  });
  if (!sent && !resuming) note(`not connected: ${filter} is watched once the connection is back`);
}

function unsubscribe(filter) {
  watches.delete(filter);
  renderWatches();
  // The stats panel holds the connection's one subscription to $sys.stats: keep it.
  if (filter !== STATS) request({ op: 'unsubscribe', topic: filter }, () => {});
}

function renderWatches() {
  const chips = [...watches.keys()].map((f) => {
    const chip = document.createElement('span');
    chip.className = 'chip';
    chip.dataset.filter = f;
    const x = document.createElement('button');
    x.type = 'button';
    x.textContent = '×';
    x.title = `stop watching ${f}`;
    x.addEventListener('click', () => unsubscribe(f));
    chip.append(f, x);
    return chip;
  });
  $('watching').replaceChildren(...chips);
}

function onPublished(m) {
  const seen = lastSeq.get(m.topic);
  // A pattern resubscribed after a reconnect gets each topic's last value again: skip repeats.
  if (seen !== undefined && m.seq <= seen) return;
  lastSeq.set(m.topic, m.seq);
  if (m.topic === STATS) onStats(m);
  if (![...watches.keys()].some((f) => covers(f, m.topic))) return;
  const li = document.createElement('li');
  li.dataset.topic = m.topic;
  li.dataset.seq = m.seq;
  const ackSeq = watches.get(m.topic);
  if (typeof ackSeq === 'number' && m.seq <= ackSeq) li.className = 'replay';
  const data = typeof m.data === 'string' ? m.data : JSON.stringify(m.data);
  for (const [cls, text] of [['t', time(m.ts)], ['s', `#${m.seq}`], ['topic', m.topic], ['d', data]]) {
    const span = document.createElement('span');
    span.className = cls;
    span.textContent = text;
    li.append(span);
  }
  addRow(li);
}

function onGap(m) {
  const li = document.createElement('li');
  li.className = 'gap';
  li.dataset.topic = m.topic;
  li.textContent = `gap in ${m.topic}: seq ${m.from}–${m.to} lost (${m.reason})`;
  addRow(li);
}

// A line about the connection or a watch, in the log among the messages.
function note(text) {
  const li = document.createElement('li');
  li.className = 'note';
  li.textContent = `${time(Date.now())} ${text}`;
  addRow(li);
}

function addRow(li) {
  if (paused) {
    held.push(li);
    if (held.length > MAX_ROWS) held.shift();
    $('paused-note').textContent = `paused: ${held.length} new held`;
    return;
  }
  const log = $('messages');
  log.prepend(li);
  while (log.childElementCount > MAX_ROWS) log.lastElementChild.remove();
}

function time(ts) {
  const d = new Date(ts);
  const p = (n, w = 2) => String(n).padStart(w, '0');
  return `${p(d.getHours())}:${p(d.getMinutes())}:${p(d.getSeconds())}.${p(d.getMilliseconds(), 3)}`;
}

function togglePause() {
  paused = !paused;
  const btn = $('pause-btn');
  btn.textContent = paused ? 'Resume' : 'Pause';
  btn.setAttribute('aria-pressed', String(paused));
  $('paused-note').hidden = !paused;
  $('paused-note').textContent = 'paused: 0 new held';
  if (!paused) held.splice(0).forEach(addRow);
}

// ---- publish --------------------------------------------------------------

function publish(e) {
  e.preventDefault();
  const topic = $('pub-topic').value.trim();
  const body = $('pub-body').value;
  const out = $('pub-result');
  const show = (ok, text) => {
    out.className = ok ? 'ok' : 'err';
    out.textContent = text;
  };
  let data = body;
  if ($('pub-mode').value === 'json') {
    try {
      data = JSON.parse(body);
    } catch (err) {
      return show(false, `the body is not JSON (${err.message}); choose "text" to send it as a string`);
    }
  }
  const sent = request({ op: 'publish', topic, data }, (r) => {
    if (r.type === 'ack') show(true, `ack: ${topic} seq ${r.seq}`);
    else show(false, `${r.code}: ${r.message}`);
  });
  if (!sent) show(false, 'not connected; publish again once the status says connected');
}

// ---- start ----------------------------------------------------------------

function start() {
  $('watch-form').addEventListener('submit', (e) => {
    e.preventDefault();
    const f = $('watch-topic').value.trim();
    if (f && !watches.has(f)) watch(f);
  });
  $('pause-btn').addEventListener('click', togglePause);
  $('clear-btn').addEventListener('click', () => $('messages').replaceChildren());
  $('pub-form').addEventListener('submit', publish);
  $('topic-filter').addEventListener('input', renderTopics);
  $('topic-rows').addEventListener('click', (e) => {
    const tr = e.target.closest('tr');
    if (!tr) return;
    $('watch-topic').value = tr.dataset.topic;
    $('pub-topic').value = tr.dataset.topic;
  });
  window.addEventListener('resize', () => requestAnimationFrame(drawCharts));
  window.addEventListener('online', () => {
    if (!conn.ws) connect();
  });
  setInterval(refreshTopics, TOPICS_EVERY_MS);
  connect();
}

start();
