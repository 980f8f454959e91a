// Steer status page: reads /ui/api/state, follows /ui/events (a streamed
// fetch, so the token rides in the Authorization header, never in a URL),
// and drains or undrains through /ui/api/{drain,undrain} after showing the
// dry-run projection. Text from the server only ever goes in textContent.
'use strict';

const SVG = 'http://www.w3.org/2000/svg';
const $ = (id) => document.getElementById(id);
let token = sessionStorage.getItem('steer-token') || '';
let state = null;
let stream = null;
let refreshing = false;
let again = false;

function authHeaders(extra) {
  const h = Object.assign({}, extra || {});
  if (token) h.Authorization = 'Bearer ' + token;
  return h;
}

function el(tag, attrs, ...children) {
  const e = document.createElement(tag);
  for (const [k, v] of Object.entries(attrs || {})) {
    if (v !== undefined && v !== null && v !== false) e.setAttribute(k, v === true ? '' : v);
  }
  for (const c of children) {
    if (c === null || c === undefined) continue;
    e.append(c instanceof Node ? c : String(c));
  }
  return e;
}

function svg(tag, attrs) {
  const e = document.createElementNS(SVG, tag);
  for (const [k, v] of Object.entries(attrs || {})) e.setAttribute(k, v);
  return e;
}

const sleep = (ms) => new Promise((r) => setTimeout(r, ms));
const when = (ms) => (ms ? new Date(ms).toISOString().replace('T', ' ').slice(0, 19) + 'Z' : '—');
const healthClass = (h) => 'h-' + (['up', 'degraded', 'down'].includes(h) ? h : 'unknown');

function table(id, head, rows, empty) {
  const t = $(id);
  t.replaceChildren();
  if (!rows.length) {
    t.append(el('caption', { class: 'empty' }, empty));
    return;
  }
  t.append(el('thead', {}, el('tr', {}, ...head.map((h) => el('th', { scope: 'col' }, h)))));
  const body = el('tbody');
  for (const r of rows) {
    body.append(el('tr', {}, ...r.map((c) => (c instanceof Node && c.tagName === 'TD' ? c : el('td', {}, c)))));
  }
  t.append(body);
}

const num = (v, digits) => el('td', { class: 'num' }, v === null || v === undefined ? '—' : Number(v).toFixed(digits || 0));

function showError(text) {
  $('error').textContent = text;
  $('error').hidden = !text;
}

async function errorText(r) {
  try {
    const j = await r.json();
    return j.error || r.statusText;
  } catch (_) {
    return r.statusText;
  }
}

async function refresh() {
  if (refreshing) { again = true; return; }
  refreshing = true;
  try {
    do {
      again = false;
      const r = await fetch('/ui/api/state', { headers: authHeaders(), cache: 'no-store' });
      if (!r.ok) {
        const why = await errorText(r);
        showError(r.status === 401 || r.status === 403
          ? `${why} — paste a token with the viewer role (operator to drain) above.`
          : `steerd answered ${r.status}: ${why}`);
        return;
      }
      showError('');
      state = await r.json();
      render();
    } while (again);
  } catch (e) {
    showError('steerd is not answering: ' + e.message);
  } finally {
    refreshing = false;
  }
}

