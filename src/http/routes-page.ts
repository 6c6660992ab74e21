// The ops plane's `GET /`: one self-contained HTML page (inline CSS and script, no external
// assets, no framework) that polls one page of `admin/routes` (`?limit=`, with the search box as
// `q`, "problems only" as `health=degraded,down`, next/previous as the `after` cursor) and renders
// it, with the table's health counts from the reply's `page`. Every value is
// put in the page as text (createElement + text nodes), never parsed as HTML: annotation keys and
// values are free text from Kubernetes or the config file. The Content-Security-Policy allows only
// this page's own script and style (by hash) and fetches to its own origin, so even a rendering
// bug could not run injected script.
// Opened as `/?_token=<admin token>` (ops.auth: admin), the script sends that token with each poll
// as `Authorization: Bearer`; the page is sent with `Referrer-Policy: no-referrer`, so the URL with
// the token is not passed on to the links it has. A refused poll shows the gateway's reason.

import { createHash } from 'node:crypto'

/** How often the page asks for a fresh table. */
export const ROUTES_PAGE_POLL_MS = 1500

/** Instances per page; `/?limit=N` (1-1000) opens the page with another size. */
export const ROUTES_PAGE_SIZE = 100

const STYLE = `
:root { color-scheme: light dark; --ok: #1a7f37; --bad: #cf222e; --warn: #9a6700; --muted: #6e7781; --line: #d0d7de; --inst: #f6f8fa; }
@media (prefers-color-scheme: dark) { :root { --ok: #3fb950; --bad: #f85149; --warn: #d29922; --muted: #8b949e; --line: #30363d; --inst: #161b22; } }
body { font: 13px/1.4 system-ui, -apple-system, "Segoe UI", sans-serif; margin: 16px 20px; }
header { display: flex; align-items: baseline; gap: 12px; flex-wrap: wrap; }
h1 { font-size: 18px; margin: 0; }
h2 { font-size: 14px; margin: 18px 0 6px; }
.status { font-size: 12px; padding: 1px 8px; border-radius: 10px; border: 1px solid var(--line); }
.status.live { color: var(--ok); border-color: var(--ok); }
.status.stale { color: var(--bad); border-color: var(--bad); }
.meta, footer { color: var(--muted); font-size: 12px; }
table { border-collapse: collapse; width: 100%; }
th, td { text-align: left; padding: 3px 8px; border-bottom: 1px solid var(--line); vertical-align: top; white-space: nowrap; }
th { font-size: 11px; text-transform: uppercase; letter-spacing: .04em; color: var(--muted); font-weight: 600; }
td.num, th.num { text-align: right; font-variant-numeric: tabular-nums; }
tr.inst td { background: var(--inst); padding-top: 7px; border-top: 2px solid var(--line); white-space: normal; }
.name { font-weight: 600; font-size: 14px; margin-right: 8px; }
.src { color: var(--muted); margin-right: 10px; }
.badge { display: inline-block; border: 1px solid var(--line); border-radius: 4px; padding: 0 5px; margin: 1px 4px 1px 0; font-size: 12px; }
.badge.ok { color: var(--ok); border-color: var(--ok); }
.badge.bad { color: var(--bad); border-color: var(--bad); }
.badge.warn { color: var(--warn); border-color: var(--warn); }
.ok { color: var(--ok); }
.bad { color: var(--bad); }
.warn { color: var(--warn); }
.why { color: var(--muted); margin-left: 4px; }
td.check { white-space: normal; min-width: 10em; max-width: 26em; }
.why.err { display: block; margin-left: 0; }
.ep { padding-left: 22px; font-family: ui-monospace, SFMono-Regular, Menlo, monospace; }
.star { color: var(--warn); }
tr.annot td { color: var(--warn); white-space: normal; padding-left: 22px; }
td.empty { color: var(--muted); font-style: italic; }
tr.down td { background: rgba(207, 34, 46, .07); }
.controls { display: flex; align-items: center; gap: 10px; flex-wrap: wrap; margin: 10px 0 4px; }
.controls input[type=search] { font: inherit; padding: 2px 6px; min-width: 18em; }
.controls button { font: inherit; padding: 1px 8px; }
.summary { margin: 4px 0; }
`

