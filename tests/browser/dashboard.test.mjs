// Browser test of the admin status page (`GET /` on the admin listener,
// assets/dashboard/) against the real wssd: it loads with no console error
// and no request outside the admin origin (no CDN: everything is compiled
// in), its numbers and charts move when load runs, and a screenshot of it
// under load is saved to BROWSER_ARTIFACTS (dashboard-under-load.png).
//
// One wssd (self-signed, so the certificate table has days left) serves an
// echo route, a chat route, a proxy route to a closed port (so the upstream
// table shows a failure) and the bundled client at / (the page the load
// runs from: Chromium's own WebSockets, --ignore-certificate-errors as in
// client.test.mjs). The dashboard page runs in its own browser context; the
// load in another.
//
// Run: node --test tests/browser/dashboard.test.mjs   (after `cargo build --bin wssd`; npm ci in tests/browser)

import { test, before } from 'node:test';
import assert from 'node:assert/strict';
import fs from 'node:fs';
import path from 'node:path';
import { artifact, atEnd, checkBinaries, freePort, launchChromium, startWssd, stopWssd, tempDir, until } from './lib.mjs';

const SOCKETS = 6;

let server;
let browser;

before(async () => {
  checkBinaries();
  const tmp = tempDir('wssd-dashboard');
  const dead = await freePort();
  server = await startWssd({
    tls: 'self-signed',
    stateDir: path.join(tmp, 'state'),
    cwd: tmp,
    extra: [
      '--route', '/=static',
      '--route', '/ws/echo=echo',
      '--route', '/ws/chat=chat',
      '--route', `/api=proxy:ws://127.0.0.1:${dead}`,
    ],
  });
  atEnd(() => stopWssd(server));
  browser = await launchChromium(['--ignore-certificate-errors']);
  atEnd(() => browser.close());
});

/** Opens the dashboard in a fresh context, recording console errors and every request. */
async function dashboard() {
  const context = await browser.newContext({ viewport: { width: 1280, height: 1000 } });
  const page = await context.newPage();
  const errors = [];
  page.on('console', (m) => { if (m.type() === 'error') errors.push(m.text()); });
  page.on('pageerror', (e) => errors.push(e.message));
  const requests = [];
  page.on('request', (r) => requests.push(r.url()));
  const res = await page.goto(`http://127.0.0.1:${server.adminPort}/`);
  assert.equal(res.status(), 200);
  await page.locator('#link[data-state="ok"]').waitFor({ timeout: 10_000 });
  return { context, page, errors, requests };
}

/** The number a dashboard element shows (its data-value). */
async function value(page, id) {
  return Number(await page.getAttribute(`#${id}`, 'data-value'));
}

/** Starts load from a page of the TLS listener: SOCKETS echo sockets, each sending every 20 ms. */
async function startLoad() {
  const context = await browser.newContext();
  const page = await context.newPage();
  await page.goto(`https://127.0.0.1:${server.port}/`);
  await page.evaluate(async ({ port, n }) => {
    window.loadSockets = await Promise.all(Array.from({ length: n }, () => new Promise((resolve, reject) => {
      const ws = new WebSocket(`wss://127.0.0.1:${port}/ws/echo`);
      ws.onopen = () => resolve(ws);
      ws.onerror = () => reject(new Error('load socket failed'));
    })));
    window.loadTimer = setInterval(() => {
      for (const ws of window.loadSockets) {
        if (ws.readyState === WebSocket.OPEN) ws.send('x'.repeat(200));
      }
    }, 20);
  }, { port: server.port, n: SOCKETS });
  return { context, page };
}

