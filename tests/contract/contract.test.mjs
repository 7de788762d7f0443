// contract.test.mjs -- the node's answers against api/openapi.yaml.
//
// Starts real nodes (`softadastra serve` on 127.0.0.1:0, a temporary data
// directory, an auth token), sends real requests that cover every operation
// of the spec, its error cases included (400, 401, 404, 405, 410, 412, 413,
// 415, 503; every operation also without the token -- a 401 unless its
// security is [] --, with a '#' in its target and with a body announced over
// its limit), and checks every answer against the spec:
//   - its status is one the operation documents (for a path that is no
//     route, or a method a route lacks: x-unmatched-responses);
//   - its headers: each documented one present when required and matching
//     its schema, none that is neither documented nor a generic HTTP header
//     (Date, Content-Length, Connection, Transfer-Encoding, Keep-Alive);
//   - its body: the Content-Type is a documented media type (parameters the
//     spec names must be there; a documented range, */* or type/*, matches
//     when no documented type does, and always for a raw=1 answer of a key,
//     whose body is the value's bytes under the type it was put with, JSON
//     or not), a JSON body matches the schema (ajv), an SSE
//     stream's events match the schemas of x-events, and a response without
//     content has no body;
//   - a 405's Allow is exactly the spec's methods of the path, with HEAD for
//     GET and OPTIONS;
// and that every operation of the spec was exercised.  Each request also
// names the status it must get, so an error case that stops happening fails.
// It does not test what the answers mean beyond that (the e2e tests do).
//
// Usage: node contract.test.mjs SOFTADASTRA_BIN OPENAPI_YAML
// Every wait is bounded; the whole run is bounded by RUN_MS.  Nodes are
// stopped by their PID (SIGTERM, then SIGKILL).
import { spawn } from 'node:child_process';
import { mkdtempSync, readFileSync, rmSync } from 'node:fs';
import http from 'node:http';
import net from 'node:net';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import Ajv from 'ajv';
import addFormats from 'ajv-formats';
import YAML from 'yaml';

const RUN_MS = 120000;
const WAIT_MS = 15000;
const TOKEN = 'contract-test-token';
const MAX_VALUE = 4096; // --max-value-bytes: a 413 costs little
const MAX_BATCH = 65536; // --max-batch-bytes
const [bin, specPath] = process.argv.slice(2);
if (!bin || !specPath) {
  console.error('usage: node contract.test.mjs SOFTADASTRA_BIN OPENAPI_YAML');
  process.exit(2);
}
const sleep = (ms) => new Promise((r) => setTimeout(r, ms));

// ---- the spec ---------------------------------------------------------------

const spec = YAML.parse(readFileSync(specPath, 'utf8'));
const ajv = new Ajv({ strict: false, allErrors: true });
addFormats(ajv);
ajv.addFormat('binary', true);
// Schemas refer to '#/components/...': they are compiled against one root
// holding the spec's components, under the id "spec".
const rebase = (v) => JSON.parse(JSON.stringify(v).replaceAll('"#/components/', '"spec#/components/'));
ajv.addSchema({ $id: 'spec', components: rebase(spec.components) });
const compiled = new Map();
function validator(schema) {
  const k = JSON.stringify(schema);
  if (!compiled.has(k)) compiled.set(k, ajv.compile(rebase(schema)));
  return compiled.get(k);
}
// Follows a $ref to a response, header or parameter of the spec.
function deref(o) {
  for (let i = 0; o && o.$ref && i < 8; i++) {
    if (!o.$ref.startsWith('#/')) throw new Error(`external $ref ${o.$ref}`);
    const unescape = (p) => p.replaceAll('~1', '/').replaceAll('~0', '~');
    o = o.$ref.slice(2).split('/').reduce((a, p) => a?.[unescape(p)], spec);
  }
  if (!o) throw new Error('dangling $ref');
  return o;
}
const METHODS = ['get', 'put', 'post', 'delete', 'patch', 'head', 'options'];
const operations = []; // {path, method, op}
for (const [p, item] of Object.entries(spec.paths))
  for (const m of METHODS)
    if (item[m]) operations.push({ path: p, method: m.toUpperCase(), op: item[m] });