function render() {
  const s = state.status;
  const mayDrain = state.you.may_drain;
  $('plan').textContent = `plan v${s.plan_version}, computed ${when(s.plan_computed_unix_ms)}`;
  $('you').textContent = `you: ${state.you.principal}${mayDrain ? '' : ' (read-only)'}`;
  const frozen = $('frozen');
  frozen.hidden = !s.frozen;
  frozen.textContent = s.frozen
    ? `Health frozen since ${when(s.frozen.since_unix_ms)} (${s.frozen.pops.join(', ')}): ${s.frozen.why}`
    : '';
  renderMap(s, mayDrain);
  table('pops', ['PoP', 'Region', 'Health', 'Weight ‰', 'Drain', 'Load rps', 'Why', ''],
    s.pops.map((p) => [
      p.pop, p.region, p.health + (p.usable ? '' : ' (not serving)'), num(p.weight_permille),
      p.drained ? `drained${p.drained_by ? ' by ' + p.drained_by : ''}` : '—',
      num(p.load_rps), p.reason, actionButton('pop', p.pop, p.drained, mayDrain),
    ]), 'No PoPs.');
  const drainedRegions = new Set(s.intents.filter((i) => i.kind === 'drain' && i.scope.startsWith('region '))
    .map((i) => i.scope.slice(7)));
  table('regions', ['Region', 'Level', 'Traffic goes to', 'Demand rps', ''],
    s.regions.map((r) => [r.region, r.level, shares(s, r), num(r.demand_rps),
      actionButton('region', r.region, drainedRegions.has(r.region), mayDrain)]),
    'No regions.');
  table('intents', ['Kind', 'Scope', 'Mode / weight', 'Who', 'Why', 'Since', 'Expires'],
    s.intents.map((i) => [i.kind, i.scope, i.mode || (i.weight_permille !== null ? i.weight_permille + '‰' : '—'),
      i.principal, i.reason, when(i.created_unix_ms), i.expires_unix_ms ? when(i.expires_unix_ms) : 'never']),
    'No drains or overrides in force.');
  const peers = (s.bgp && s.bgp.peers) || [];
  table('bgp', ['PoP', 'Peer', 'AS', 'State', 'Up for', 'Prefixes', 'Last error'],
    peers.map((p) => [p.pop, p.peer, p.peer_as, p.state, p.uptime_secs === null ? '—' : p.uptime_secs + ' s',
      num(p.prefixes_sent), p.last_error || '—']),
    s.bgp ? 'No BGP sessions.' : 'No BGP speaker configured.');
  const slos = (s.slo && s.slo.slos) || [];
  table('slos', ['SLO', 'Service', 'Objective', 'Budget left', 'Firing'],
    slos.map((o) => [o.name, o.service, o.objective,
      o.budget_remaining === null ? '—' : (o.budget_remaining * 100).toFixed(1) + '%' + (o.exhausted ? ' (spent)' : ''),
      o.firing || '—']),
    'No SLOs configured.');
  table('changes', ['Change', 'State', 'Stage', 'Author', 'Why', 'Held'],
    s.changes.map((c) => [c.id + (c.emergency ? ' (emergency)' : ''), c.state, c.stage || '—', c.author, c.reason, c.held || '—'])
      .concat(s.break_glass.map((b) => ['break glass', when(b.at_unix_ms), '—', b.principal || '—', b.what || '', '—'])),
    'No changes in flight.');
  renderTimeline();
}

// Where a region's traffic goes: the PoPs of the regions serving it, by
// their share of the weight.
function shares(s, r) {
  const pops = s.pops.filter((p) => r.served_by.includes(p.region) && p.weight_permille > 0);
  const total = pops.reduce((t, p) => t + p.weight_permille, 0);
  if (!total) return r.served_by.length ? r.served_by.join(', ') + ' (no weight)' : 'nowhere';
  return pops.map((p) => `${p.pop} ${Math.round((100 * p.weight_permille) / total)}%`).join(', ');
}

function actionButton(kind, id, drained, mayDrain) {
  if (!mayDrain) return '';
  const b = el('button', { type: 'button' }, drained ? 'Undrain' : 'Drain');
  b.setAttribute('aria-label', `${drained ? 'Undrain' : 'Drain'} ${kind} ${id}`);
  b.addEventListener('click', () => openAction(kind, id, !drained));
  return b;
}

