// dashboard.test.mjs -- the dashboard in a real browser: Debian's chromium
// driven by playwright-core, against a real `softadastra serve` on 127.0.0.1
// with an auth token.
//
// It checks that the page loads under its Content-Security-Policy without a
// single violation, asks for the token and then shows status, WAL and sync;
// that a key written through the page's form shows up in the key browser
// (prefix search, paging); that a key written with curl appears live in the
// changes list without a reload; that a delete through the form asks first
// and shows as a delete; that a binary value is never wiped (Put is off for
// it); that writes carry the version loaded (a change made elsewhere since
// is a 412 shown as "changed since you loaded it", with a reload), and a
// key typed but not loaded is never overwritten blind; that a value's
// content type shows in the key browser and the form, a put through the
// form keeps it, changes it or drops it, a form put without one stores none
// (not the browser's text/plain), and a bad one is refused with the node's
// message.  It saves a screenshot (dashboard.png) in the output directory.
//
// Usage: node dashboard.test.mjs SOFTADASTRA_BIN OUT_DIR
// Every wait is bounded (WAIT_MS); a wait that runs out is a failure.
import { chromium } from 'playwright-core';
import { spawn, execFileSync } from 'node:child_process';
import { mkdtempSync, rmSync, readFileSync, mkdirSync, existsSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import assert from 'node:assert/strict';

const WAIT_MS = 20000;
const TOKEN = 'browser-test-token';
const [bin, outDir] = process.argv.slice(2);
if (!bin || !outDir) {
  console.error('usage: node dashboard.test.mjs SOFTADASTRA_BIN OUT_DIR');
  process.exit(2);
}
mkdirSync(outDir, { recursive: true });

const sleep = (ms) => new Promise((r) => setTimeout(r, ms));

// ---- the node ---------------------------------------------------------------

const work = mkdtempSync(join(tmpdir(), 'sa-browser-'));
const node = spawn(bin, ['serve', '--listen', '127.0.0.1:0', '--data-dir', join(work, 'data'),
  '--node-id', 'browser-node', '--auth-token', TOKEN], { stdio: ['ignore', 'pipe', 'pipe'] });
let nodeOut = '';
let nodeErr = '';
node.stdout.on('data', (d) => { nodeOut += d; });
node.stderr.on('data', (d) => { nodeErr += d; });
let nodeExit = null;
node.on('exit', (code, sig) => { nodeExit = { code, sig }; });

async function nodeUrl() {
  const end = Date.now() + WAIT_MS;
  while (Date.now() < end) {
    const m = nodeOut.match(/listening on (http:\/\/127\.0\.0\.1:\d+)/);
    if (m) return m[1];
    if (nodeExit) throw new Error('the node exited: ' + nodeErr);
    await sleep(20);
  }
  throw new Error('the node printed no start line: ' + nodeErr);
}

function curl(url, method, path, body, type) {
  const args = ['-fsS', '--max-time', '10', '-X', method, '-H', 'Authorization: Bearer ' + TOKEN];
  if (type) args.push('-H', 'Content-Type: ' + type);
  if (body !== undefined) args.push('--data-binary', body);
  return execFileSync('curl', [...args, url + path], { encoding: 'utf8' });
}

async function stopNode() {
  if (nodeExit) return nodeExit;
  node.kill('SIGTERM');
  const end = Date.now() + WAIT_MS;
  while (!nodeExit && Date.now() < end) await sleep(20);
  if (!nodeExit) {
    node.kill('SIGKILL');
    throw new Error('the node did not stop on SIGTERM');
  }
  return nodeExit;
}

// ---- the test ---------------------------------------------------------------

let context = null;
const userDataDir = mkdtempSync(join(tmpdir(), 'sa-chromium-'));
let failed = false;
try {
  const url = await nodeUrl();
  context = await chromium.launchPersistentContext(userDataDir, {
    executablePath: '/usr/bin/chromium',
    headless: true,
    args: ['--headless', '--no-sandbox', '--disable-gpu', '--disable-background-networking',
      '--disable-component-update', '--disable-sync', '--no-first-run'],
    viewport: { width: 1280, height: 900 },
    timeout: WAIT_MS,
  });
  context.setDefaultTimeout(WAIT_MS);
  const page = context.pages()[0] || await context.newPage();
  const problems = [];
  const dialogs = [];
  // the browser logs every 401 (before the token), 412 (the conflicts below) and 400 (the
  // bad content type below) it gets
  page.on('console', (m) => { if (m.type() === 'error' && !/\b(400|401|412)\b/.test(m.text())) problems.push('console: ' + m.text()); });
  page.on('pageerror', (e) => problems.push('page error: ' + e.message));
  await page.exposeFunction('__cspViolation', (d) => problems.push('CSP violation: ' + d));
  await page.addInitScript(() => {
    document.addEventListener('securitypolicyviolation',
      (e) => window.__cspViolation(e.violatedDirective + ' ' + e.blockedURI));
  });

  // The page, its headers, and the token prompt.
  const resp = await page.goto(url + '/');
  assert.equal(resp.status(), 200);
  const csp = resp.headers()['content-security-policy'] || '';
  assert.match(csp, /script-src 'self'/);
  assert.doesNotMatch(csp, /unsafe-inline/);
  await page.waitForSelector('#auth:not(.hidden)');
  await page.fill('#token', TOKEN);
  await page.click('#auth button[type=submit]');
  await page.waitForFunction(() => document.getElementById('node-id').textContent === 'browser-node');
  const walText = await page.textContent('#wal');
  assert.match(walText, /browser-node\.wal/);
  assert.match(walText, /fdatasync/);
  assert.match(await page.textContent('#sync'), /outbox/);
  await page.waitForFunction(() => document.getElementById('live').textContent === 'live');

  // A key through the form shows up in the key browser.
  await page.evaluate(() => { window.__noReload = true; });
  await page.fill('#put-key', 'browser/hello');
  await page.fill('#put-value', 'from the form');
  await page.click('#put-btn');
  await page.waitForSelector('#keys tr[data-key="browser/hello"]');
  assert.match(await page.textContent('#write-result'), /Stored browser\/hello at LSN 1/);

  // A key written with curl appears live in the changes list, no reload.
  curl(url, 'PUT', '/v1/store/curl%2Flive', 'from curl');
  await page.waitForSelector('#changes tr[data-key="curl/live"]');
  assert.equal(await page.evaluate(() => window.__noReload), true, 'the page reloaded');
  const row = await page.textContent('#changes tr[data-key="curl/live"]');
  assert.match(row, /^2put/);

  // Prefix search and paging (20 keys a page).
  const ops = [];
  for (let i = 0; i < 25; i++) ops.push({ op: 'put', key: 'page/' + String(i).padStart(2, '0'), value: 'v' });
  curl(url, 'POST', '/v1/batch', JSON.stringify({ ops }), 'application/json');
  await page.fill('#prefix', 'page/');
  await page.click('#search-btn');
  await page.waitForSelector('#keys tr[data-key="page/19"]');
  assert.equal(await page.locator('#keys tr').count(), 20);
  await page.click('#next-btn');
  await page.waitForSelector('#keys tr[data-key="page/24"]');
  assert.equal(await page.locator('#keys tr').count(), 5);
  assert.match(await page.textContent('#keys-info'), /Page 2: 5 keys/);
  await page.click('#first-btn');
  await page.waitForSelector('#keys tr[data-key="page/00"]');
  await page.waitForSelector('#changes tr[data-key="page/24"]'); // the batch came live too

  // A delete through the form.
  await page.fill('#prefix', '');
  await page.click('#search-btn');
  await page.fill('#put-key', 'browser/hello');
  // Delete asks first: dismissed, nothing happens
  page.once('dialog', (d) => { dialogs.push(d.message()); d.dismiss(); });
  await page.click('#del-btn');
  await page.waitForFunction(() => /browser\/hello was not deleted/.test(document.getElementById('write-result').textContent));
  assert.match(dialogs.pop(), /^Delete browser\/hello \(version 1\)\? This cannot be undone\.$/);
  assert.equal(curl(url, 'GET', '/v1/store/browser%2Fhello?raw=1'), 'from the form');
  page.once('dialog', (d) => { dialogs.push(d.message()); d.accept(); });
  await page.click('#del-btn');
  await page.waitForFunction(() => [...document.querySelectorAll('#changes tr[data-key="browser/hello"]')]
    .some((tr) => tr.children[1].textContent === 'delete'));
  await page.waitForFunction(() => !document.querySelector('#keys tr[data-key="browser/hello"]'));
  await page.fill('#prefix', 'settings/');
  await page.click('#search-btn');
  await page.fill('#put-key', 'settings/theme');
  await page.fill('#put-value', 'dark');
  await page.click('#put-btn');
  await page.waitForSelector('#keys tr[data-key="settings/theme"]');
  await page.fill('#prefix', '');
  await page.click('#search-btn');
  await page.waitForSelector('#keys tr[data-key="page/00"]');
  await page.waitForSelector('#changes tr[data-key="settings/theme"]');
  // form put 1, curl put 2, the batch 3 (one LSN), form delete 4, form put 5:
  // the WAL card follows the live feed.
  await page.waitForFunction(() => document.querySelector('#wal dd:last-of-type').textContent === '5');

  // A binary value is not wiped: picked, Put is off and the box stays empty.
  execFileSync('sh', ['-c', `printf 'a\\000b\\377c' | curl -fsS --max-time 10 -X PUT -H 'Authorization: Bearer ${TOKEN}' --data-binary @- ${url}/v1/store/bin%2Fblob`]);
  const rawBin = () => execFileSync('curl', ['-fsS', '--max-time', '10', '-H', 'Authorization: Bearer ' + TOKEN,
    url + '/v1/store/bin%2Fblob?raw=1']);
  assert.deepEqual([...rawBin()], [0x61, 0, 0x62, 0xff, 0x63]);
  await page.fill('#prefix', 'bin/');
  await page.click('#search-btn');
  await page.click('#keys tr[data-key="bin/blob"]');
  await page.waitForFunction(() => /holds binary data \(5 bytes/.test(document.getElementById('write-result').textContent));
  assert.equal(await page.isDisabled('#put-btn'), true, 'Put is on for a binary value');
  assert.equal(await page.isDisabled('#put-value'), true);
  assert.equal(await page.inputValue('#put-value'), '');
  await page.evaluate(() => document.getElementById('write').requestSubmit()); // Enter in the form
  await sleep(300);
  assert.deepEqual([...rawBin()], [0x61, 0, 0x62, 0xff, 0x63], 'the binary value was changed');
  await page.fill('#put-key', 'bin/other'); // another key: Put is on again
  assert.equal(await page.isDisabled('#put-btn'), false);

  // Writes carry the version loaded: a change elsewhere since is a 412.
  await page.fill('#prefix', 'settings/');
  await page.click('#search-btn');
  await page.click('#keys tr[data-key="settings/theme"]');
  await page.waitForFunction(() => /Loaded settings\/theme \(version 1\)/.test(document.getElementById('write-result').textContent));
  curl(url, 'PUT', '/v1/store/settings%2Ftheme', 'light'); // someone else: version 2
  await page.fill('#put-value', 'blue');
  await page.click('#put-btn');
  await page.waitForFunction(() => /changed since you loaded it/.test(document.getElementById('write-result').textContent));
  assert.equal(curl(url, 'GET', '/v1/store/settings%2Ftheme?raw=1'), 'light', 'overwritten blind');
  await page.click('#reload-btn');
  await page.waitForFunction(() => document.getElementById('put-value').value === 'light');
  assert.match(await page.textContent('#write-result'), /Loaded settings\/theme \(version 2\)/);
  await page.fill('#put-value', 'blue');
  await page.click('#put-btn');
  await page.waitForFunction(() => /Stored settings\/theme at LSN \d+, version 3/.test(document.getElementById('write-result').textContent));
  assert.equal(curl(url, 'GET', '/v1/store/settings%2Ftheme?raw=1'), 'blue');
  // a delete conditioned the same way: changed elsewhere, not deleted
  curl(url, 'PUT', '/v1/store/settings%2Ftheme', 'green'); // version 4
  page.once('dialog', (d) => d.accept());
  await page.click('#del-btn');
  await page.waitForFunction(() => /changed since you loaded it \(version 3\): nothing was deleted/.test(document.getElementById('write-result').textContent));
  assert.equal(curl(url, 'GET', '/v1/store/settings%2Ftheme?raw=1'), 'green');
  // a key typed, not loaded, that exists: not overwritten
  await page.fill('#put-key', 'curl/live');
  await page.fill('#put-value', 'typed');
  await page.click('#put-btn');
  await page.waitForFunction(() => /curl\/live already exists: nothing was stored/.test(document.getElementById('write-result').textContent));
  assert.equal(curl(url, 'GET', '/v1/store/curl%2Flive?raw=1'), 'from curl');

  // Content types (issue 25 item 3).
  const rawType = (path) => {
    const head = execFileSync('curl', ['-fsS', '-I', '--max-time', '10', '-H',
      'Authorization: Bearer ' + TOKEN, url + path + '?raw=1'], { encoding: 'utf8' });
    const m = head.match(/^content-type: *(.*?)\r?$/im);
    return m ? m[1] : null;
  };
  const result = () => page.textContent('#write-result');
  // a form put with the field empty stores none (not the browser's text/plain)
  await page.fill('#put-key', 'ct/form');
  await page.fill('#put-value', 'typed in the form');
  await page.fill('#put-type', '');
  await page.click('#put-btn');
  await page.waitForFunction(() => /Stored ct\/form at LSN \d+, version 1 \(/.test(document.getElementById('write-result').textContent));
  assert.equal(rawType('/v1/store/ct%2Fform'), 'application/octet-stream');
  assert.equal(JSON.parse(curl(url, 'GET', '/v1/store/ct%2Fform')).content_type, null);
  // a typed value: its type in the key browser and in the form
  curl(url, 'PUT', '/v1/store/ct%2Fdoc', '{"a":1}', 'application/json');
  execFileSync('sh', ['-c', `printf 'P\\000G' | curl -fsS --max-time 10 -X PUT -H 'Authorization: Bearer ${TOKEN}' -H 'Content-Type: image/png' --data-binary @- ${url}/v1/store/ct%2Fpng`]);
  await page.fill('#prefix', 'ct/');
  await page.click('#search-btn');
  await page.waitForSelector('#keys tr[data-key="ct/png"]');
  assert.equal(await page.textContent('#keys tr[data-key="ct/doc"] td.type'), 'application/json');
  assert.equal(await page.textContent('#keys tr[data-key="ct/form"] td.type'), '—');
  await page.click('#keys tr[data-key="ct/png"]');
  await page.waitForFunction(() => /holds binary data \(3 bytes, image\/png, version 1/.test(document.getElementById('write-result').textContent));
  assert.equal(await page.isDisabled('#put-type'), true);
  await page.click('#keys tr[data-key="ct/doc"]');
  await page.waitForFunction(() => /Loaded ct\/doc \(version 1, application\/json\)/.test(document.getElementById('write-result').textContent));
  assert.equal(await page.inputValue('#put-type'), 'application/json');
  assert.equal(await page.isDisabled('#put-type'), false);
  // a put keeps the type loaded, changes it, or drops it
  await page.fill('#put-value', '{"a":2}');
  await page.click('#put-btn');
  await page.waitForFunction(() => /version 2, application\/json \(/.test(document.getElementById('write-result').textContent));
  assert.equal(rawType('/v1/store/ct%2Fdoc'), 'application/json');
  assert.equal(curl(url, 'GET', '/v1/store/ct%2Fdoc?raw=1'), '{"a":2}');
  await page.fill('#put-type', 'text/plain; charset=utf-8');
  await page.click('#put-btn');
  await page.waitForFunction(() => /version 3, text\/plain; charset=utf-8 \(/.test(document.getElementById('write-result').textContent));
  assert.equal(rawType('/v1/store/ct%2Fdoc'), 'text/plain; charset=utf-8');
  await page.fill('#put-type', '');
  await page.click('#put-btn');
  await page.waitForFunction(() => /version 4 \(/.test(document.getElementById('write-result').textContent));
  assert.equal(rawType('/v1/store/ct%2Fdoc'), 'application/octet-stream');
  // a bad one: the node's message, nothing stored
  await page.fill('#put-type', 'json');
  await page.fill('#put-value', 'not stored');
  await page.click('#put-btn');
  await page.waitForFunction(() => /not a media type/.test(document.getElementById('error').textContent));
  assert.match(await result(), /version 4 \(/);
  assert.equal(curl(url, 'GET', '/v1/store/ct%2Fdoc?raw=1'), '{"a":2}');
  // a refresh in the background (a change from elsewhere schedules one)
  // leaves the user's error in place
  const refreshed = page.waitForResponse((r) => r.url().endsWith('/v1/status') && r.ok(), { timeout: 10000 });
  curl(url, 'PUT', '/v1/store/ct%2Felsewhere', 'x');
  await refreshed;
  await page.evaluate(() => new Promise((res) => setTimeout(res, 50))); // its handler ran
  assert.match(await page.textContent('#error'), /not a media type/);
  // an earlier action that ends after a failed one leaves its error in
  // place: the key list a good put reloads is held until the next put failed
  let release;
  const held = new Promise((res) => { release = res; });
  await page.route(/\/v1\/store\?limit=/, async (route) => { await held; await route.continue(); });
  await page.fill('#put-type', '');
  await page.fill('#put-value', '{"a":3}');
  await page.click('#put-btn');
  await page.waitForFunction(() => /version 5 \(/.test(document.getElementById('write-result').textContent));
  await page.fill('#put-type', 'yaml');
  await page.click('#put-btn');
  await page.waitForFunction(() => /'yaml': not a media type/.test(document.getElementById('error').textContent));
  const listed = page.waitForResponse((r) => r.url().includes('/v1/store?limit='), { timeout: 10000 });
  release();
  await listed;
  await page.unroute(/\/v1\/store\?limit=/);
  await page.evaluate(() => new Promise((res) => setTimeout(res, 50)));
  assert.match(await page.textContent('#error'), /'yaml': not a media type/);
  assert.equal(curl(url, 'GET', '/v1/store/ct%2Fdoc?raw=1'), '{"a":3}');
  await page.fill('#put-type', '');

  assert.deepEqual(problems, [], 'problems in the page');
  const shot = join(outDir, 'dashboard.png');
  await page.screenshot({ path: shot, fullPage: true });
  assert.ok(existsSync(shot) && readFileSync(shot).length > 1000);
  console.log('screenshot: ' + shot);
} catch (e) {
  failed = true;
  console.error('FAIL: ' + (e && e.stack ? e.stack : e));
  try {
    const pages = context ? context.pages() : [];
    if (pages[0]) await pages[0].screenshot({ path: join(outDir, 'dashboard-failure.png'), fullPage: true });
  } catch (e2) { /* the failure above is what matters */ }
  console.error('node stderr:\n' + nodeErr);
} finally {
  if (context) await context.close().catch(() => {});
  const ex = await stopNode().catch((e) => { failed = true; console.error('FAIL: ' + e.message); return null; });
  if (ex && ex.code !== 0) { failed = true; console.error('FAIL: the node exited with ' + JSON.stringify(ex)); }
  rmSync(userDataDir, { recursive: true, force: true });
  rmSync(work, { recursive: true, force: true });
}
console.log(failed ? 'browser test: FAILED' : 'browser test: PASSED');
process.exit(failed ? 1 : 0);