// The spec's path template of a request path, or null.  Exact paths first.
function pathOf(path) {
  if (spec.paths[path]) return path;
  for (const t of Object.keys(spec.paths)) {
    if (!t.includes('{')) continue;
    const escaped = t.replace(/[.*+?^$()|[\]\\]/g, '\\$&');
    const re = new RegExp(`^${escaped.replace(/\{[^}]+\}/g, '.+')}$`);
    if (re.test(path)) return t;
  }
  return null;
}

// ---- checking one answer ------------------------------------------------------

const GENERIC = new Set(['date', 'content-length', 'connection', 'transfer-encoding', 'keep-alive',
  'content-type']);
const failures = [];
const seen = new Map(); // "METHOD /template" -> Set of statuses
let exchanges = 0;

function mediaType(ct) {
  const [essence, ...params] = ct.split(';').map((s) => s.trim());
  return { essence: essence.toLowerCase(), params: params.filter(Boolean).map((p) => p.toLowerCase()) };
}

// Parses an SSE text into [{event, data}]; an event cut short at the end
// (the stream was closed mid-way) is left out.
function sseEvents(text) {
  const out = [];
  const blocks = text.split('\n\n');
  blocks.pop(); // '' after a complete event, else the cut one
  for (const block of blocks) {
    let event = 'message';
    const data = [];
    for (const line of block.split('\n')) {
      if (line.startsWith('event:')) event = line.slice(6).trim();
      else if (line.startsWith('data:')) data.push(line.slice(5).replace(/^ /, ''));
    }
    if (data.length) out.push({ event, data: data.join('\n') });
  }
  return out;
}

// Checks res against the responses object `responses` (status -> response);
// raw: the answer's body is a stored value's bytes (a documented range).
function checkAgainst(responses, res, problems, raw = false) {
  const st = String(res.status);
  const key = [st, `${st[0]}XX`, 'default'].find((k) => responses[k]);
  if (!key) {
    const listed = Object.keys(responses).join(', ');
    problems.push(`status ${res.status} is not documented (documented: ${listed})`);
    return;
  }
  const doc = deref(responses[key]);
  const hdrs = doc.headers || {};
  const documented = new Map(Object.entries(hdrs).map(([n, h]) => [n.toLowerCase(), deref(h)]));
  for (const [name, h] of documented) {
    const v = res.headers[name];
    if (v === undefined) {
      if (h.required) problems.push(`required header ${name} is missing`);
      continue;
    }
    if (h.schema && !validator(h.schema)(v))
      problems.push(`header ${name}: "${v}" does not match its schema`);
  }
  for (const name of Object.keys(res.headers))
    if (!GENERIC.has(name) && !documented.has(name)) problems.push(`header ${name} is not documented`);
  const content = doc.content;
  const ct = res.headers['content-type'];
  if (!content) {
    if (res.body.length)
      problems.push(`a ${res.status} documents no content but has a ${res.body.length}-byte body`);
    return;
  }
  if (!ct) {
    problems.push('no Content-Type');
    return;
  }
  const got = mediaType(ct);
  const entries = Object.entries(content);
  const fits = (k, range) => {
    const want = mediaType(k);
    const essence = range
      ? want.essence === '*/*' || (want.essence.endsWith('/*') && got.essence.startsWith(want.essence.slice(0, -1)))
      : want.essence === got.essence;
    return essence && want.params.every((p) => got.params.includes(p));
  };
  const match = (!raw && entries.find(([k]) => fits(k, false))) || entries.find(([k]) => fits(k, true));
  if (!match) {
    const listed = Object.keys(content).join(', ');
    problems.push(`Content-Type ${ct} is not documented (documented: ${listed})`);
    return;
  }
  const [, media] = match;
  if (raw) return; // a value's bytes: any type, any content
  if (got.essence === 'application/json') {
    let body;
    try {
      body = JSON.parse(res.body.toString('utf8'));
    } catch (e) {
      problems.push(`body is not JSON: ${e.message}`);
      return;
    }
    if (media.schema) {
      const v = validator(media.schema);
      if (!v(body)) problems.push(`body does not match the schema: ${ajv.errorsText(v.errors)}`);
    }
  } else if (got.essence === 'text/event-stream') {
    const events = sseEvents(res.body.toString('utf8'));
    const schemas = media['x-events'] || {};
    for (const e of events) {
      if (!schemas[e.event]) continue;
      let data;
      try {
        data = JSON.parse(e.data);
      } catch (err) {
        problems.push(`event ${e.event}: data is not JSON`);
        continue;
      }
      const v = validator(schemas[e.event]);
      if (!v(data)) problems.push(`event ${e.event}: ${ajv.errorsText(v.errors)}`);
    }
    res.events = events;
  }
}