function renderMap(s, mayDrain) {
  const g = $('markers');
  g.replaceChildren();
  const places = state.locations || {};
  const sorted = s.pops.filter((p) => places[p.pop]).sort((a, b) => b.weight_permille - a.weight_permille);
  for (const p of sorted) {
    const { lat, lon } = places[p.pop];
    const x = lon + 180;
    const y = 90 - lat;
    const r = 2.2 + 3.8 * Math.sqrt(p.weight_permille / 1000);
    const c = svg('circle', {
      cx: x.toFixed(2), cy: y.toFixed(2), r: r.toFixed(2),
      class: `marker ${healthClass(p.health)}${p.drained ? ' is-drained' : ''}`,
      'data-pop': p.pop, 'data-health': p.health, 'data-drained': String(p.drained),
      tabindex: '0', role: mayDrain ? 'button' : 'img',
      'aria-label': `${p.pop} (${p.region}): ${p.health}, weight ${p.weight_permille}‰${p.drained ? ', drained' : ''}`,
    });
    const title = svg('title');
    title.textContent = c.getAttribute('aria-label');
    c.append(title);
    if (mayDrain) {
      const act = () => openAction('pop', p.pop, !p.drained);
      c.addEventListener('click', act);
      c.addEventListener('keydown', (e) => { if (e.key === 'Enter' || e.key === ' ') { e.preventDefault(); act(); } });
    }
    g.append(c);
    if (p.drained) {
      const d = r + 1.2;
      g.append(svg('path', { class: 'cross', d: `M${x - d} ${y - d}L${x + d} ${y + d}M${x - d} ${y + d}L${x + d} ${y - d}` }));
    }
    // A neighbour just east takes the right side: this label goes left.
    const crowded = sorted.some((q) => q !== p && places[q.pop].lon > lon
      && places[q.pop].lon - lon < 15 && Math.abs(places[q.pop].lat - lat) < 8);
    const label = svg('text', {
      x: (crowded ? x - r - 1 : x + r + 1).toFixed(2), y: (y + 1.6).toFixed(2),
      class: 'label', 'text-anchor': crowded ? 'end' : 'start',
    });
    label.textContent = p.pop;
    g.append(label);
  }
}

function renderTimeline() {
  const select = $('timeline-filter');
  const chosen = select.value;
  const s = state.status;
  const scopes = new Set([...s.pops.map((p) => p.pop), ...s.regions.map((r) => r.region)]);
  for (const e of state.timeline) for (const sc of e.scope) scopes.add(sc);
  const wanted = ['', ...[...scopes].sort()];
  if (select.options.length !== wanted.length || wanted.some((w, i) => select.options[i].value !== w)) {
    select.replaceChildren(...wanted.map((w) => el('option', { value: w }, w || 'everything')));
    select.value = wanted.includes(chosen) ? chosen : '';
  }
  const list = $('timeline');
  list.replaceChildren();
  const events = state.timeline.filter((e) => !select.value || e.scope.includes(select.value));
  if (!events.length) list.append(el('li', { class: 'empty' }, 'Nothing yet.'));
  for (const e of events) {
    list.append(el('li', { 'data-kind': e.kind },
      el('time', { datetime: new Date(e.at).toISOString() }, when(e.at)),
      el('span', { class: 'kind' }, e.kind), ' ', e.summary,
      e.principal ? ` — ${e.principal}` : ''));
  }
}

// Drain (dry run first, then reason and confirm) or undrain.
let action = null;

async function post(path, body) {
  const r = await fetch(path, {
    method: 'POST', cache: 'no-store',
    headers: authHeaders({ 'Content-Type': 'application/json' }),
    body: JSON.stringify(body),
  });
  const j = await r.json().catch(() => ({ error: r.statusText }));
  if (!r.ok) throw new Error(j.error || `HTTP ${r.status}`);
  return j;
}