test('the status page loads alone, moves under load, and is screenshotted', { timeout: 90_000 }, async () => {
  const { context, page, errors, requests } = await dashboard();
  const load = await startLoad().catch(async (e) => { await context.close(); throw e; });
  try {
    // One request on the proxy route (its upstream port is closed: 502),
    // so the upstream table has a failure.
    assert.equal(await load.page.evaluate(async () => (await fetch('/api')).status), 502);
    assert.equal(await value(page, 'total-open'), 0, 'no socket before the load');
    assert.equal(await value(page, 'rate-messages-in'), 0);

    await until(async () => (await value(page, 'total-open')) === SOCKETS,
      async () => `the page shows ${SOCKETS} open connections`, 15_000);
    await until(async () => (await value(page, 'rate-messages-in')) > 10 && (await value(page, 'rate-bytes-out')) > 1000,
      'the page shows message and byte rates above zero', 15_000);
    // The route and listener rows say the same.
    const echoRow = page.locator('#routes tbody tr', { hasText: '/ws/echo' });
    assert.equal((await echoRow.locator('td').nth(2).textContent()).trim(), String(SOCKETS));
    const listenerRow = page.locator('#listeners tbody tr', { hasText: `127.0.0.1:${server.port}` });
    assert.equal((await listenerRow.locator('td').nth(2).textContent()).trim(), String(SOCKETS));
    // The messages chart has a line with a rise in it.
    await until(async () => {
      const pts = (await page.getAttribute('#spark-messages polyline.in', 'points')).trim().split(/\s+/).filter(Boolean);
      return pts.length >= 3 && new Set(pts.map((p) => p.split(',')[1])).size > 1;
    }, 'the messages chart draws the load', 15_000);

    // One socket closes with 4000: the close tables list it.
    await load.page.evaluate(() => window.loadSockets[0].close(4000, 'done'));
    await until(async () => (await page.locator('#close-codes tbody tr', { hasText: '4000' }).count()) === 1,
      'the 4000 close is counted', 10_000);
    await until(async () => (await page.locator('#recent-closes tbody tr', { hasText: '4000' }).count()) >= 1,
      'the 4000 close is in the recent closes', 10_000);
    await until(async () => (await value(page, 'total-open')) === SOCKETS - 1, 'one fewer open', 10_000);

    // Certificates: the self-signed one, with days left; the proxy route's refused upstream.
    const cert = page.locator('#certificates tbody tr').first();
    assert.match(await cert.textContent(), /self-signed/);
    assert.ok(Number(await cert.locator('td').nth(1).textContent()) > 1, 'days left shown');
    const up = page.locator('#upstreams tbody tr', { hasText: '/api' });
    await until(async () => (await up.count()) === 1 && /failed/.test(await up.textContent()),
      'the refused upstream shows as failed', 10_000);
    assert.match(await page.locator('#broker').textContent(), /memory: healthy/);
    assert.match(await page.locator('#ready').textContent(), /^ready$/);

    // Screenshot under load, once the charts hold ten seconds of it:
    // non-trivial (a real PNG of the viewport's width, tens of kB),
    // and the page changes from one second to the next (the charts and rates move).
    await until(async () => (await page.getAttribute('#spark-messages polyline.in', 'points')).trim().split(/\s+/).length >= 10,
      'ten seconds of chart', 20_000, 250);
    const file = artifact('dashboard-under-load.png');
    const png = await page.screenshot({ path: file, fullPage: true });
    assert.equal(png.subarray(1, 4).toString('latin1'), 'PNG');
    assert.equal(png.readUInt32BE(16), 1280, 'screenshot width');
    assert.ok(png.readUInt32BE(20) >= 900, 'screenshot height');
    assert.ok(fs.statSync(file).size > 30_000, `screenshot is ${fs.statSync(file).size} bytes: too plain`);
    const tilesA = await page.locator('.tiles').screenshot();
    await until(async () => !(await page.locator('.tiles').screenshot()).equals(tilesA),
      'the tiles (rates and charts) change under load', 10_000);

    assert.deepEqual(errors, [], 'no console error');
    const origin = `http://127.0.0.1:${server.adminPort}/`;
    const foreign = requests.filter((u) => !u.startsWith(origin));
    assert.deepEqual(foreign, [], 'no request outside the admin origin');
    assert.ok(requests.some((u) => u === `${origin}status`), 'the page polls /status');
  } finally {
    await load.context.close();
    await context.close();
  }
});

test('strings from the configuration are shown as text, not markup', { timeout: 60_000 }, async () => {
  // A route path with markup in it (`/` separates the attributes: paths
  // refuse whitespace and control characters):
  // the page shows it literally, makes no element of it and runs nothing.
  const tmp = tempDir('wssd-dashboard-markup');
  const odd = '/ws/<b>bold</b><img/src/onerror=alert(1)>';
  fs.writeFileSync(path.join(tmp, 'wssd.toml'), `[[route]]\npath = ${JSON.stringify(odd)}\nkind = "echo"\n`);
  const s = await startWssd({
    tls: 'self-signed',
    stateDir: path.join(tmp, 'state'),
    cwd: tmp,
    extra: ['--config', path.join(tmp, 'wssd.toml')],
  });
  atEnd(() => stopWssd(s));
  const context = await browser.newContext();
  const page = await context.newPage();
  let dialogs = 0;
  page.on('dialog', async (d) => { dialogs++; await d.dismiss(); });
  try {
    await page.goto(`http://127.0.0.1:${s.adminPort}/`);
    await page.locator('#link[data-state="ok"]').waitFor({ timeout: 10_000 });
    const cells = await page.locator('#routes tbody td').allTextContents();
    assert.ok(cells.includes(odd), `the path is shown as text: ${JSON.stringify(cells)}`);
    assert.equal(await page.locator('#routes b, #routes img').count(), 0, 'no element made from it');
    assert.equal(dialogs, 0, 'no script ran');
  } finally {
    await context.close();
  }
});