// Checks one exchange against the spec; `expect` is the status (or list)
// this request must get.
function check(req, res, expect) {
  exchanges++;
  const problems = [];
  const path = req.path.split('?')[0];
  const tmpl = pathOf(path);
  const ok = Array.isArray(expect) ? expect.includes(res.status) : res.status === expect;
  if (!ok) problems.push(`status ${res.status}, want ${expect}`);
  const unmatched = spec['x-unmatched-responses'] || {};
  if (!tmpl) {
    checkAgainst(unmatched['no-route'] || {}, res, problems);
  } else {
    const item = spec.paths[tmpl];
    const op = item[req.method.toLowerCase()];
    if (!op) {
      checkAgainst(unmatched['no-method'] || {}, res, problems);
      if (res.status === 405) {
        const want = new Set(METHODS.filter((m) => item[m]).map((m) => m.toUpperCase()));
        if (want.has('GET')) want.add('HEAD');
        want.add('OPTIONS');
        const got = new Set((res.headers.allow || '').split(',').map((s) => s.trim()).filter(Boolean));
        const a = [...want].sort().join(', '), b = [...got].sort().join(', ');
        if (a !== b) problems.push(`Allow is "${b}", the spec's methods are "${a}"`);
      }
    } else {
      const k = `${req.method} ${tmpl}`;
      if (!seen.has(k)) seen.set(k, new Set());
      seen.get(k).add(res.status);
      // The query parameters sent are the operation's (unless the request
      // is about an undocumented one).
      const params = [...(item.parameters || []), ...(op.parameters || [])].map(deref);
      const q = new URLSearchParams(req.path.split('?')[1] || '');
      for (const name of q.keys())
        if (!req.undocumented && !params.some((p) => p.in === 'query' && p.name === name))
          problems.push(`query parameter ${name} is not documented`);
      checkAgainst(op.responses, res, problems, tmpl === '/v1/store/{key}' && q.get('raw') === '1');
    }
  }
  const label = `${req.method} ${req.path}${req.note ? ` (${req.note})` : ''} -> ${res.status}`;
  if (problems.length) {
    failures.push(`${label}: ${problems.join('; ')}`);
    console.log(`FAIL: ${label}\n      ${problems.join('\n      ')}`);
  } else {
    console.log(`ok    ${label}`);
  }
  return res;
}

// ---- HTTP ---------------------------------------------------------------------

