// bench/h2_load.mjs: one browser load of "a page + 20 assets + 10 WebSockets"
// against one server, repeated, for bench/h2.sh. Not run by hand (h2.sh
// writes the site and starts the servers); the client is Chromium driven by
// playwright-core (tests/browser/node_modules: `npm ci` there).
//
// Usage: node bench/h2_load.mjs --url URL --port PORT --reps N --http h2|h1
//                               --out FILE.json --netlog-dir DIR [--metrics URL]
//
// Each repetition launches a fresh Chromium (so no connection, TLS session
// or cache is shared with the previous one) with a NetLog of its own, loads
// URL (the page then fetches its 20 assets and, on `load`, opens 10
// WebSockets that each echo 3 messages), and records:
//   - wall_ms: from navigation start to the last echo (the page's own
//     performance.now(); launching the browser is not counted);
//   - established: TCP connections to PORT the server side holds at that
//     moment (`ss`, server-side; the page keeps its WebSockets open until
//     after the count, and Chromium closes no connection of its own earlier);
//   - tcp_connects / tls_handshakes: the browser's TCP_CONNECT and
//     SSL_CONNECT events in its NetLog (exact, every one the browser made);
//   - the protocols the page and the assets came over (nextHopProtocol);
//   - with --metrics (wssd's admin /metrics): the growth of
//     wssd_http2_connections_total and wssd_websocket_upgrades_total{http}.
// `--http h1` launches Chromium with --disable-http2 (it offers only
// http/1.1 in ALPN); the server is the same process.
// Writes FILE.json: {"reps": [...], "errors": [...]}. Bounded: 60 s per load.

import { execFileSync } from 'node:child_process';
import { readFileSync, writeFileSync, rmSync } from 'node:fs';
import path from 'node:path';
import { fileURLToPath } from 'node:url';

const here = path.dirname(fileURLToPath(import.meta.url));
const { chromium } = await import(
  path.join(here, '..', 'tests', 'browser', 'node_modules', 'playwright-core', 'index.mjs')
);

// The binary and arguments the browser tests use, plus a self-signed
// certificate accepted.
const { CHROMIUM, CHROMIUM_ARGS: TEST_ARGS } = await import(
  path.join(here, '..', 'tests', 'browser', 'chromium.mjs')
);
const CHROMIUM_ARGS = [...TEST_ARGS, '--ignore-certificate-errors'];

function args() {
  const out = {};
  const argv = process.argv.slice(2);
  for (let i = 0; i < argv.length; i += 2) {
    if (!argv[i].startsWith('--') || argv[i + 1] === undefined) {
      throw new Error(`bad argument ${argv[i]} (see the header of bench/h2_load.mjs)`);
    }
    out[argv[i].slice(2)] = argv[i + 1];
  }
  for (const need of ['url', 'port', 'reps', 'http', 'out', 'netlog-dir']) {
    if (!out[need]) throw new Error(`--${need} is required`);
  }
  if (!['h1', 'h2'].includes(out.http)) throw new Error(`--http must be h1 or h2, not ${out.http}`);
  return out;
}

/** Established TCP connections whose local port is PORT (the server side), from `ss`. */
function established(port) {
  const text = execFileSync('ss', ['-Htn', 'state', 'established', `( sport = :${port} )`], {
    encoding: 'utf8',
  });
  return text.split('\n').filter((l) => l.trim()).length;
}

/** The counters of wssd's /metrics this benchmark reads (0 when absent). */
async function wssdCounters(url) {
  const text = await (await fetch(url)).text();
  const one = (re) => {
    const m = text.match(re);
    return m ? Number(m[1]) : 0;
  };
  return {
    http2_connections: one(/^wssd_http2_connections_total(?:\{\})? (\d+)/m),
    ws_upgrades_h1: one(/^wssd_websocket_upgrades_total\{http="1\.1"\} (\d+)/m),
    ws_upgrades_h2: one(/^wssd_websocket_upgrades_total\{http="2"\} (\d+)/m),
  };
}

/** TCP_CONNECT and SSL_CONNECT begin events in a finished NetLog file. */
function netlogCounts(file) {
  const log = JSON.parse(readFileSync(file, 'utf8'));
  const types = log.constants.logEventTypes;
  const begin = log.constants.logEventPhase.PHASE_BEGIN;
  const count = (name) => log.events.filter((e) => e.type === types[name] && e.phase === begin).length;
  return { tcp_connects: count('TCP_CONNECT'), tls_handshakes: count('SSL_CONNECT') };
}

async function oneLoad(opts, rep) {
  const netlog = path.join(opts['netlog-dir'], `netlog-${opts.http}-${rep}.json`);
  const extra = [`--log-net-log=${netlog}`, '--net-log-capture-mode=Default'];
  if (opts.http === 'h1') extra.push('--disable-http2');
  const browser = await chromium.launch({ executablePath: CHROMIUM, args: [...CHROMIUM_ARGS, ...extra] });
  let result;
  try {
    const context = await browser.newContext();
    const page = await context.newPage();
    const before = opts.metrics ? await wssdCounters(opts.metrics) : null;
    const res = await page.goto(opts.url, { waitUntil: 'load', timeout: 60_000 });
    if (res.status() !== 200) throw new Error(`page answered ${res.status()}`);
    await page.waitForFunction(() => window.benchResult, null, { timeout: 60_000 });
    result = await page.evaluate(() => window.benchResult);
    result.established = established(opts.port);
    if (opts.metrics) {
      const after = await wssdCounters(opts.metrics);
      result.wssd = Object.fromEntries(Object.keys(after).map((k) => [k, after[k] - before[k]]));
    }
    await page.evaluate(() => window.benchClose());
    await context.close();
  } finally {
    await browser.close(); // finishes the NetLog file
  }
  Object.assign(result, netlogCounts(netlog));
  rmSync(netlog, { force: true });
  return result;
}

const opts = args();
const out = { http: opts.http, url: opts.url, reps: [], errors: [] };
for (let rep = 0; rep < Number(opts.reps); rep++) {
  try {
    const r = await oneLoad(opts, rep);
    out.reps.push(r);
    console.error(`   ${opts.http} rep ${rep}: ${r.wall_ms.toFixed(1)} ms, page ${r.page_protocol}, ` +
      `${r.tcp_connects} TCP connects, ${r.tls_handshakes} TLS handshakes, ${r.established} established` +
      `${r.ws_ok === 10 ? '' : `, only ${r.ws_ok}/10 WebSockets echoed`}`);
  } catch (e) {
    out.errors.push(String(e && e.message ? e.message : e));
    console.error(`   ${opts.http} rep ${rep} failed: ${e && e.message ? e.message : e}`);
  }
}
writeFileSync(opts.out, JSON.stringify(out, null, 1) + '\n');
process.exit(out.errors.length ? 1 : 0);
