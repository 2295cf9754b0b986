// Browser test of the bundled client's access token (assets/client/app.js,
// "access token") against the real wssd: Chromium cannot set headers on a
// WebSocket, so the page appends ?access_token= to every socket URL.
//
// One wssd (self-signed, --ignore-certificate-errors as in client.test.mjs)
// serves the bundled client and echo; Chromium reports the URL of every
// WebSocket the page opens (playwright's `websocket` event), so the test
// sees exactly what the browser sent.
//
// Tests:
//   - a socket the server refuses before it opens (an upgrade to a route
//     that takes none: 400, as a 401 would be) says the route may need a
//     token (data-hint="auth"); with a token set, to check the token;
//   - a token typed in the field is sent as access_token (URL-encoded) and
//     the socket opens, it is never shown in the status line (shown as "…"), is
//     kept in localStorage across a reload, and the page shows it is set;
//   - the token bar fits 375 px;
//   - against a route with `auth` (a REAL 401, counted by the server's
//     wssd_auth_failures_total): no token hints at one, a wrong one says to
//     check it, the right one opens the socket.
//
// Run: node --test tests/browser/token.test.mjs   (after `cargo build --bin wssd`; npm ci in tests/browser)

import { test, before } from 'node:test';
import assert from 'node:assert/strict';
import fs from 'node:fs';
import path from 'node:path';
import { atEnd, checkBinaries, launchChromium, startWssd, stopWssd, tempDir, until } from './lib.mjs';

const TOKEN = 's3cret+token/é';
// The token of /ws/secure (route auth of kind token; the name is "browser").
const SECURE_TOKEN = 'browser-secure-token-0123456789abcdef';

let server;
let browser;

before(async () => {
  checkBinaries();
  const tmp = tempDir('wssd-token');
  fs.writeFileSync(path.join(tmp, 'tokens.txt'), `browser:${SECURE_TOKEN}\n`);
  fs.writeFileSync(path.join(tmp, 'wssd.toml'), [
    '[[route]]', 'path = "/"', 'kind = "static"', '',
    '[[route]]', 'path = "/ws/echo"', 'kind = "echo"', '',
    '[[route]]', 'path = "/ws/secure"', 'kind = "echo"',
    `auth = { kind = "token", tokens_file = "${path.join(tmp, 'tokens.txt')}" }`, '',
  ].join('\n'));
  server = await startWssd({
    tls: 'self-signed',
    stateDir: path.join(tmp, 'state'),
    cwd: tmp,
    extra: ['--config', path.join(tmp, 'wssd.toml')],
  });
  atEnd(() => stopWssd(server));
  browser = await launchChromium(['--ignore-certificate-errors']);
  atEnd(() => browser.close());
});

async function echoPage() {
  const context = await browser.newContext({ viewport: { width: 375, height: 812 } });
  const page = await context.newPage();
  const errors = [];
  page.on('pageerror', (e) => errors.push(e.message));
  const sockets = [];
  page.on('websocket', (ws) => sockets.push(ws.url()));
  const res = await page.goto(`https://127.0.0.1:${server.port}/#echo`);
  assert.equal(res.status(), 200);
  await page.locator('#echo-status[data-state="open"]').waitFor({ timeout: 10_000 });
  return { context, page, errors, sockets };
}

/** Points the echo panel at ROUTE and reconnects. */
async function connectEcho(page, route) {
  await page.fill('#echo-route', route);
  await page.click('#echo-connect');
}