// One request on its own connection.  Returns {status, headers (lower-case
// names, duplicates joined), body (Buffer)}.  A stream: once until(body so
// far) holds, awaits whileOpen() with the stream still open, then closes it.
function request(base, req) {
  return new Promise((resolve, reject) => {
    const headers = { ...(req.headers || {}) };
    if (req.token !== false) headers.Authorization = `Bearer ${TOKEN}`;
    const r = http.request(`${base}${req.path}`, { method: req.method, headers, agent: false });
    const timer = setTimeout(() => r.destroy(new Error(`no answer within ${WAIT_MS} ms`)), WAIT_MS);
    r.on('error', (e) => {
      clearTimeout(timer);
      reject(e);
    });
    r.on('response', (res) => {
      const chunks = [];
      const finish = () => {
        clearTimeout(timer);
        const hs = {};
        for (let i = 0; i < res.rawHeaders.length; i += 2) {
          const n = res.rawHeaders[i].toLowerCase();
          hs[n] = hs[n] === undefined ? res.rawHeaders[i + 1] : `${hs[n]}, ${res.rawHeaders[i + 1]}`;
        }
        resolve({ status: res.statusCode, headers: hs, body: Buffer.concat(chunks) });
      };
      let held = false;
      res.on('data', async (d) => {
        chunks.push(d);
        if (held || !req.until || !req.until(Buffer.concat(chunks).toString('utf8'))) return;
        held = true;
        try {
          await req.whileOpen?.();
        } finally {
          finish();
          r.destroy();
        }
      });
      res.on('end', finish);
      res.on('error', () => {});
    });
    if (req.body !== undefined) r.end(req.body);
    else r.end();
  });
}

// A request written by hand on a socket (targets and heads the http module
// refuses to send).  Reads the answer until the server closes or WAIT_MS.
function rawRequest(port, text) {
  return new Promise((resolve, reject) => {
    const s = net.connect(port, '127.0.0.1');
    const chunks = [];
    const timer = setTimeout(() => {
      s.destroy();
      reject(new Error(`no answer within ${WAIT_MS} ms`));
    }, WAIT_MS);
    s.on('connect', () => s.write(text));
    s.on('data', (d) => {
      chunks.push(d);
      const all = Buffer.concat(chunks);
      const end = all.indexOf('\r\n\r\n');
      if (end < 0) return;
      const len = /\r\ncontent-length: *(\d+)/i.exec(all.subarray(0, end).toString('latin1'));
      if (len && all.length >= end + 4 + Number(len[1])) s.end();
    });
    s.on('error', () => {});
    s.on('close', () => {
      clearTimeout(timer);
      const all = Buffer.concat(chunks);
      const end = all.indexOf('\r\n\r\n');
      if (end < 0) return reject(new Error(`no answer head: ${JSON.stringify(all.toString('latin1'))}`));
      const lines = all.subarray(0, end).toString('latin1').split('\r\n');
      const status = Number(lines[0].split(' ')[1]);
      const headers = {};
      for (const l of lines.slice(1)) {
        const i = l.indexOf(':');
        const n = l.slice(0, i).trim().toLowerCase();
        const v = l.slice(i + 1).trim();
        headers[n] = headers[n] === undefined ? v : `${headers[n]}, ${v}`;
      }
      resolve({ status, headers, body: all.subarray(end + 4) });
    });
  });
}

// ---- the nodes ------------------------------------------------------------------

const nodes = [];
const work = mkdtempSync(join(tmpdir(), 'sa-contract-'));

async function startNode(name, args) {
  const child = spawn(bin, ['serve', '--listen', '127.0.0.1:0', '--data-dir', join(work, name),
    '--node-id', name, '--auth-token', TOKEN, ...args], { stdio: ['ignore', 'pipe', 'pipe'] });
  const n = { name, child, out: '', err: '', exited: false };
  nodes.push(n);
  child.stdout.on('data', (d) => { n.out += d; });
  child.stderr.on('data', (d) => { n.err += d; });
  child.on('exit', (code, signal) => {
    n.exited = true;
    n.status = signal || code;
  });
  const deadline = Date.now() + WAIT_MS;
  while (Date.now() < deadline && !n.exited) {
    const m = n.out.match(/listening on http:\/\/127\.0\.0\.1:(\d+)/);
    if (m) {
      n.port = Number(m[1]);
      n.base = `http://127.0.0.1:${n.port}`;
      return n;
    }
    await sleep(20);
  }
  throw new Error(`node ${name} did not start: ${n.out}${n.err}`);
}

