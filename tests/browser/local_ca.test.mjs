// Browser test of `--tls local-ca` and `wssd cert ca install|uninstall`.
//
// Chromium (the Debian package, driven by playwright-core) with HOME pointed
// at a fresh folder, so its NSS database is $HOME/.pki/nssdb:
//   1. before `wssd cert ca install`, https://localhost:PORT/ fails with a
//      certificate error (net::ERR_CERT_AUTHORITY_INVALID);
//   2. after it, the page loads and a wss:// echo completes, with no
//      certificate errors ignored;
//   3. `wssd cert ca uninstall` removes the CA from the NSS database again
//      (and from the system trust store, which install also changes when run
//      as root; the cleanup always uninstalls so the machine is left as it was).
//
// Run: node --test tests/browser/*.test.mjs   (after `cargo build --bin wssd`; npm ci in tests/browser)
// Environment: WSSD_BIN, CHROMIUM_BIN, BROWSER_ARTIFACTS (the screenshot goes
//              there); defaults and the shared helpers are in lib.mjs.

import { test } from 'node:test';
import assert from 'node:assert/strict';
import { spawnSync } from 'node:child_process';
import { mkdirSync } from 'node:fs';
import path from 'node:path';
import { WSSD, artifact, atEnd, checkBinaries, launchChromium, startWssd, stopWssd, tempDir } from './lib.mjs';

/** Runs `wssd cert ca <sub> --state-dir DIR` with HOME=home; returns stdout, throws on failure. */
function caCommand(sub, stateDir, home) {
  const r = spawnSync(WSSD, ['cert', 'ca', sub, '--state-dir', stateDir], {
    env: { ...process.env, HOME: home },
    encoding: 'utf8',
    timeout: 60_000,
  });
  if (r.error) throw r.error;
  if (r.status !== 0) {
    throw new Error(`wssd cert ca ${sub} exited ${r.status}:\n${r.stdout}\n${r.stderr}`);
  }
  return r.stdout;
}

/** `certutil -L` of the NSS database in `home`. */
function nssList(home) {
  const r = spawnSync('certutil', ['-L', '-d', `sql:${path.join(home, '.pki', 'nssdb')}`], {
    encoding: 'utf8',
  });
  if (r.error) throw r.error;
  assert.equal(r.status, 0, `certutil -L failed: ${r.stderr}`);
  return r.stdout;
}

/** Chromium with HOME=home: on Linux it reads trusted CAs from $HOME/.pki/nssdb. */
function launch(home) {
  return launchChromium([], { env: { ...process.env, HOME: home } });
}

test('Chromium trusts wssd --tls local-ca after `wssd cert ca install`', { timeout: 180_000 }, async (t) => {
  checkBinaries();

  const tmp = tempDir('wssd-browser');
  const stateDir = path.join(tmp, 'state');
  const home = path.join(tmp, 'home');
  mkdirSync(home);

  const server = await startWssd({ tls: 'local-ca', stateDir });
  atEnd(() => stopWssd(server));
  const origin = `https://localhost:${server.port}`;

  // 1. Not trusted yet.
  {
    const browser = await launch(home);
    try {
      const page = await browser.newPage();
      await assert.rejects(page.goto(`${origin}/`), (e) => {
        assert.match(e.message, /net::ERR_CERT_AUTHORITY_INVALID/);
        return true;
      });
    } finally {
      await browser.close();
    }
  }
  t.diagnostic('before install: net::ERR_CERT_AUTHORITY_INVALID');

  // 2. Install (NSS database in the temporary HOME; the system store too when root).
  let installed = true;
  atEnd(() => {
    if (installed) caCommand('uninstall', stateDir, home);
  });
  const installOut = caCommand('install', stateDir, home);
  t.diagnostic(`install:\n${installOut}`);
  const nick = installOut.match(/"(wssd local CA [0-9a-f]+)"/)?.[1];
  assert.ok(nick, `no NSS nickname in the install output:\n${installOut}`);
  assert.ok(nssList(home).includes(nick), `${nick} not in the NSS database after install`);

  {
    const browser = await launch(home);
    try {
      const page = await browser.newPage();
      const res = await page.goto(`${origin}/`);
      assert.equal(res.status(), 200);
      const tls = await res.securityDetails();
      assert.ok(tls, 'no TLS details for the page');
      assert.match(tls.issuer ?? '', /wssd local CA/);
      assert.match(tls.protocol ?? '', /TLS 1\.[23]/);

      // A wss:// echo from the page.
      const echoed = await page.evaluate(
        (url) =>
          new Promise((resolve, reject) => {
            const ws = new WebSocket(url);
            const timer = setTimeout(() => reject(new Error('no echo within 10 s')), 10_000);
            ws.onopen = () => ws.send('hello over wss from chromium');
            ws.onmessage = (ev) => {
              clearTimeout(timer);
              ws.close();
              resolve(ev.data);
            };
            ws.onerror = () => {
              clearTimeout(timer);
              reject(new Error('websocket error'));
            };
          }),
        `wss://localhost:${server.port}/ws/echo`,
      );
      assert.equal(echoed, 'hello over wss from chromium');

      // The IP address names are in the certificate too (https://<LAN IP> works the same way).
      const byIp = await browser.newPage();
      const ipRes = await byIp.goto(`https://127.0.0.1:${server.port}/`);
      assert.equal(ipRes.status(), 200);
      await byIp.close();

      // The bundled client's own wss:// connection (its Echo panel), for the screenshot.
      await page.click('#tab-echo');
      await page.locator('#echo-status.ok').waitFor({ timeout: 10_000 });
      await page.fill('#echo-text', `certificate issued by ${tls.issuer}`);
      await page.click('#echo-send');
      await page.locator('#echo-log li.in').first().waitFor({ timeout: 10_000 });
      const shot = artifact('local-ca.png');
      await page.screenshot({ path: shot });
      t.diagnostic(`after install: page loaded (issuer ${tls.issuer}, ${tls.protocol}), wss echo ok; screenshot ${shot}`);
    } finally {
      await browser.close();
    }
  }

  // 3. Uninstall: gone from the NSS database.
  const uninstallOut = caCommand('uninstall', stateDir, home);
  installed = false;
  t.diagnostic(`uninstall:\n${uninstallOut}`);
  assert.match(uninstallOut, new RegExp(`removed "${nick}"`));
  assert.ok(!nssList(home).includes(nick), `${nick} still in the NSS database after uninstall`);
  // Idempotent.
  assert.match(caCommand('uninstall', stateDir, home), /nothing changed/);

  await stopWssd(server);
  assert.deepEqual(server.exited(), { code: 0, signal: null }, server.output());
});
