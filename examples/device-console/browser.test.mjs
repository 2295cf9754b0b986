// Chromium against the device-console example (started by test.sh): wssd
// with this folder's wssd.toml and `--tls local-ca`, its CA installed in
// HOME_FOR_CHROMIUM's NSS database by `wssd cert ca install`, so the page
// loads over https:// with a certificate Chromium trusts (no certificate
// error ignored), and over http:// on the plain listener.
//
//   - with the password (playwright's httpCredentials, which answers the
//     browser's own basic-auth challenge like a user typing in the prompt):
//     the page loads over https:// and http://, its console WebSocket opens
//     with the credentials the browser cached for the page (the handshake
//     carries them: the console greets the user `admin`, REMOTE_USER), and
//     a command's answer appears on the page;
//   - without a password (headless Chromium then fails the navigation with
//     ERR_INVALID_AUTH_CREDENTIALS: the test reads the 401 response it got,
//     sent without an Authorization header), or with a wrong one (Chromium
//     shows wssd's 401 page): 401 with the basic-auth challenge, no console.
//
// Environment (from test.sh): TLS_ORIGIN, HTTP_ORIGIN, HOME_FOR_CHROMIUM,
// BROWSER_ARTIFACTS. Helpers: tests/browser/lib.mjs.

import { test, before } from 'node:test';
import assert from 'node:assert/strict';
import { artifact, atEnd, checkBinaries, launchChromium } from '../../tests/browser/lib.mjs';

const TLS_ORIGIN = process.env.TLS_ORIGIN;
const HTTP_ORIGIN = process.env.HTTP_ORIGIN;
const USER = 'admin';
const PASSWORD = 'console-demo';
const PHONE = { width: 375, height: 812 };
let browser;

before(async () => {
  checkBinaries();
  assert.ok(TLS_ORIGIN && HTTP_ORIGIN && process.env.HOME_FOR_CHROMIUM, 'run through test.sh');
  browser = await launchChromium([], { env: { ...process.env, HOME: process.env.HOME_FOR_CHROMIUM } });
  atEnd(() => browser.close());
});

/** A fresh context (its own auth cache) and page; credentials as given. */
async function open(origin, httpCredentials) {
  const context = await browser.newContext({ viewport: PHONE, httpCredentials });
  const page = await context.newPage();
  const errors = [];
  page.on('pageerror', (e) => errors.push(e.message));
  const responses = [];
  page.on('response', (r) => responses.push(r));
  let res = null;
  let failed = null;
  try {
    res = await page.goto(`${origin}/`);
  } catch (e) {
    failed = e;
  }
  return { context, page, errors, res, responses, failed };
}

/** Types LINE into the console form and waits for ANSWER (a line) in the log. */
async function command(page, line, answer) {
  await page.fill('#line', line);
  await page.press('#line', 'Enter');
  await page.waitForFunction(
    ([sent, want]) => {
      const lines = document.getElementById('log').textContent.split('\n');
      const at = lines.lastIndexOf(`> ${sent}`);
      return at >= 0 && lines.slice(at + 1).includes(want);
    },
    [line, answer],
    { timeout: 10_000 },
  );
}

for (const [scheme, origin] of [['https', TLS_ORIGIN], ['http', HTTP_ORIGIN]]) {
  const ws = scheme === 'https' ? 'wss' : 'ws';

  test(`with the password the page over ${scheme}:// opens the console (${ws}://) and a command answers`, { timeout: 60_000 }, async (t) => {
    const { context, page, errors, res, failed } = await open(origin, { username: USER, password: PASSWORD });
    try {
      assert.equal(res?.status(), 200, failed?.message);
      if (scheme === 'https') {
        const tls = await res.securityDetails();
        assert.match(tls?.issuer ?? '', /wssd local CA/, 'served with the local CA\'s certificate');
        assert.equal(await page.evaluate(() => window.isSecureContext), true);
      }
      await page.locator('#state', { hasText: /^connected / }).waitFor({ timeout: 10_000 });
      assert.equal(await page.textContent('#state'), `connected (${origin.replace(/^http/, 'ws')}/console)`);
      // The greeting names the user the handshake authenticated (REMOTE_USER)
      // and the scheme the console program saw (HTTPS=on over wss://).
      await page.locator('#log', { hasText: `device console, ${USER} over ${ws}; type help` }).waitFor({ timeout: 10_000 });
      await command(page, 'led on', 'led on');
      await command(page, 'whoami', USER);
      await command(page, 'echo $(id) *', '$(id) *');
      t.diagnostic(`${scheme}: ${JSON.stringify(await page.textContent('#log'))}`);
      await page.screenshot({ path: artifact(`device-console-${scheme}.png`), fullPage: true });
      assert.equal(await page.textContent('#state'), `connected (${origin.replace(/^http/, 'ws')}/console)`, 'still open');
      assert.deepEqual(errors, []);
    } finally {
      await context.close();
    }
  });

  test(`without a password the page over ${scheme}:// gets 401 and no console`, { timeout: 60_000 }, async (t) => {
    const { context, page, res, responses, failed } = await open(origin, undefined);
    try {
      t.diagnostic(`navigation: ${failed ? failed.message.split('\n')[0] : res.status()}; responses: ${responses.map((r) => r.status()).join(',')}`);
      const first = responses.find((r) => r.url() === `${origin}/`);
      assert.ok(first, 'no response for the page');
      assert.equal(first.status(), 401);
      assert.equal((await first.request().allHeaders()).authorization, undefined, 'no credentials sent');
      assert.match(first.headers()['www-authenticate'] ?? '', /^Basic realm="device console"/);
      assert.equal(await page.locator('#log').count(), 0, 'no console on the page');
    } finally {
      await context.close();
    }
  });

  test(`with a wrong password the page over ${scheme}:// gets 401 and no console`, { timeout: 60_000 }, async () => {
    const { context, page, res, failed } = await open(origin, { username: USER, password: 'wrong' });
    try {
      assert.equal(res?.status(), 401, failed?.message);
      assert.match(res.headers()['www-authenticate'] ?? '', /^Basic realm="device console"/);
      assert.equal(await page.locator('#log').count(), 0, 'no console on the page');
      // The 401 page wssd serves (Chromium shows it once the prompt is given up).
      assert.match(await page.textContent('body'), /^401 Unauthorized: wrong user name or password/);
      if (scheme === 'https') await page.screenshot({ path: artifact('device-console-401.png'), fullPage: true });
    } finally {
      await context.close();
    }
  });
}