const SCRIPT = `
'use strict';
const POLL_MS = ${ROUTES_PAGE_POLL_MS};
const OWN = new URLSearchParams(location.search);
// The admin token the page was opened with (?_token=), if any; never put into the page itself.
const TOKEN = OWN.get('_token');
const HEADERS = TOKEN ? { accept: 'application/json', authorization: 'Bearer ' + TOKEN } : { accept: 'application/json' };
const PAGE_SIZE = /^[0-9]{1,4}$/.test(OWN.get('limit') || '') && +OWN.get('limit') >= 1 && +OWN.get('limit') <= 1000 ? +OWN.get('limit') : ${ROUTES_PAGE_SIZE};
let lastOk = null;
// Which page: the search text (q), problems only (health), and the cursor: the 'after' of this
// page, those of the pages before it (for "previous"), and the reply's 'next'.
let search = '';
let problems = false;
let after = null;
let before = [];
let next = null;
// Each poll has a number; a reply to an older one (the filter or page changed meanwhile) is dropped.
let seq = 0;
let timer = null;

// Builds an element; children are nodes or values shown as text (never parsed as HTML).
function el(tag, attrs, ...children) {
  const e = document.createElement(tag);
  if (attrs) for (const k of Object.keys(attrs)) if (attrs[k] !== null && attrs[k] !== undefined) e.setAttribute(k, String(attrs[k]));
  for (const c of children) if (c !== null && c !== undefined && c !== false) e.append(c instanceof Node ? c : document.createTextNode(String(c)));
  return e;
}
const td = (field, cls, ...children) => el('td', { 'data-field': field, class: cls }, ...children);
const badge = (cls, text, title) => el('span', { class: 'badge ' + (cls || ''), title: title }, text);

function bytes(n) {
  if (n === null || n === undefined) return '';
  if (n < 1024) return n + ' B';
  if (n < 1048576) return (n / 1024).toFixed(1) + ' KiB';
  return (n / 1048576).toFixed(1) + ' MiB';
}
const count = (n, what) => n + ' ' + what + (n === 1 ? '' : 's');
const ms = (x) => (x === null || x === undefined ? '' : x < 10 ? x.toFixed(2) + ' ms' : Math.round(x) + ' ms');
const ago = (x) => (x === null || x === undefined ? 'never' : x < 1000 ? x + ' ms ago' : (x / 1000).toFixed(1) + ' s ago');

function endpointRow(inst, ep) {
  const state = ep.serving ? 'serving' : ep.up ? 'not serving' : 'down';
  const cls = ep.serving ? 'ok' : 'bad';
  const b = ep.breaker;
  const breakerText = b.state === 'open' ? 'open, probe in ' + (b.retryInMs / 1000).toFixed(1) + ' s'
    : b.state === 'half-open' ? 'half-open' : b.consecutiveFailures > 0 ? 'closed (' + b.consecutiveFailures + ' failed)' : 'closed';
  return el('tr', { class: ep.serving ? 'ep-row' : 'ep-row down', 'data-instance': inst.name, 'data-endpoint': ep.id, 'data-serving': ep.serving, 'data-up': ep.up },
    td('endpoint', 'ep', ep.id, ep.isPrimary ? el('span', { class: 'star', title: 'writes go here' }, ' \\u2605') : null),
    td('role', null, ep.role),
    td('health', cls, state, ep.reason ? el('span', { class: 'why' }, '(' + ep.reason + ')') : null),
    td('breaker', b.state === 'closed' ? 'ok' : b.state === 'open' ? 'bad' : 'warn', breakerText),
    td('inflight', 'num', ep.inflight + (ep.pending + ep.queued ? ' +' + (ep.pending + ep.queued) + ' waiting' : '')),
    td('latency', 'num', ms(ep.ewmaMs)),
    // Link and lag come from the last successful check: stale once the endpoint is down.
    td('lag', 'num', ep.up ? bytes(ep.lagBytes) : ''),
    td('link', null, ep.link === null || !ep.up ? '' : ep.link),
    td('zone', null, ep.zone === null ? '' : ep.zone),
    td('check', 'check', ago(ep.lastCheckAgoMs), ep.lastError ? el('span', { class: 'why err' }, ep.lastError) : null),
  );
}

function instanceRows(inst) {
  const health = inst.health === 'up' ? 'ok' : inst.health === 'down' ? 'bad' : 'warn';
  const head = el('tr', { class: 'inst', 'data-instance': inst.name },
    el('td', { colspan: 10 },
      el('span', { class: 'name', 'data-field': 'name' }, inst.name),
      el('span', { class: 'src', 'data-field': 'source' }, inst.source),
      badge(health, inst.health, 'instance health'),
      inst.maintenance !== 'off' ? badge('warn', 'maintenance: ' + inst.maintenance) : null,
      badge('', 'weight ' + inst.weight),
      badge('', 'reads: ' + inst.readPolicy),
      badge('', inst.strategy),
      badge('', 'max lag ' + bytes(inst.maxReplicaLagBytes)),
      inst.hedgeAfterMs !== null ? badge('', 'hedge after ' + inst.hedgeAfterMs + ' ms') : null,
      ...inst.groups.map((g) => badge('', 'group ' + g)),
      inst.annotationErrors.length > 0 ? badge('bad', inst.annotationErrors.length + ' annotation error' + (inst.annotationErrors.length > 1 ? 's' : '')) : null,
    ),
  );
  const rows = [head];
  for (const e of inst.annotationErrors) {
    rows.push(el('tr', { class: 'annot', 'data-instance': inst.name }, el('td', { colspan: 10, 'data-field': 'annotation-error' }, '\\u26a0 ' + e.message)));
  }
  const c = inst.cluster;
  if (c === null) {
    for (const ep of inst.endpoints) rows.push(endpointRow(inst, ep));
    if (inst.endpoints.length === 0) rows.push(el('tr', null, el('td', { colspan: 10, class: 'empty' }, 'no endpoints')));
    return rows;
  }
  // A Redis Cluster: its shards, each with its slots and nodes (primary first).
  rows.push(el('tr', { class: 'annot', 'data-instance': inst.name }, el('td', { colspan: 10, 'data-field': 'cluster' },
    'Redis Cluster: ' + count(c.shards.filter((s) => s.slotCount > 0).length, 'shard') + ', ' + c.slotsServed + ' of 16384 slots served' +
    (c.learnedFrom ? ' \u00b7 map from ' + c.learnedFrom + ' (' + c.source + ')' : ' \u00b7 slot map not learned yet'))));
  for (const sh of c.shards) {
    const ranges = sh.slots.map((r) => r[0] === r[1] ? String(r[0]) : r[0] + '-' + r[1]).join(', ');
    rows.push(el('tr', { class: 'shard', 'data-instance': inst.name, 'data-shard': sh.index }, el('td', { colspan: 10, 'data-field': 'shard' },
      badge(sh.health === 'up' ? 'ok' : sh.health === 'down' ? 'bad' : 'warn', 'shard ' + sh.index + ': ' + sh.health, 'shard health'),
      ' slots ' + (ranges || 'none') + ' (' + sh.slotCount + ')')));
    for (const ep of sh.endpoints) rows.push(endpointRow(inst, ep));
  }
  for (const r of c.refused) {
    rows.push(el('tr', { class: 'annot', 'data-instance': inst.name }, el('td', { colspan: 10, 'data-field': 'refused-node' }, '\u26a0 not used: ' + r.host + ':' + (r.port === null ? '?' : r.port) + ' (' + r.role + ') ' + r.reason)));
  }
  return rows;
}

function groupRows(g) {
  if (g.members.length === 0) {
    return [el('tr', { 'data-group': g.name }, el('td', { class: 'name' }, g.name), el('td', null, g.strategy), el('td', { colspan: 4, class: 'empty' }, 'no members'))];
  }
  // The group's members on this page only; how many it has in all, and how many take traffic.
  const all = g.memberCount === undefined ? null : el('span', { class: 'why', 'data-field': 'member-count' }, '(' + g.membersTakingTraffic + ' of ' + count(g.memberCount, 'member') + ' taking traffic)');
  return g.members.map((m, i) => el('tr', { 'data-group': g.name, 'data-member': m.instance, class: m.takingTraffic ? null : 'down' },
    el('td', { class: 'name' }, i === 0 ? g.name : ''),
    el('td', null, i === 0 ? g.strategy : '', i === 0 ? all : null),
    td('member', null, m.instance),
    td('weight', 'num', m.weight),
    td('share', 'num', m.share === null ? '' : (m.share * 100).toFixed(1) + ' %'),
    td('traffic', m.takingTraffic ? 'ok' : 'bad', m.takingTraffic ? 'taking traffic' : 'none', m.reason ? el('span', { class: 'why' }, '(' + m.reason + ')') : null),
  ));
}

const fmt = (n) => n.toLocaleString('en-US');

function render(view) {
  const p = view.page;
  const inst = document.getElementById('instances-body');
  const rows = view.instances.flatMap(instanceRows);
  if (rows.length === 0) rows.push(el('tr', null, el('td', { colspan: 10, class: 'empty' }, p.total === 0 ? 'no instances' : 'no instance matches')));
  inst.replaceChildren(...rows);
  const groups = document.getElementById('groups-body');
  const grows = view.groups.flatMap(groupRows);
  if (grows.length === 0) grows.push(el('tr', null, el('td', { colspan: 6, class: 'empty' }, 'no groups')));
  groups.replaceChildren(...grows);
  const h = p.health;
  document.getElementById('summary').replaceChildren(
    fmt(p.total) + ' instance' + (p.total === 1 ? '' : 's') + ': ',
    el('span', { 'data-field': 'up', class: 'ok' }, fmt(h.up) + ' up'), ' \u00b7 ',
    el('span', { 'data-field': 'degraded', class: h.degraded > 0 ? 'warn' : null }, fmt(h.degraded) + ' degraded'), ' \u00b7 ',
    el('span', { 'data-field': 'down', class: h.down > 0 ? 'bad' : null }, fmt(h.down) + ' down'));
  document.getElementById('range').textContent = p.returned === 0 ? '0 of ' + fmt(p.matched)
    : fmt(p.offset + 1) + '\u2013' + fmt(p.offset + p.returned) + ' of ' + fmt(p.matched) + (search || problems ? ' matching' : '');
  next = p.next;
  document.getElementById('next').disabled = next === null;
  document.getElementById('prev').disabled = after === null;
  document.getElementById('meta').replaceChildren(
    'table version ' + view.tableVersion + (view.zone ? ' \u00b7 zone ' + view.zone : '') + ' \u00b7 generated ' + new Date(view.generatedAt).toLocaleTimeString());
  document.body.setAttribute('data-generated-at', view.generatedAt);
}

function setStatus(ok, text) {
  const s = document.getElementById('status');
  s.className = 'status ' + (ok ? 'live' : 'stale');
  s.textContent = text;
}

function routesUrl() {
  const q = new URLSearchParams({ limit: String(PAGE_SIZE) });
  if (after !== null) q.set('after', after);
  if (search) q.set('q', search);
  if (problems) q.set('health', 'degraded,down');
  return 'admin/routes?' + q.toString();
}

async function poll() {
  clearTimeout(timer);
  const mine = ++seq;
  let delay = POLL_MS;
  try {
    if (!document.hidden || lastOk === null) {
      const res = await fetch(routesUrl(), { cache: 'no-store', headers: HEADERS });
      if (!res.ok) {
        // The gateway's reason (e.g. 401 UNAUTHORIZED ... needs a token), shown as text.
        let why = '';
        try { const body = await res.json(); if (body && typeof body.error === 'string') why = ' ' + body.error; } catch (e) { /* not JSON */ }
        throw new Error('HTTP ' + res.status + why);
      }
      const view = await res.json();
      if (mine !== seq) return;
      if (view.version !== 1 || !view.page) throw new Error('unsupported view version ' + view.version);
      if (view.instances.length === 0 && after !== null) {
        // This page emptied (instances removed, or healed under "problems only"): back to the first.
        after = null;
        before = [];
        delay = 0;
        return;
      }
      render(view);
      lastOk = new Date();
      setStatus(true, 'live');
    }
  } catch (err) {
    if (mine !== seq) return;
    const why = err && err.message ? err.message : String(err);
    setStatus(false, 'stale: ' + why + (lastOk ? ' (last update ' + lastOk.toLocaleTimeString() + ')' : ''));
    // Nothing shown yet: say why where the table's summary goes, not just in the status badge.
    if (lastOk === null) document.getElementById('meta').replaceChildren(why);
  } finally {
    if (mine === seq) timer = setTimeout(poll, delay);
  }
}

// A new filter starts at the first page; each change asks at once (the reply of a poll still
// running is dropped).
function firstPage() {
  after = null;
  before = [];
  poll();
}
let typing = null;
document.getElementById('search').addEventListener('input', (e) => {
  clearTimeout(typing);
  typing = setTimeout(() => { search = e.target.value.trim(); firstPage(); }, 200);
});
document.getElementById('problems').addEventListener('change', (e) => { problems = e.target.checked; firstPage(); });
document.getElementById('next').addEventListener('click', () => {
  if (next === null) return;
  before.push(after);
  after = next;
  next = null;
  document.getElementById('next').disabled = true;
  poll();
});
document.getElementById('prev').addEventListener('click', () => {
  if (before.length === 0) return;
  after = before.pop();
  document.getElementById('prev').disabled = true;
  poll();
});
poll();
`