async function stopNodes() {
  for (const n of nodes) {
    if (n.exited) continue;
    n.child.kill('SIGTERM');
    const deadline = Date.now() + WAIT_MS;
    while (!n.exited && Date.now() < deadline) await sleep(20);
    if (!n.exited) {
      n.child.kill('SIGKILL');
      failures.push(`node ${n.name} did not stop within ${WAIT_MS} ms of SIGTERM`);
    } else if (n.status !== 0) {
      failures.push(`node ${n.name} ended with ${n.status}, not 0:\n${n.err}`);
    }
  }
}

const guard = setTimeout(async () => {
  console.log(`FAIL: the run took over ${RUN_MS} ms`);
  await stopNodes();
  process.exit(1);
}, RUN_MS);

// ---- the exchanges --------------------------------------------------------------

async function run() {
  const a = await startNode('contract', ['--max-value-bytes', String(MAX_VALUE),
    '--max-batch-bytes', String(MAX_BATCH), '--max-streams', '1']);
  const x = (req, expect) => request(a.base, req).then((res) => check(req, res, expect));
  const json = { 'Content-Type': 'application/json' };

  // the dashboard's files and the probes, without the token
  for (const p of ['/', '/dashboard', '/dashboard.js', '/dashboard.css', '/healthz'])
    await x({ method: 'GET', path: p, token: false }, 200);
  await x({ method: 'GET', path: '/readyz' }, 200);
  await x({ method: 'GET', path: '/metrics' }, 200);
  await x({ method: 'GET', path: '/v1/status' }, 200);
  await x({ method: 'GET', path: '/v1/sync/status' }, 200);
  await x({ method: 'POST', path: '/v1/sync/tick' }, 200);

  // one key: create, update, conditions, binary, limits
  const k = '/v1/store/contract/theme';
  await x({ method: 'PUT', path: k, body: 'dark' }, 201);
  await x({ method: 'PUT', path: k, body: 'light', headers: { 'If-Match': '"1"' } }, 200);
  await x({ method: 'PUT', path: k, body: 'x', headers: { 'If-Match': '"9"' }, note: 'stale version' }, 412);
  await x({ method: 'PUT', path: k, body: 'x', headers: { 'If-None-Match': '*' }, note: 'exists' }, 412);
  await x({ method: 'PUT', path: k, body: 'x', headers: { 'If-Match': '"2"', 'If-None-Match': '*' },
    note: 'both conditions' }, 400);
  await x({ method: 'PUT', path: k, body: 'x', headers: { 'If-Match': 'two' }, note: 'bad If-Match' }, 400);
  await x({ method: 'PUT', path: '/v1/store/contract/bin', body: Buffer.from([0, 1, 0xff, 0xfe]) }, 201);
  await x({ method: 'PUT', path: '/v1/store/contract/big', body: Buffer.alloc(MAX_VALUE + 1, 97),
    note: 'over max_value_bytes' }, 413);
  await x({ method: 'PUT', path: '/v1/store/a%01b', body: 'x', note: 'control byte in the key' }, 400);
  await x({ method: 'GET', path: k }, 200);
  await x({ method: 'GET', path: `${k}?raw=1` }, 200);
  await x({ method: 'GET', path: k, headers: { 'If-None-Match': '"2"' } }, 304);
  await x({ method: 'GET', path: '/v1/store/contract/bin' }, 200);
  await x({ method: 'GET', path: '/v1/store/contract/absent' }, 404);
  await x({ method: 'GET', path: `${k}?raw=maybe` }, 400);
  // content types (issue 25 item 3): a PUT's Content-Type is what a raw GET
  // answers with; a bad one is a 400
  const doc = '/v1/store/contract/doc';
  await x({ method: 'PUT', path: doc, body: '{"a":1}', headers: { 'Content-Type': 'application/json' } }, 201);
  for (const [path, want] of [[`${doc}?raw=1`, 'application/json'],
    ['/v1/store/contract/bin?raw=1', 'application/octet-stream']]) {
    const got = await x({ method: 'GET', path }, 200);
    if (got.headers['content-type'] !== want)
      failures.push(`GET ${path}: Content-Type ${got.headers['content-type']}, want ${want}`);
  }
  await x({ method: 'GET', path: doc }, 200);
  await x({ method: 'PUT', path: '/v1/store/contract/page', body: '<p>hi</p>',
    headers: { 'Content-Type': 'text/html; charset=utf-8' } }, 201);
  await x({ method: 'GET', path: '/v1/store/contract/page?raw=1' }, 200);
  await x({ method: 'PUT', path: doc, body: 'x', headers: { 'Content-Type': 'json' },
    note: 'Content-Type not a media type' }, 400);
  await x({ method: 'GET', path: '/v1/store/bad%zzkey', note: 'bad percent-encoding' }, 400);
  await x({ method: 'DELETE', path: k, headers: { 'If-Match': '"1"' }, note: 'stale version' }, 412);
  await x({ method: 'DELETE', path: k }, 200);
  await x({ method: 'DELETE', path: k, note: 'already gone' }, 404);

  // listing
  for (let i = 0; i < 3; i++) await x({ method: 'PUT', path: `/v1/store/list/k${i}`, body: `v${i}` }, 201);
  await x({ method: 'GET', path: '/v1/store?prefix=list/' }, 200);
  const page = await x({ method: 'GET', path: '/v1/store?prefix=list/&limit=2' }, 200);
  const next = JSON.parse(page.body).next;
  await x({ method: 'GET', path: `/v1/store?prefix=list/&limit=2&after=${encodeURIComponent(next)}` }, 200);
  await x({ method: 'GET', path: '/v1/store?values=1' }, 200);
  await x({ method: 'GET', path: '/v1/store?limit=0' }, 400);

  // batches
  const batch = JSON.stringify({ ops: [{ op: 'put', key: 'batch/a', value: 'A' },
    { op: 'put', key: 'batch/b', value: 'AAE=', encoding: 'base64' }, { op: 'delete', key: 'list/k0' }] });
  await x({ method: 'POST', path: '/v1/batch', headers: json, body: batch }, 200);
  // per-op conditions: batch/a is at version 1 (put above), batch/new is absent
  const casOk = JSON.stringify({ ops: [{ op: 'put', key: 'batch/a', value: 'A2', if_match: 1 },
    { op: 'put', key: 'batch/new', value: 'N', if_none_match: '*' }] });
  await x({ method: 'POST', path: '/v1/batch', headers: json, body: casOk, note: 'conditions hold' }, 200);
  const casBad = JSON.stringify({ ops: [{ op: 'put', key: 'batch/a', value: 'A3', if_match: 2 },
    { op: 'delete', key: 'batch/b', if_match: 1 }, { op: 'put', key: 'batch/new', value: 'X', if_none_match: '*' }] });
  const r412 = await x({ method: 'POST', path: '/v1/batch', headers: json, body: casBad,
    note: 'a condition fails' }, 412);
  const e412 = r412.status === 412 ? JSON.parse(r412.body).error : {};
  if (e412.op !== 2 || e412.key !== 'batch/new')
    failures.push(`POST /v1/batch (a condition fails): names op ${e412.op} "${e412.key}", want 2 "batch/new"`);
  await x({ method: 'POST', path: '/v1/batch', headers: json, note: 'both conditions',
    body: JSON.stringify({ ops: [{ op: 'delete', key: 'batch/a', if_match: 1, if_none_match: '*' }] }) }, 400);
  await x({ method: 'POST', path: '/v1/batch', headers: json, body: '{"ops":[', note: 'bad JSON' }, 400);
  // a prefix deleted at once; nothing under it; no prefix
  await x({ method: 'PUT', path: '/v1/store/gone/1', body: '1' }, 201);
  await x({ method: 'PUT', path: '/v1/store/gone/2', body: '2' }, 201);
  const rdp = await x({ method: 'DELETE', path: '/v1/store?prefix=gone%2F' }, 200);
  if (rdp.status === 200 && JSON.parse(rdp.body).deleted !== 2)
    failures.push(`DELETE /v1/store?prefix=gone/: deleted ${JSON.parse(rdp.body).deleted}, want 2`);
  await x({ method: 'DELETE', path: '/v1/store?prefix=gone%2F', note: 'nothing under it' }, 200);
  await x({ method: 'DELETE', path: '/v1/store', note: 'no prefix' }, 400);
  await x({ method: 'POST', path: '/v1/batch', headers: json, body: '{"ops":[]}', note: 'no ops' }, 400);
  await x({ method: 'POST', path: '/v1/batch', headers: { 'Content-Type': 'text/plain' }, body: batch }, 415);
  await x({ method: 'POST', path: '/v1/batch', headers: json, note: 'value over max_value_bytes',
    body: JSON.stringify({ ops: [{ op: 'put', key: 'batch/big', value: 'v'.repeat(MAX_VALUE + 1) }] }) }, 413);

  // the change feed: a page, a long-poll, a stream, a second stream over max_streams
  await x({ method: 'GET', path: '/v1/changes?since=0&include_values=1' }, 200);
  await x({ method: 'GET', path: '/v1/changes?since=0&limit=2&prefix=list/' }, 200);
  await x({ method: 'GET', path: '/v1/changes?since=now&wait=1', note: 'long-poll, nothing comes' }, 200);
  await x({ method: 'GET', path: '/v1/changes?limit=abc' }, 400);
  await x({ method: 'GET', path: '/v1/changes?wait=61' }, 400);
  const sse = { 'Accept': 'text/event-stream' };
  // A stream holds until its first change event; while it is open a second
  // one is over max_streams.
  const sres = await x({
    method: 'GET', path: '/v1/changes?since=0', headers: sse, note: 'stream',
    until: (text) => /event: change[^]*\n\n/.test(text),
    whileOpen: () => x({ method: 'GET', path: '/v1/changes', headers: sse, note: 'second stream' }, 503),
  }, 200);
  if (!sres.events?.some((e) => e.event === 'change')) failures.push('the stream carried no change event');

  // checked feed positions (issue 24): ahead of the node, from another epoch
  await x({ method: 'GET', path: '/v1/changes?since=999999', note: 'ahead of the node' }, 409);
  await x({ method: 'GET', path: '/v1/changes?since=1&epoch=0123456789abcdef',
    note: 'another epoch' }, 410);

  // an online backup: its head and a binary body
  const bres = await x({ method: 'GET', path: '/v1/backup', note: 'a backup' }, 200);
  if (bres.body.subarray(0, 8).toString('latin1') !== 'SABACKUP')
    failures.push('GET /v1/backup: the body does not start with the backup magic');

  // routes and methods that do not exist
  await x({ method: 'GET', path: '/nope' }, 404);
  await x({ method: 'GET', path: '/v1/nope', token: false, note: 'no token' }, [401, 404]);
  await x({ method: 'DELETE', path: '/v1/status' }, 405);
  await x({ method: 'POST', path: '/v1/store' }, 405);
  await x({ method: 'PATCH', path: '/v1/store/contract/theme', body: 'x' }, 405);
  await x({ method: 'GET', path: '/v1/sync/tick' }, 405);
  await x({ method: 'PUT', path: '/healthz', body: 'x', token: false }, 405);

  const auth = `Authorization: Bearer ${TOKEN}\r\n`;
  // every operation: without the token a 401, unless the spec says it needs
  // none (security: []); a target with '#' a 400; a body announced over the
  // route's limit a 413 (64 KiB on routes that read none, max_value_bytes
  // for a PUT, twice max_batch_bytes and 64 KiB for a batch)
  for (const { path, method, op } of operations) {
    const target = path.replace(/\{[^}]+\}/g, 'contract/any');
    const open = Array.isArray(op.security) && op.security.length === 0;
    if (!open) {
      await x({ method, path: target, token: false, note: 'no token',
        body: method === 'POST' || method === 'PUT' ? '{}' : undefined }, 401);
    } else if (method === 'GET') {
      // open by the spec: answered without the token (the probes by default)
      await x({ method, path: target, token: false, note: 'no token, open' }, 200);
    }
    const limit = method === 'PUT' ? MAX_VALUE
      : path === '/v1/batch' ? 2 * MAX_BATCH + (64 << 10) : 64 << 10;
    const head = `Host: 127.0.0.1\r\n${auth}`;
    for (const [text, expect, note] of [
      [`${method} ${target}#x HTTP/1.1\r\n${head}Connection: close\r\n\r\n`, 400, 'a # in the target'],
      [`${method} ${target} HTTP/1.1\r\n${head}Content-Length: ${limit + 1}\r\n\r\n`, 413,
        `a ${limit + 1}-byte body announced`],
    ]) check({ method, path: target, note }, await rawRequest(a.port, text), expect);
  }

  // a second node whose feed forgets fast: 410 below the floor.  The stub
  // transport fails work at once and a one-entry outbox compacts it.
  const b = await startNode('contract-floor', ['--enable-transport', '--max-retries', '1',
    '--retry-base-ms', '1', '--tick-interval-ms', '10', '--ack-timeout-ms', '1', '--outbox-max', '1']);
  const y = (req) => request(b.base, req);
  for (let i = 0; i < 5; i++) await y({ method: 'PUT', path: '/v1/store/hot', body: 'v' });
  const deadline = Date.now() + WAIT_MS;
  let gone = null;
  while (Date.now() < deadline) {
    await y({ method: 'PUT', path: '/v1/store/cold', body: 'v' });
    const req = { method: 'GET', path: '/v1/changes?since=0', note: 'below the floor' };
    const res = await y(req);
    if (res.status === 410) {
      gone = check(req, res, 410);
      break;
    }
    await sleep(20);
  }
  if (!gone) failures.push(`GET /v1/changes?since=0 never answered 410 within ${WAIT_MS} ms`);
}

let code = 0;
try {
  await run();
} catch (e) {
  failures.push(`the run stopped: ${e.stack || e}`);
}
await stopNodes();
clearTimeout(guard);

// Every operation of the spec was exercised; the documented statuses no
// request produced are listed (read-only, disk full, shutting down...).
const unseen = [];
for (const { path, method, op } of operations) {
  const k = `${method} ${path}`;
  const got = seen.get(k);
  if (!got) failures.push(`operation ${op.operationId} (${k}) was never exercised`);
  const missing = Object.keys(op.responses).filter((s) => !got?.has(Number(s)));
  const produced = got ? [...got].sort().join(' ') : 'none';
  const not = missing.length ? ` (not produced: ${missing.join(' ')})` : '';
  console.log(`coverage ${k}: ${produced}${not}`);
  if (missing.length) unseen.push(...missing.map((s) => `${k} ${s}`));
}
console.log(`${exchanges} exchanges, ${operations.length} operations, ` +
  `${unseen.length} documented answers not produced`);
if (failures.length) {
  console.log(`FAIL: ${failures.length} problem(s):\n  ${failures.join('\n  ')}`);
  code = 1;
} else {
  console.log('contract check passed');
}
rmSync(work, { recursive: true, force: true });
process.exit(code);
