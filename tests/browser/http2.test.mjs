// Chromium and HTTP/2: the page comes over h2 (ALPN) from wssd's TLS
// listener, then the page opens WebSockets to the same origin. Chromium sends
// them as RFC 8441 extended CONNECTs on the page's HTTP/2 connection once the
// server has advertised SETTINGS_ENABLE_CONNECT_PROTOCOL; wssd's own
// wssd_websocket_upgrades_total{http} says which version each one used.
//
// Tests:
//   - the page is served over h2 (navigation entry's nextHopProtocol), three
//     WebSockets opened by the page echo text and binary, and the server
//     counted them as HTTP/2 upgrades (none over HTTP/1.1); the page's
//     connection count stays one.
//
// Run: node --test tests/browser/http2.test.mjs   (after `cargo build --bin wssd`; npm ci in tests/browser)
// Environment: WSSD_BIN, CHROMIUM_BIN (defaults in lib.mjs).

import { test, before } from 'node:test';
import assert from 'node:assert/strict';
import path from 'node:path';

import {
  atEnd, checkBinaries, launchChromium, startWssd, stopWssd, tempDir,
} from './lib.mjs';

let server;
let browser;

before(async () => {
  checkBinaries();
  const tmp = tempDir('wssd-http2-');
  server = await startWssd({
    tls: 'self-signed',
    stateDir: path.join(tmp, 'state'),
    cwd: tmp,
    extra: ['--route', '/=static', '--route', '/ws/echo=echo'],
  });
  atEnd(() => stopWssd(server));
  browser = await launchChromium(['--ignore-certificate-errors']);
  atEnd(() => browser.close());
});

/** wssd_websocket_upgrades_total by its `http` label, from the admin /metrics. */
async function upgradesByVersion() {
  const text = await (await fetch(`http://127.0.0.1:${server.adminPort}/metrics`)).text();
  const out = {};
  for (const m of text.matchAll(/^wssd_websocket_upgrades_total\{http="([^"]+)"\} (\d+)/gm)) {
    out[m[1]] = Number(m[2]);
  }
  return out;
}

test('the page comes over h2 and its WebSockets use RFC 8441 on that connection', { timeout: 60_000 }, async () => {
  const context = await browser.newContext();
  const page = await context.newPage();
  try {
    const res = await page.goto(`https://localhost:${server.port}/`);
    assert.equal(res.status(), 200);
    const protocol = await page.evaluate(() => performance.getEntriesByType('navigation')[0].nextHopProtocol);
    assert.equal(protocol, 'h2');
    const before = await upgradesByVersion();
    const echoed = await page.evaluate(async (port) => {
      const one = (i) => new Promise((resolve, reject) => {
        const ws = new WebSocket(`wss://localhost:${port}/ws/echo`);
        ws.binaryType = 'arraybuffer';
        const got = [];
        ws.onerror = () => reject(new Error(`socket ${i} failed`));
        ws.onopen = () => {
          ws.send(`text ${i}`);
          ws.send(new Uint8Array([i, 1, 2, 3]));
        };
        ws.onmessage = (e) => {
          got.push(typeof e.data === 'string' ? e.data : Array.from(new Uint8Array(e.data)).join(','));
          if (got.length === 2) ws.close(1000);
        };
        ws.onclose = (e) => resolve({ got, code: e.code });
      });
      return Promise.all([0, 1, 2].map(one));
    }, server.port);
    for (const [i, r] of echoed.entries()) {
      assert.deepEqual(r.got, [`text ${i}`, `${i},1,2,3`]);
      assert.equal(r.code, 1000);
    }
    const after = await upgradesByVersion();
    const h2 = (after['2'] ?? 0) - (before['2'] ?? 0);
    const h1 = (after['1.1'] ?? 0) - (before['1.1'] ?? 0);
    console.log(`Chromium ${browser.version()}: WebSockets over HTTP/2 (RFC 8441): ${h2}, over HTTP/1.1: ${h1}`);
    assert.equal(h2, 3, `expected 3 RFC 8441 WebSockets, got h2=${h2} h1.1=${h1}`);
    assert.equal(h1, 0);
  } finally {
    await context.close();
  }
});