const sha256 = (s: string): string => `'sha256-${createHash('sha256').update(s, 'utf8').digest('base64')}'`

export const ROUTES_PAGE_HTML = `<!doctype html>
<html lang="en">
<head>
<meta charset="utf-8">
<meta name="viewport" content="width=device-width, initial-scale=1">
<title>redis-gateway routes</title>
<style>${STYLE}</style>
</head>
<body>
<header><h1>redis-gateway routing table</h1><span id="status" class="status">loading\u2026</span></header>
<p class="summary" id="summary"></p>
<div class="controls">
<input id="search" type="search" placeholder="search instances by name" aria-label="search instances by name" autocomplete="off" spellcheck="false">
<label><input id="problems" type="checkbox"> problems only (degraded or down)</label>
<button id="prev" type="button" disabled>\u2190 previous</button>
<span id="range" class="meta"></span>
<button id="next" type="button" disabled>next \u2192</button>
</div>
<p class="meta" id="meta"></p>
<h2>Instances</h2>
<table id="instances">
<thead><tr><th>endpoint</th><th>role</th><th>health</th><th>breaker</th><th class="num">in flight</th><th class="num">latency (EWMA)</th><th class="num">lag</th><th>link</th><th>zone</th><th>last check</th></tr></thead>
<tbody id="instances-body"></tbody>
</table>
<h2>Groups of these instances</h2>
<table id="groups">
<thead><tr><th>group</th><th>strategy</th><th>member</th><th class="num">weight</th><th class="num">share</th><th>traffic</th></tr></thead>
<tbody id="groups-body"></tbody>
</table>
<footer><p>Refreshes this page of instances every ${ROUTES_PAGE_POLL_MS / 1000} s from <a href="admin/routes?limit=${ROUTES_PAGE_SIZE}">admin/routes</a> (JSON, schema and parameters in docs/admin-routes.md).</p></footer>
<script>${SCRIPT}</script>
</body>
</html>
`

/** Headers for the page: only its own inline script and style run, and it only talks to its origin. */
export const ROUTES_PAGE_HEADERS: Readonly<Record<string, string>> = Object.freeze({
  'content-type': 'text/html; charset=utf-8',
  'cache-control': 'no-store',
  'content-security-policy': [
    "default-src 'none'",
    `script-src ${sha256(SCRIPT)}`,
    `style-src ${sha256(STYLE)}`,
    "connect-src 'self'",
    "img-src 'none'",
    "base-uri 'none'",
    "form-action 'none'",
    "frame-ancestors 'none'",
  ].join('; '),
  'x-content-type-options': 'nosniff',
  'referrer-policy': 'no-referrer',
})

/** The inline script, for tests that check it never builds HTML from strings. */
export const ROUTES_PAGE_SCRIPT = SCRIPT