async function openAction(kind, id, drain) {
  action = { kind, id, drain };
  $('act-title').textContent = `${drain ? 'Drain' : 'Undrain'} ${kind} ${id}`;
  $('act-error').textContent = '';
  $('reason').value = '';
  $('reason').required = drain;
  $('act-confirm').textContent = drain ? 'Drain' : 'Undrain';
  const proj = $('projection');
  proj.replaceChildren(drain ? 'Projecting…' : 'Traffic returns to it as its health allows.');
  $('act').showModal();
  $('reason').focus();
  if (!drain) return;
  try {
    const out = await post('/ui/api/drain', { kind, id, reason: 'status page preview', dry_run: true });
    const p = out.projection;
    const t = el('table');
    t.append(el('thead', {}, el('tr', {}, ...['PoP', 'Now rps', 'After rps', 'Capacity', 'Use'].map((h) => el('th', { scope: 'col' }, h)))));
    const b = el('tbody');
    for (const q of p.pops) {
      b.append(el('tr', {}, el('td', {}, q.pop), num(q.current_rps), num(q.projected_rps), num(q.capacity_rps),
        el('td', { class: q.projected_utilisation > 1 ? 'num over' : 'num' }, (q.projected_utilisation * 100).toFixed(0) + '%')));
    }
    t.append(b);
    proj.replaceChildren(el('p', { class: p.over_capacity ? 'over' : '' }, 'Dry run: ' + p.summary), t);
  } catch (e) {
    proj.replaceChildren(el('p', { class: 'error' }, 'Dry run refused: ' + e.message));
  }
}

async function confirmAction(ev) {
  ev.preventDefault();
  if (!action) return;
  const reason = $('reason').value.trim();
  if (action.drain && !reason) {
    $('act-error').textContent = 'Say why: the reason goes into the audit log.';
    $('reason').focus();
    return;
  }
  try {
    if (action.drain) {
      const out = await post('/ui/api/drain', { kind: action.kind, id: action.id, reason });
      if (!out.applied && out.change_id) showError(`Put through review as change ${out.change_id}.`);
    } else {
      await post('/ui/api/undrain', { kind: action.kind, id: action.id, reason });
    }
    $('act').close();
    action = null;
    refresh();
  } catch (e) {
    $('act-error').textContent = e.message;
  }
}

async function follow() {
  for (;;) {
    const abort = new AbortController();
    stream = abort;
    try {
      const r = await fetch('/ui/events', { headers: authHeaders(), cache: 'no-store', signal: abort.signal });
      if (r.ok && r.body) {
        setLive(true);
        const reader = r.body.getReader();
        const text = new TextDecoder();
        let buf = '';
        for (;;) {
          const { value, done } = await reader.read();
          if (done) break;
          buf += text.decode(value, { stream: true });
          let i;
          while ((i = buf.indexOf('\n\n')) >= 0) {
            const block = buf.slice(0, i);
            buf = buf.slice(i + 2);
            if (block.startsWith('event: change')) refresh();
          }
        }
      }
    } catch (_) { /* reconnect below */ }
    setLive(false);
    await sleep(1500);
  }
}

function setLive(on) {
  const b = $('live');
  b.textContent = on ? 'live' : 'reconnecting';
  b.className = 'badge ' + (on ? 'on' : 'off');
}

async function loadLand() {
  try {
    const r = await fetch('/ui/world.svg');
    const doc = new DOMParser().parseFromString(await r.text(), 'image/svg+xml');
    const d = doc.querySelector('path').getAttribute('d');
    $('land').append(svg('path', { d, class: 'land' }));
  } catch (_) { /* the markers still show */ }
}

function useToken(t) {
  token = t;
  if (t) sessionStorage.setItem('steer-token', t); else sessionStorage.removeItem('steer-token');
  if (stream) stream.abort();
  refresh();
}

document.addEventListener('DOMContentLoaded', () => {
  $('token-form').addEventListener('submit', (e) => { e.preventDefault(); useToken($('token').value.trim()); $('token').value = ''; });
  $('forget').addEventListener('click', () => useToken(''));
  $('timeline-filter').addEventListener('change', () => state && renderTimeline());
  $('act-form').addEventListener('submit', confirmAction);
  $('act-cancel').addEventListener('click', () => { $('act').close(); action = null; });
  loadLand();
  refresh();
  follow();
});
