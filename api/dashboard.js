// dashboard.js -- the Softadastra node dashboard (served at /dashboard.js,
// loaded by / under a Content-Security-Policy that forbids inline script).
//
// Everything the page shows comes from the node's own REST API on the same
// origin: /v1/status, /v1/store (key browser, paging with the `next`
// cursor), PUT/DELETE /v1/store/{key}, and /v1/changes as Server-Sent
// Events.  The stream is read with fetch() instead of EventSource so that
// the bearer token travels in the Authorization header (EventSource cannot
// set headers, and a token in the URL would end up in logs and history);
// the reconnection with Last-Event-ID that EventSource would do is done
// here.  User data (keys, values) only ever reaches the page through
// textContent, never as HTML.
//
// Writes are conditioned on what the page loaded: a key picked in the
// browser is put and deleted with If-Match: "<version loaded>", a key typed
// that was not loaded is put with If-None-Match: * (created, never
// overwritten blind); a 412 says the key changed since it was loaded and
// offers a reload.  A binary value (encoding base64) is never shown in the
// text box, so Put is off for it: a text put would replace its bytes.
// Delete asks first.
//
// Content types: the key browser and the form show each value's content
// type; a put sends the form's type as its Content-Type (a key picked
// keeps the type it had unless the field is changed), and none when the
// field is empty: the body goes as a Blob without a type, so the browser
// adds no text/plain of its own.  Raw values are never opened from here
// (a stored HTML value is served sandboxed; the page does not render it).
'use strict';

