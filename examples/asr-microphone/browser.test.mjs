// Chromium against the asr-microphone example (started by test.sh): the page
// over https:// with a certificate Chromium trusts (HOME_FOR_CHROMIUM holds
// the NSS database `wssd cert ca install` wrote; no certificate error is
// ignored), a fake microphone playing SPEECH_WAV, the recognizer behind
// wssd's proxy route at /ws/asr.
//
//   - the example's page: Start streams PCM, partials arrive, Stop sends
//     {"eof": 1} and the final result counts what the page sent, with speech
//     in it (segments > 0: silence would give 0);
//   - the bundled client (/client/), Microphone tab pointed at /ws/asr with
//     the end message {"eof":1}: the same final result.
//
// Environment (from test.sh): ORIGIN, HOME_FOR_CHROMIUM, SPEECH_WAV,
// WSSD_BIN, BROWSER_ARTIFACTS. Helpers: tests/browser/lib.mjs.

import { test, before } from 'node:test';
import assert from 'node:assert/strict';
import { artifact, atEnd, checkBinaries, launchChromium } from '../../tests/browser/lib.mjs';

const ORIGIN = process.env.ORIGIN;
const PHONE = { width: 375, height: 812 };
let browser;

before(async () => {
  checkBinaries();
  assert.ok(ORIGIN && process.env.HOME_FOR_CHROMIUM && process.env.SPEECH_WAV, 'run through test.sh');
  browser = await launchChromium([
    '--use-fake-ui-for-media-stream',
    '--use-fake-device-for-media-stream',
    `--use-file-for-fake-audio-capture=${process.env.SPEECH_WAV}`,
    '--autoplay-policy=no-user-gesture-required',
  ], { env: { ...process.env, HOME: process.env.HOME_FOR_CHROMIUM } });
  atEnd(() => browser.close());
});

/** A page at PHONE width; fails the test on page errors. */
async function open(path) {
  const page = await browser.newPage({ viewport: PHONE });
  const errors = [];
  page.on('pageerror', (e) => errors.push(e.message));
  const res = await page.goto(`${ORIGIN}${path}`);
  assert.equal(res.status(), 200);
  const tls = await res.securityDetails();
  assert.match(tls?.issuer ?? '', /wssd local CA/, 'served with the local CA\'s certificate');
  return { page, errors };
}

const num = (page, sel, attr) => page.locator(sel).evaluate((el, a) => Number(el.dataset[a]), attr);

test('the page streams the fake microphone over wss:// and gets the final result', { timeout: 90_000 }, async (t) => {
  const { page, errors } = await open('/');
  try {
    assert.equal(await page.evaluate(() => window.isSecureContext), true);
    await page.click('#start');
    await page.locator('#status[data-state="open"]').waitFor({ timeout: 15_000 });
    assert.equal(await page.textContent('#status'), `connected to ${ORIGIN.replace('https:', 'wss:')}/ws/asr`);
    // 3 s of audio: 96,000 bytes of 16 kHz 16-bit mono.
    await page.waitForFunction(() => Number(document.getElementById('sent').dataset.value) >= 96_000, null, { timeout: 20_000 });
    assert.match(await page.textContent('#partial'), /^\d+(\.\d+)? s, \d+ speech segments$/);
    await page.screenshot({ path: artifact('asr-microphone-streaming.png'), fullPage: true });
    await page.click('#stop');
    await page.locator('#final[data-segments]').waitFor({ timeout: 10_000 });
    const final = await page.textContent('#final');
    const sent = await num(page, '#sent', 'value');
    const bytes = await num(page, '#final', 'bytes');
    const segments = await num(page, '#final', 'segments');
    const seconds = await num(page, '#final', 'seconds');
    t.diagnostic(`page sent ${sent} bytes; final: ${final}`);
    assert.equal(bytes, sent, 'the recognizer got every byte the page sent');
    assert.ok(seconds >= 3, `${seconds} s of audio`);
    assert.ok(segments >= 1, `no speech segment in ${seconds} s: the fake microphone sounded silent`);
    assert.match(final, /^heard \d+(\.\d+)? s of audio, \d+ speech segments$/);
    await page.locator('#status[data-state="closed"]').waitFor({ timeout: 10_000 });
    assert.equal(await page.textContent('#status'), 'closed (code 1000: final result sent)');
    await page.screenshot({ path: artifact('asr-microphone-final.png'), fullPage: true });
    assert.deepEqual(errors, []);
  } finally {
    await page.close();
  }
});

test('the bundled client\'s Microphone tab gets the same final result from /ws/asr', { timeout: 90_000 }, async (t) => {
  const { page, errors } = await open('/client/#mic');
  try {
    await page.fill('#mic-route', '/ws/asr');
    await page.fill('#mic-end', '{"eof":1}');
    await page.click('#mic-start');
    await page.locator('#mic-status[data-state="open"]').waitFor({ timeout: 15_000 });
    await page.waitForFunction(() => Number(document.getElementById('mic-frames').dataset.value) >= 30, null, { timeout: 20_000 });
    await page.click('#mic-stop');
    // The recognizer closes after the final result (1000), which ends the
    // client's drain; Start is usable again once Stop has finished.
    await page.locator('#mic-replies li .text', { hasText: '"final"' }).waitFor({ timeout: 10_000 });
    await page.locator('#mic-start:not([disabled])').waitFor({ timeout: 10_000 });
    // The recognizer closed first: the status says so (not `idle`).
    assert.equal(await page.getAttribute('#mic-status', 'data-state'), 'closed');
    assert.match(await page.textContent('#mic-status'), /; closed by the server: final result sent \(code 1000\)$/);
    const sent = Number(await page.locator('#mic-bytes').evaluate((el) => el.dataset.value));
    const newest = JSON.parse(await page.locator('#mic-replies li .text').first().textContent());
    t.diagnostic(`bundled client sent ${sent} bytes; newest reply: ${JSON.stringify(newest)}`);
    assert.ok('final' in newest, `the newest reply is not the final result: ${JSON.stringify(newest)}`);
    assert.equal(newest.bytes, sent);
    assert.ok(newest.segments >= 1, 'no speech segment');
    const texts = Number(await page.locator('#mic-text-count').evaluate((el) => el.dataset.value));
    assert.ok(texts >= 31, `${texts} replies: one partial per frame plus the final`);
    await page.screenshot({ path: artifact('asr-microphone-bundled-client.png'), fullPage: true });
    assert.deepEqual(errors, []);
  } finally {
    await page.close();
  }
});
