// Browser test of the local CA's install page (route kind `ca`, issue 13):
// Chromium at phone width (Pixel-like viewport, 412x915, touch) opens the
// page over plain HTTP, as a phone that does not trust the CA yet would; the
// fingerprint, every OS section and the QR code are visible, the screenshot
// is saved (BROWSER_ARTIFACTS/ca-page-phone.png) and decoded with zbarimg:
// its QR code must be the page's URL.
//
// Run: node --test tests/browser/ca_page.test.mjs   (after `cargo build --bin wssd`; npm ci in tests/browser)

import { test } from 'node:test';
import assert from 'node:assert/strict';
import { spawnSync } from 'node:child_process';
import path from 'node:path';
import { artifact, atEnd, checkBinaries, freePort, launchChromium, startWssd, stopWssd, tempDir } from './lib.mjs';

test('the CA install page at phone width: readable, and its QR code is its URL', { timeout: 120_000 }, async (t) => {
  checkBinaries();
  const tmp = tempDir('wssd-ca-page');
  const httpPort = await freePort();
  const server = await startWssd({
    tls: 'local-ca',
    stateDir: path.join(tmp, 'state'),
    extra: ['--http', `127.0.0.1:${httpPort}`, '--route', '/ca=ca', '--route', '/ws/echo=echo'],
  });
  atEnd(() => stopWssd(server));
  const url = `http://127.0.0.1:${httpPort}/ca`;

  const browser = await launchChromium();
  try {
    const context = await browser.newContext({
      viewport: { width: 412, height: 915 },
      deviceScaleFactor: 2,
      isMobile: true,
      hasTouch: true,
    });
    const page = await context.newPage();
    const response = await page.goto(url);
    assert.equal(response.status(), 200);
    const fingerprint = (await page.textContent('#fingerprint')).trim();
    assert.match(fingerprint, /^([0-9A-F]{2}:){31}[0-9A-F]{2}$/);
    assert.ok(server.output().includes(fingerprint), 'the page shows the fingerprint printed at start');
    for (const os of ['Android', 'iPhone and iPad', 'Windows', 'macOS', 'Linux, and Firefox anywhere']) {
      assert.equal(await page.locator('summary', { hasText: os }).count(), 1, os);
    }
    // Nothing wider than the phone: no horizontal scrolling.
    const overflow = await page.evaluate(() => document.documentElement.scrollWidth - window.innerWidth);
    assert.ok(overflow <= 0, `page is ${overflow}px wider than the phone`);
    const qr = page.locator('.qr svg');
    await qr.scrollIntoViewIfNeeded();
    const box = await qr.boundingBox();
    assert.ok(box && box.width >= 160 && box.x >= 0 && box.x + box.width <= 412, JSON.stringify(box));

    const shot = artifact('ca-page-phone.png');
    await page.screenshot({ path: shot, fullPage: true });
    t.diagnostic(`screenshot: ${shot}`);
    const decoded = spawnSync('zbarimg', ['-q', '--raw', shot], { encoding: 'utf8', timeout: 30_000 });
    if (decoded.error) throw decoded.error;
    assert.equal(decoded.status, 0, `zbarimg found no QR code in ${shot}: ${decoded.stderr}`);
    assert.equal(decoded.stdout.trim(), url);

    // The iOS profile link downloads the profile.
    const profile = await page.request.get(`${url}/wssd-local-ca.mobileconfig`);
    assert.equal(profile.headers()['content-type'], 'application/x-apple-aspen-config');
  } finally {
    await browser.close();
  }
});