(function () {
  const $ = (id) => document.getElementById(id);
  const MAX_CHANGES = 200;
  let token = sessionStorage.getItem('sa_token') || '';
  let pageStack = []; // cursors of the pages before the current one
  let cursor = '';    // `after` of the current page
  let nextCursor = null;
  let statusTimer = null;
  let loaded = null;  // {key, version, binary, size, type}: the key the form holds, as loaded

  function headers(extra) {
    const h = Object.assign({}, extra || {});
    if (token) h['Authorization'] = 'Bearer ' + token;
    return h;
  }

  // The error line says what the last failure was.  Every action (run) gets
  // a number; when one succeeds it clears the error only if that error is
  // older than the action, and a refresh in the background (the status
  // timer, the change feed) only an error of another refresh: a user's failed
  // write stays until the user acts again, whatever finishes after it.
  let runs = 0;
  let errorRun = 0;
  let errorBackground = false;
  function showError(msg, run, background) {
    const e = $('error');
    e.textContent = msg || '';
    e.classList.toggle('hidden', !msg);
    errorRun = msg ? (run || runs) : 0;
    errorBackground = !!background;
  }

  function needToken() {
    $('auth').classList.remove('hidden');
    showError('This node requires an auth token: enter it above.');
  }

  async function api(method, path, body, extra) {
    const opts = { method, headers: headers(extra), cache: 'no-store' };
    // a Blob without a type: the request carries no Content-Type unless extra names one
    if (body !== undefined) opts.body = new Blob([body]);
    const r = await fetch(path, opts);
    if (r.status === 401) {
      needToken();
      throw new Error('unauthorized');
    }
    const text = await r.text();
    let json = null;
    try { json = text ? JSON.parse(text) : null; } catch (e) { json = null; }
    if (!r.ok) {
      const m = json && json.error ? json.error.message : r.status + ' ' + r.statusText;
      const err = new Error(m);
      err.status = r.status;
      throw err;
    }
    return json;
  }

  function fill(dl, rows) {
    dl.textContent = '';
    for (const [k, v] of rows) {
      const dt = document.createElement('dt');
      dt.textContent = k;
      const dd = document.createElement('dd');
      dd.textContent = v === null || v === undefined ? '—' : String(v);
      dl.append(dt, dd);
    }
  }

  function bytes(n) {
    if (n < 1024) return n + ' B';
    const u = ['KiB', 'MiB', 'GiB', 'TiB'];
    let i = -1;
    do { n /= 1024; i++; } while (n >= 1024 && i < u.length - 1);
    return n.toFixed(1) + ' ' + u[i] + ' (' + Math.round(n * Math.pow(1024, i + 1)) + ' B)';
  }

  async function refreshStatus() {
    const s = await api('GET', '/v1/status');
    $('node-id').textContent = s.node_id;
    fill($('node'), [
      ['node id', s.node_id], ['version', s.version], ['uptime', s.uptime_s + ' s'],
      ['read-only', s.read_only ? 'yes: ' + (s.read_only_reason || '') : 'no'],
      ['keys', s.store ? s.store.size : null],
    ]);
    fill($('wal'), [
      ['enabled', s.wal.enabled ? 'yes' : 'no (memory only)'], ['path', s.wal.path || '—'],
      ['durable', s.wal.durable ? 'yes (fdatasync before ack)' : 'no (auto_flush off)'],
      ['bytes', bytes(s.wal.bytes)], ['last LSN', s.wal.last_lsn],
    ]);
    const y = s.sync;
    fill($('sync'), [
      ['outbox', y.outbox_size], ['queued', y.queued], ['in flight', y.in_flight],
      ['acknowledged', y.acknowledged], ['failed', y.failed], ['retries', y.total_retries],
      ['ticks', y.ticks], ['last tick', y.last_tick_at],
      ['transport', y.transport.enabled ? 'on (' + y.transport.kind + ')' : 'off'],
      ['discovery', !y.discovery.enabled ? 'off' : y.discovery.port
        ? 'on (' + y.discovery.kind + ', port ' + y.discovery.port + ', ' + y.discovery.peers + ' found)'
        : 'on (' + y.discovery.kind + ')'],
      ['peers', Array.isArray(y.peers) ? y.peers.length : y.peers],
    ]);
    // One row per peer: who it is (learned from the peer), its state and lag.
    const rows = [];
    for (const p of Array.isArray(y.peers) ? y.peers : []) {
      rows.push([(p.node_id || '?') + ' — ' + p.url,
        (p.source === 'discovered' ? 'discovered, ' : '') + p.state + ', lag ' + p.lag_ops + ' ops / ' + p.lag_ms + ' ms, received ' +
        p.ops_received + ', sent ' + p.ops_sent +
        (p.refused_drift + p.refused_invalid ? ', refused ' + (p.refused_drift + p.refused_invalid) : '') +
        (p.hub ? ', hub: published ' + p.hub.published + ', acked ' + p.hub.acked +
          ', pending ' + p.hub.in_flight : '') +
        (p.last_error ? ' — ' + p.last_error : '')]);
    }
    fill($('peers'), rows);
    $('peers').classList.toggle('hidden', rows.length === 0);
    $('auth').classList.add('hidden');
  }

  function cell(tr, v, cls) {
    const td = document.createElement('td');
    td.textContent = v === null || v === undefined ? '—' : String(v);
    if (cls) td.className = cls;
    tr.append(td);
  }

  async function loadKeys() {
    const p = $('prefix').value;
    let q = '/v1/store?limit=20&prefix=' + encodeURIComponent(p);
    if (cursor) q += '&after=' + encodeURIComponent(cursor);
    const l = await api('GET', q);
    const tb = $('keys');
    tb.textContent = '';
    for (const it of l.items) {
      const tr = document.createElement('tr');
      tr.dataset.key = it.key;
      cell(tr, it.key); cell(tr, it.size); cell(tr, it.content_type, 'type');
      cell(tr, it.version); cell(tr, it.lsn); cell(tr, it.updated_at);
      tr.addEventListener('click', () => run(pick(it.key)));
      tb.append(tr);
    }
    nextCursor = l.more ? l.next : null;
    $('next-btn').disabled = !nextCursor;
    $('first-btn').disabled = pageStack.length === 0;
    $('keys-info').textContent = l.count === 0 ? 'No keys' + (p ? ' with this prefix.' : '.')
      : 'Page ' + (pageStack.length + 1) + ': ' + l.count + ' key' + (l.count === 1 ? '' : 's') +
        (l.more ? ', more after this page.' : '.');
  }

  // The form's state: Put is off while it holds a binary value as loaded.
  function formState() {
    const binary = !!(loaded && loaded.binary && $('put-key').value === loaded.key);
    $('put-btn').disabled = binary;
    $('put-value').disabled = binary;
    $('put-type').disabled = binary;
    $('put-value').placeholder = binary ? 'binary value: not editable here' : 'dark';
  }

  function setLoaded(l) {
    loaded = l;
    $('reload-btn').classList.add('hidden');
    formState();
  }

  async function pick(key) {
    try {
      const v = await api('GET', '/v1/store/' + encodeURIComponent(key));
      const binary = v.encoding !== 'utf-8';
      const type = v.content_type || '';
      $('put-key').value = key;
      $('put-value').value = binary ? '' : v.value;
      $('put-type').value = type;
      setLoaded({ key, version: v.version, binary, size: v.size, type });
      const typed = type ? ', ' + type : '';
      $('write-result').textContent = binary
        ? key + ' holds binary data (' + v.size + ' bytes' + typed + ', version ' + v.version +
          '): the dashboard does not edit it, so Put is off (softadastra store put ' + key +
          ' --file F replaces it).'
        : 'Loaded ' + key + ' (version ' + v.version + typed + ').';
    } catch (e) {
      if (e.status === 404) {
        $('put-value').value = '';
        $('put-type').value = '';
        setLoaded(null);
        $('write-result').textContent = key + ' does not exist (any more).';
      } else {
        throw e; // run shows it
      }
    }
  }

  // Runs p, an action of the user's (background false) or a refresh.
  function run(p, background) {
    const k = ++runs;
    return p.then(() => {
      if (errorRun && errorRun <= k && (!background || errorBackground)) showError('');
    }, (e) => {
      if (e.message !== 'unauthorized') showError(String(e.message || e), k, background);
    });
  }

  async function write(del) {
    const key = $('put-key').value;
    if (!key) { $('write-result').textContent = 'A key is needed.'; return; }
    const mine = loaded && loaded.key === key ? loaded : null;
    if (!del && mine && mine.binary) return; // Put is off for a binary value (formState)
    if (del && !window.confirm('Delete ' + key + (mine ? ' (version ' + mine.version + ')'
      : ' (whatever it holds: it was not loaded)') + '? This cannot be undone.')) {
      $('write-result').textContent = key + ' was not deleted.';
      return;
    }
    const path = '/v1/store/' + encodeURIComponent(key);
    // conditioned on what was loaded; a key not loaded is created, never overwritten
    const cond = mine ? { 'If-Match': '"' + mine.version + '"' }
      : del ? {} : { 'If-None-Match': '*' };
    const type = $('put-type').value.trim();
    if (!del && type) cond['Content-Type'] = type;
    let r;
    try {
      r = del ? await api('DELETE', path, undefined, cond)
        : await api('PUT', path, $('put-value').value, cond);
    } catch (e) {
      if (e.status !== 412) throw e;
      $('write-result').textContent = mine
        ? key + ' changed since you loaded it (version ' + mine.version + '): nothing was ' +
          (del ? 'deleted' : 'stored') + '. Reload it to see what it holds now.'
        : key + ' already exists: nothing was stored. Reload it to edit what it holds.';
      $('reload-btn').dataset.key = key;
      $('reload-btn').classList.remove('hidden');
      return;
    }
    setLoaded(del ? null : { key, version: r.version, binary: false, size: r.size,
      type: r.content_type || '' });
    $('write-result').textContent = (del ? 'Deleted ' : 'Stored ') + key + ' at LSN ' + r.lsn +
      (del ? '' : ', version ' + r.version + (r.content_type ? ', ' + r.content_type : '')) +
      (r.durable ? ' (durable).' : ' (not yet durable).');
    await Promise.all([loadKeys(), refreshStatus()]);
  }

  // ---- live changes: SSE over fetch --------------------------------------

  function setLive(state, text) {
    const l = $('live');
    l.className = 'pill ' + state;
    l.textContent = text;
  }

  function addChange(c) {
    const tb = $('changes');
    const tr = document.createElement('tr');
    tr.className = 'fresh';
    tr.dataset.key = c.key;
    cell(tr, c.lsn); cell(tr, c.op, 'op-' + c.op); cell(tr, c.key);
    cell(tr, c.op === 'delete' ? '—' : c.version); cell(tr, c.time);
    tb.prepend(tr);
    while (tb.children.length > MAX_CHANGES) tb.lastChild.remove();
    clearTimeout(statusTimer); // the WAL and sync numbers moved: refresh soon
    statusTimer = setTimeout(() => run(refreshStatus(), true), 300);
  }

  function handleEvent(ev) {
    if (ev.event === 'change' && ev.data) addChange(JSON.parse(ev.data));
    else if (ev.event === 'ready') setLive('on', 'live');
    else if (ev.event === 'gone') throw new Error('gone');
    else if (ev.event === 'bye') setLive('off', 'node stopping');
  }

  async function follow() {
    let lastId = null;
    let epoch = null; // the node's epoch (ready event): a resume sends EPOCH:LSN
    let retry = 2000;
    for (;;) {
      try {
        const h = headers({ 'Accept': 'text/event-stream' });
        if (lastId !== null) h['Last-Event-ID'] = epoch ? epoch + ':' + lastId : lastId;
        const r = await fetch('/v1/changes', { headers: h, cache: 'no-store' });
        if (r.status === 401) { needToken(); setLive('bad', 'needs token'); }
        // 410: the position is no longer kept, or is from another epoch (the node
        // was restored); 409: it is ahead of the node.  Either way: reload, follow on.
        else if (r.status === 410 || r.status === 409) {
          lastId = null;
          epoch = null;
          run(loadKeys(), true);
          continue;
        }
        else if (!r.ok) setLive('bad', 'error ' + r.status);
        else {
          const reader = r.body.pipeThrough(new TextDecoderStream()).getReader();
          let buf = '';
          let ev = { event: 'message', data: '', id: null };
          for (;;) {
            const { value, done } = await reader.read();
            if (done) break;
            buf += value.replace(/\r\n?/g, '\n');
            let nl;
            while ((nl = buf.indexOf('\n')) >= 0) {
              const line = buf.slice(0, nl);
              buf = buf.slice(nl + 1);
              if (line === '') { // end of an event
                if (ev.id !== null) lastId = ev.id;
                if (ev.event === 'ready') {
                  try { epoch = JSON.parse(ev.data).epoch || null; } catch (e) { epoch = null; }
                }
                handleEvent(ev);
                ev = { event: 'message', data: '', id: null };
                continue;
              }
              if (line[0] === ':') continue; // comment: heartbeat
              const i = line.indexOf(':');
              const f = i < 0 ? line : line.slice(0, i);
              let v = i < 0 ? '' : line.slice(i + 1);
              if (v[0] === ' ') v = v.slice(1);
              if (f === 'event') ev.event = v;
              else if (f === 'data') ev.data += (ev.data ? '\n' : '') + v;
              else if (f === 'id') ev.id = v;
              else if (f === 'retry' && /^\d+$/.test(v)) retry = parseInt(v, 10);
            }
          }
          setLive('off', 'reconnecting');
        }
      } catch (e) {
        if (e.message === 'gone') { lastId = null; run(loadKeys(), true); }
        setLive('off', 'reconnecting');
      }
      await new Promise((res) => setTimeout(res, retry));
    }
  }

  // ---- wiring ---------------------------------------------------------------

  $('auth').addEventListener('submit', (e) => {
    e.preventDefault();
    token = $('token').value;
    sessionStorage.setItem('sa_token', token);
    run(Promise.all([refreshStatus(), loadKeys()]));
  });
  $('search').addEventListener('submit', (e) => {
    e.preventDefault();
    pageStack = [];
    cursor = '';
    run(loadKeys());
  });
  $('next-btn').addEventListener('click', () => {
    if (!nextCursor) return;
    pageStack.push(cursor);
    cursor = nextCursor;
    run(loadKeys());
  });
  $('first-btn').addEventListener('click', () => {
    pageStack = [];
    cursor = '';
    run(loadKeys());
  });
  $('write').addEventListener('submit', (e) => { e.preventDefault(); run(write(false)); });
  $('del-btn').addEventListener('click', () => run(write(true)));
  $('put-key').addEventListener('input', formState);
  $('reload-btn').addEventListener('click', () => run(pick($('reload-btn').dataset.key)));

  run(Promise.all([refreshStatus(), loadKeys()]));
  setInterval(() => run(refreshStatus(), true), 5000);
  follow();
})();
