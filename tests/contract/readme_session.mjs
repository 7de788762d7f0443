// readme_session.mjs -- README's "A session" runs as written: every `$ `
// line of its ```sh blocks is run in order against a fresh node, and what it
// prints must be the lines under it in the README.
//
// What it is: a check that the session a new user copies is exact (issue 25
// item 11).  What it is not: a test of the node (the e2e suites are); it
// needs no npm package, only node, sh and curl.
//
// How each line runs, in a fresh temporary directory holding
// build/server/softadastra (a link to the binary under test), with the
// binary's directory first on PATH:
//   - `build/server/softadastra serve & NODE=$!` starts the node on a free
//     port (SOFTADASTRA_LISTEN=127.0.0.1:0) and waits for its start line;
//   - `kill -9 $NODE` waits STORE_SETTLE_MS first (the node commits its
//     store at most store_commit_ms after an answer; the README's restart
//     line shows a store that had committed both writes) and kills it;
//   - any other line runs under sh with SOFTADASTRA_URL set to the node and
//     "127.0.0.1:8080" in it replaced by the node's address; its stdout is
//     compared (curl's progress meter, which a terminal does not show, goes
//     to stderr here).
// Output is compared line by line after the node's address is written back
// as 127.0.0.1:8080 and the fields that differ between runs are blanked:
// "hlc":<digits>, the uptime, and the tick count and time of sync status
// (the node's own tick runs every second).
//
// Usage: node readme_session.mjs README.md SOFTADASTRA_BIN
// Prints "FAIL: ..." and exits 1 on the first difference; every wait is
// bounded (WAIT_MS).
import { spawn, execFileSync } from 'node:child_process';
import { mkdtempSync, mkdirSync, readFileSync, rmSync, symlinkSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join, resolve, dirname } from 'node:path';

const WAIT_MS = 20000;
const STORE_SETTLE_MS = 1000;
const [readme, binArg] = process.argv.slice(2);
if (!readme || !binArg) {
  console.error('usage: node readme_session.mjs README.md SOFTADASTRA_BIN');
  process.exit(2);
}
const bin = resolve(binArg);
const sleep = (ms) => new Promise((r) => setTimeout(r, ms));

// The session: the ```sh blocks between "## A session" and the next "## ".
function session(text) {
  const start = text.indexOf('\n## A session\n');
  if (start < 0) throw new Error('README has no "## A session" section');
  const rest = text.slice(start + 1);
  const end = rest.indexOf('\n## ', 1);
  const sec = end < 0 ? rest : rest.slice(0, end);
  const steps = [];
  const re = /```sh\n([\s\S]*?)```/g;
  let m;
  while ((m = re.exec(sec)) !== null) {
    for (const line of m[1].replace(/\n$/, '').split('\n')) {
      if (line.startsWith('$ ')) steps.push({ cmd: line.slice(2), want: [] });
      else if (steps.length) steps[steps.length - 1].want.push(line);
      else throw new Error('a block starts with output, not a "$ " line: ' + line);
    }
  }
  if (!steps.length) throw new Error('the session holds no "$ " lines');
  return steps;
}

function normalize(text, addr) {
  return text.split(addr).join('127.0.0.1:8080')
    .replace(/"hlc":\d+/g, '"hlc":N')
    .replace(/^(  uptime   : )\d+s$/gm, '$1Ns')
    .replace(/^(  ticks        : )\d+$/gm, '$1N')
    .replace(/^(  last tick    : ).*$/gm, '$1T')
    .replace(/\n$/, '')
    .split('\n');
}

const work = mkdtempSync(join(tmpdir(), 'sa-readme-'));
mkdirSync(join(work, 'build', 'server'), { recursive: true });
symlinkSync(bin, join(work, 'build', 'server', 'softadastra'));
const env = { ...process.env, PATH: dirname(bin) + ':' + process.env.PATH,
  SOFTADASTRA_LISTEN: '127.0.0.1:0' };
for (const k of Object.keys(env)) if (k.startsWith('SOFTADASTRA_') && k !== 'SOFTADASTRA_LISTEN') delete env[k];

let node = null;
let addr = null;
const failures = [];

async function startNode() {
  const n = { child: spawn(join('build', 'server', 'softadastra'), ['serve'],
    { cwd: work, env, stdio: ['ignore', 'pipe', 'pipe'] }), out: '', err: '', exit: null };
  n.child.stdout.on('data', (d) => { n.out += d; });
  n.child.stderr.on('data', (d) => { n.err += d; });
  n.child.on('exit', (code, sig) => { n.exit = { code, sig }; });
  const end = Date.now() + WAIT_MS;
  while (Date.now() < end) {
    const m = n.out.match(/^[^\n]*listening on http:\/\/(127\.0\.0\.1:\d+)[^\n]*\n/m);
    if (m) {
      addr = m[1];
      node = n;
      return m[0];
    }
    if (n.exit) break;
    await sleep(20);
  }
  throw new Error('the node did not start: ' + n.out + n.err);
}

async function waitExit(n) {
  const end = Date.now() + WAIT_MS;
  while (!n.exit && Date.now() < end) await sleep(20);
  return n.exit;
}

try {
  for (const step of session(readFileSync(readme, 'utf8'))) {
    let got;
    if (step.cmd === 'build/server/softadastra serve & NODE=$!') {
      got = await startNode();
    } else if (step.cmd === 'kill -9 $NODE') {
      if (!node) throw new Error('kill -9 $NODE before a node was started');
      await sleep(STORE_SETTLE_MS);
      node.child.kill('SIGKILL');
      if (!await waitExit(node)) throw new Error('the node did not die on SIGKILL');
      node = null;
      got = '';
    } else {
      if (!addr) throw new Error(`"${step.cmd}" before a node was started`);
      const cmd = step.cmd.split('127.0.0.1:8080').join(addr);
      try {
        got = execFileSync('sh', ['-c', cmd], { cwd: work, timeout: WAIT_MS, stdio: ['ignore', 'pipe', 'pipe'],
          env: { ...env, SOFTADASTRA_URL: 'http://' + addr }, encoding: 'utf8' });
      } catch (e) {
        throw new Error(`"${step.cmd}" failed (${e.status}): ${e.stdout || ''}${e.stderr || ''}`);
      }
    }
    const have = got === '' ? [] : normalize(got, addr);
    const want = step.want.length ? normalize(step.want.join('\n'), addr) : [];
    if (have.join('\n') !== want.join('\n')) {
      failures.push(`"$ ${step.cmd}" printed:\n${have.join('\n')}\nthe README says:\n${want.join('\n')}`);
      break;
    }
    console.log('ok    $ ' + step.cmd);
  }
} catch (e) {
  failures.push(e.message);
} finally {
  if (node) {
    node.child.kill('SIGTERM');
    if (!await waitExit(node)) node.child.kill('SIGKILL');
  }
  rmSync(work, { recursive: true, force: true });
}
for (const f of failures) console.log('FAIL: ' + f);
console.log(failures.length ? 'README session: FAILED' : 'README session: PASSED');
process.exit(failures.length ? 1 : 0);