test('a refused socket hints at the token; a token reaches the server, hidden and kept', { timeout: 60_000 }, async () => {
  const { context, page, errors, sockets } = await echoPage();
  try {
    assert.equal(await page.getAttribute('#auth-token-state', 'data-set'), 'false');
    assert.equal(await page.textContent('#echo-status'), `connected to wss://127.0.0.1:${server.port}/ws/echo`);

    // Refused before it opens (the static route takes no WebSocket).
    await connectEcho(page, '/not-a-socket');
    await page.locator('#echo-status[data-hint="auth"]').waitFor({ timeout: 10_000 });
    assert.match(await page.textContent('#echo-status'), /could not open the socket \(code 1006\): this route may need a token; enter it under Access token/);

    // A token: shown as set, sent as access_token, never displayed.
    await page.fill('#auth-token', TOKEN);
    assert.equal(await page.getAttribute('#auth-token-state', 'data-set'), 'true');
    assert.match(await page.textContent('#auth-token-state'), /token set/);
    await page.locator('#echo-status[data-hint="auth"]').waitFor({ timeout: 10_000 });
    await until(async () => /check the access token/.test(await page.textContent('#echo-status')),
      'the refusal with a token set says to check it');

    await connectEcho(page, '/ws/echo');
    await page.locator('#echo-status[data-state="open"]').waitFor({ timeout: 10_000 });
    const url = `wss://127.0.0.1:${server.port}/ws/echo`;
    assert.equal(sockets.at(-1), `${url}?access_token=${encodeURIComponent(TOKEN)}`);
    const status = await page.textContent('#echo-status');
    assert.equal(status, `connected to ${url}?access_token=…`);
    await page.fill('#echo-text', 'with a token');
    await page.click('#echo-send');
    await page.locator('#echo-log li.in').first().waitFor({ timeout: 10_000 });
    const shown = await page.locator('#echo-log li.out').allTextContents();
    assert.ok(!shown.join('\n').includes('s3cret'), 'the token is in the echo log');

    // Kept across a reload; the field is a password field unless shown.
    await page.reload();
    assert.equal(await page.inputValue('#auth-token'), TOKEN);
    assert.equal(await page.getAttribute('#auth-token', 'type'), 'password');
    await page.click('#auth-token-show');
    assert.equal(await page.getAttribute('#auth-token', 'type'), 'text');

    const { scroll, inner } = await page.evaluate(() => ({
      scroll: document.documentElement.scrollWidth,
      inner: window.innerWidth,
    }));
    assert.ok(scroll <= inner, `page is ${scroll} px wide at ${inner} px`);
    assert.deepEqual(errors, []);
  } finally {
    await context.close();
  }
});

/** wssd_auth_failures_total{route="/ws/secure",reason=REASON} on the admin listener (0 when absent). */
async function secureFailures(reason) {
  const body = await (await fetch(`http://127.0.0.1:${server.adminPort}/metrics`)).text();
  const line = body.split('\n').find((l) => l.startsWith(
    `wssd_auth_failures_total{route="/ws/secure",reason="${reason}"}`));
  return line ? Number(line.split(' ').at(-1)) : 0;
}

test('a real 401 from a token route: hint, check the token, then open', { timeout: 60_000 }, async () => {
  const { context, page, errors, sockets } = await echoPage();
  try {
    // No token: the server answers 401 (counted as missing) and the page hints at a token.
    await connectEcho(page, '/ws/secure');
    await page.locator('#echo-status[data-hint="auth"]').waitFor({ timeout: 10_000 });
    assert.match(await page.textContent('#echo-status'), /this route may need a token; enter it under Access token/);
    await until(async () => (await secureFailures('missing')) >= 1, 'the server refused the socket with 401 (missing)');

    // A wrong token: refused as unknown_token; the page says to check it.
    await page.fill('#auth-token', 'not-the-secure-token-000000000000');
    await connectEcho(page, '/ws/secure');
    await until(async () => (await secureFailures('unknown_token')) >= 1, 'a 401 for the wrong token');
    await until(async () => /check the access token/.test(await page.textContent('#echo-status')),
      'the refusal with a token set says to check it');
    assert.equal(await page.getAttribute('#echo-status', 'data-hint'), 'auth');

    // The right token opens it; the hint is gone and echo works.
    await page.fill('#auth-token', SECURE_TOKEN);
    await connectEcho(page, '/ws/secure');
    await page.locator('#echo-status[data-state="open"]').waitFor({ timeout: 10_000 });
    assert.equal(await page.getAttribute('#echo-status', 'data-hint'), '');
    assert.equal(sockets.at(-1), `wss://127.0.0.1:${server.port}/ws/secure?access_token=${SECURE_TOKEN}`);
    await page.fill('#echo-text', 'past the gate');
    await page.click('#echo-send');
    await until(async () => (await page.locator('#echo-log li.in').allTextContents()).some((t) => t.includes('past the gate')),
      'the echo through the token route');
    assert.deepEqual(errors, []);
  } finally {
    await context.close();
  }
});
