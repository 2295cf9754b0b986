// Browser tests of the bundled client (assets/client/*) against the real wssd.
//
// One wssd with a self-signed certificate serves the bundled client at `/`,
// echo at /ws/echo and chat at /ws/chat on a free loopback port (admin on
// another). Debian's Chromium, driven by playwright-core, runs with
// --ignore-certificate-errors (the trusted local-CA path is covered by
// local_ca.test.mjs) and a fake microphone that plays a WAV made at test
// time with espeak-ng and sox (48 kHz mono 16-bit; Chromium loops it).
//
// Tests:
//   - chat: two users in one room (one page at phone width, one at desktop
//     width) exchange messages both ways, see each other in the members list
//     and the presence events; a third page trying a taken name gets the
//     name_taken error inline.
//   - chat moderation: wrong password refused, then signed in; mute (the muted
//     user's message gets `muted`), kick (close 4001 shown, no automatic
//     rejoin, members updated), ban (close 4003; joining again gets `banned`).
//   - echo: a text and a file (binary) round trip: the reply is shown with a
//     round-trip time in ms.
//   - mic: ~2 s of the fake microphone streamed to /ws/echo as 16 kHz mono
//     16-bit PCM; Stop sends the partial last frame and an end message and
//     waits for the last replies: every byte comes back, and wssd's own
//     /metrics counted exactly the page's bytes plus the end message.
//   - mic reconnect: the socket's server is stopped while streaming; the page
//     shows the drop and its backoff, and reconnects when the server is back.
//   - mic server-first close: a route that answers the end message and exits
//     closes the socket while the page waits for the last replies; the
//     status ends `closed` with the server's reason (not `idle`).
//   - mic refused: without a microphone permission the page says so.
//   - mic on plain http (not localhost): the page says the microphone needs
//     https:// and which address to open.
//   - layout: every panel at 375 px has no horizontal overflow (checked in
//     each test too, with content in the panels).
// Screenshots of every panel at phone and desktop width go to the artifacts
// folder.
//
// Run: node --test tests/browser/client.test.mjs   (after `cargo build --bin wssd`; npm ci in tests/browser)
// Environment: WSSD_BIN, CHROMIUM_BIN, BROWSER_ARTIFACTS (the screenshots go
//              there); defaults and the shared helpers are in lib.mjs.
// Needs espeak-ng and sox (scripts/install-test-deps installs them).

import { test, before } from 'node:test';
import assert from 'node:assert/strict';
import { spawnSync } from 'node:child_process';
import { mkdirSync, writeFileSync } from 'node:fs';
import path from 'node:path';
import { atEnd, artifact, checkBinaries, freePort, launchChromium, startWssd as startServer, stopWssd, tempDir, until } from './lib.mjs';

const PHONE = { width: 375, height: 812 };
const DESKTOP = { width: 1280, height: 860 };
const MOD_PASSWORD = 'test-moderator-password';
// The end message of the server-first test (long: PCM will not hold it by chance).
const END_MARK = 'END-OF-STREAM-wssd-browser-test';

// This file's pages load wssd's self-signed certificate.
const INSECURE = ['--ignore-certificate-errors'];

function run(cmd, args) {
  const r = spawnSync(cmd, args, { encoding: 'utf8', timeout: 60_000 });
  if (r.error) throw new Error(`${cmd}: ${r.error.message} (scripts/install-test-deps installs it)`);
  if (r.status !== 0) throw new Error(`${cmd} ${args.join(' ')} exited ${r.status}:\n${r.stderr}`);
  return r.stdout;
}

/**
 * Starts wssd (self-signed TLS on a free port, admin on another, the given
 * extra args) in its own empty working folder; resolves once /readyz is 200.
 */
async function startWssd(dir, extra = [], { port, env = {} } = {}) {
  mkdirSync(dir, { recursive: true });
  return startServer({ tls: 'self-signed', stateDir: path.join(dir, 'state'), extra, port, cwd: dir, env });
}

/** One counter of wssd's /metrics, by name and labels (0 when absent). */
async function metric(server, name, labels) {
  const text = await (await fetch(`http://127.0.0.1:${server.adminPort}/metrics`)).text();
  for (const line of text.split('\n')) {
    const m = line.match(/^([a-zA-Z_:][\w:]*)(?:\{(.*)\})?\s+(\S+)/);
    if (!m || m[1] !== name) continue;
    const have = {};
    for (const [, k, v] of (m[2] || '').matchAll(/(\w+)="((?:[^"\\]|\\.)*)"/g)) have[k] = v;
    if (Object.entries(labels).every(([k, v]) => have[k] === v)) return Number(m[3]);
  }
  return 0;
}

/** Fails when the page is wider than its viewport (horizontal overflow). */
async function assertNoOverflow(page, what) {
  const { scroll, inner } = await page.evaluate(() => ({
    scroll: document.documentElement.scrollWidth,
    inner: window.innerWidth,
  }));
  assert.ok(scroll <= inner, `${what}: page is ${scroll} px wide at a ${inner} px viewport (horizontal overflow)`);
}

async function shot(page, name) {
  const file = artifact(`${name}.png`);
  await page.screenshot({ path: file, fullPage: true });
  return file;
}

/** Phone and desktop screenshots of the page as it is now. */
async function shots(page, name) {
  const was = page.viewportSize();
  await page.setViewportSize(PHONE);
  await assertNoOverflow(page, `${name} at 375 px`);
  const a = await shot(page, `${name}-phone`);
  await page.setViewportSize(DESKTOP);
  const b = await shot(page, `${name}-desktop`);
  await page.setViewportSize(was);
  return [a, b];
}

const counter = (page, id) => page.locator(`#${id}`).evaluate((el) => Number(el.dataset.value));

// --- shared fixtures --------------------------------------------------------

let tmp;
let server;
let browser;
let wav;

before(async () => {
  checkBinaries();
  tmp = tempDir('wssd-client');

  // A few seconds of speech, 48 kHz mono 16-bit, for the fake microphone.
  const raw = path.join(tmp, 'speech-raw.wav');
  wav = path.join(tmp, 'speech.wav');
  run('espeak-ng', ['-w', raw, 'Hello from the wssd browser test. The microphone streams sixteen kilohertz audio to the server.']);
  run('sox', [raw, '-r', '48000', '-c', '1', '-b', '16', wav, 'norm', '-3', 'pad', '0', '0.3']);
  const secs = Number(run('soxi', ['-D', wav]).trim());
  assert.ok(secs >= 2 && secs < 15, `speech WAV is ${secs} s`);

  server = await startWssd(path.join(tmp, 'main'), [
    '--route', '/=static',
    '--route', '/ws/echo=echo',
    '--route', '/ws/chat=chat',
  ], { env: { WSSD_MOD_PASSWORD: MOD_PASSWORD } });
  atEnd(() => stopWssd(server));

  browser = await launchChromium([
    ...INSECURE,
    '--use-fake-ui-for-media-stream',
    '--use-fake-device-for-media-stream',
    `--use-file-for-fake-audio-capture=${wav}`,
    '--autoplay-policy=no-user-gesture-required',
  ]);
  atEnd(() => browser.close());
});

const origin = () => `https://127.0.0.1:${server.port}`;

async function newPage(viewport, hash = '', init = null) {
  const context = await browser.newContext({ viewport });
  if (init) await context.addInitScript(init);
  const page = await context.newPage();
  const errors = [];
  page.on('pageerror', (e) => errors.push(e.message));
  // Anything the page's Content-Security-Policy blocks is a failure too.
  page.on('console', (m) => {
    if (m.type() === 'error' && /Content Security Policy/i.test(m.text())) errors.push(m.text());
  });
  const res = await page.goto(`${origin()}/${hash}`);
  assert.equal(res.status(), 200);
  assert.match(res.headers()['content-security-policy'] || '', /default-src 'none'/);
  return { context, page, errors };
}

// --- tests ------------------------------------------------------------------

test('layout: three tabs, each panel fits 375 px without horizontal overflow', { timeout: 60_000 }, async () => {
  const { context, page, errors } = await newPage(PHONE);
  try {
    for (const name of ['chat', 'echo', 'mic']) {
      await page.click(`#tab-${name}`);
      await page.locator(`#panel-${name}`).waitFor({ state: 'visible' });
      for (const other of ['chat', 'echo', 'mic'].filter((n) => n !== name)) {
        assert.equal(await page.locator(`#panel-${other}`).isVisible(), false, `#panel-${other} visible on the ${name} tab`);
      }
      assert.equal(await page.getAttribute(`#tab-${name}`, 'aria-selected'), 'true');
      assert.equal(new URL(page.url()).hash, `#${name}`);
      await assertNoOverflow(page, `${name} panel at 375 px`);
    }
    // The echo panel's socket is wss:// on this https:// page, on the page's host.
    await page.click('#tab-echo');
    await page.locator('#echo-status[data-state="open"]').waitFor({ timeout: 10_000 });
    assert.equal(await page.textContent('#echo-status'), `connected to wss://127.0.0.1:${server.port}/ws/echo`);
    assert.deepEqual(errors, []);
  } finally {
    await context.close();
  }
});

test('echo: text and file round trips show the reply and the round-trip time', { timeout: 60_000 }, async (t) => {
  const { context, page, errors } = await newPage(PHONE, '#echo');
  try {
    await page.locator('#echo-status[data-state="open"]').waitFor({ timeout: 10_000 });
    const text = 'hello from the echo panel ✓';
    await page.fill('#echo-text', text);
    await page.click('#echo-send');
    const reply = page.locator('#echo-log li.in').first();
    await reply.waitFor({ timeout: 10_000 });
    assert.equal(await reply.locator('.data').textContent(), text);
    assert.match(await reply.locator('.rtt').textContent(), /^\d+\.\d ms$/);
    assert.match(await page.textContent('#echo-rtt'), /^\d+\.\d ms$/);
    const ms = Number(await page.getAttribute('#echo-rtt', 'data-ms'));
    assert.ok(ms > 0 && ms < 10_000, `RTT ${ms} ms`);
    assert.equal(await page.inputValue('#echo-text'), '', 'the text field is cleared after sending');

    // A file goes out as one binary message and comes back the same size.
    const bytes = Buffer.alloc(70_000, 7);
    await page.setInputFiles('#echo-file', { name: 'blob.bin', mimeType: 'application/octet-stream', buffer: bytes });
    await page.click('#echo-send-file');
    await page.locator('#echo-log li.in.binary').first().waitFor({ timeout: 10_000 });
    assert.equal(await page.locator('#echo-log li.in.binary .data').first().textContent(), 'binary, 70,000 bytes');
    assert.match(await page.locator('#echo-log li.in.binary .rtt').first().textContent(), /^\d+\.\d ms$/);
    assert.equal(await page.locator('#echo-log li.in').count(), 2);

    const files = await shots(page, 'echo');
    t.diagnostic(`screenshots: ${files.join(', ')}`);
    assert.deepEqual(errors, []);
  } finally {
    await context.close();
  }
});

test('mic: 2 s of the fake microphone reach /ws/echo as 16 kHz 16-bit PCM (server metrics)', { timeout: 90_000 }, async (t) => {
  // Keep a copy of the first binary frames the page sends, to check the PCM itself.
  const capture = () => {
    window.__sentFrames = [];
    const send = WebSocket.prototype.send;
    WebSocket.prototype.send = function (data) {
      if (data instanceof ArrayBuffer && window.__sentFrames.length < 40) window.__sentFrames.push(Array.from(new Uint8Array(data)));
      return send.call(this, data);
    };
  };
  const { context, page, errors } = await newPage(DESKTOP, '#mic', capture);
  try {
    const labels = { route: '/ws/echo', direction: 'in' };
    const before = await metric(server, 'wssd_bytes_total', labels);
    // The raw microphone by default (no auto gain etc.); an end message on Stop.
    assert.equal(await page.isChecked('#mic-processing'), false);
    await page.fill('#mic-end', 'EOF');
    await page.click('#mic-start');
    await page.locator('#mic-status[data-state="open"]').waitFor({ timeout: 15_000 });
    assert.equal(await page.textContent('#mic-status'), `connected to wss://127.0.0.1:${server.port}/ws/echo`);

    // 20 frames of 100 ms at 16 kHz take about 2 s of audio-clock time.
    await page.waitForFunction(() => Number(document.getElementById('mic-frames').dataset.value) >= 2, null, { timeout: 15_000 });
    const f0 = await counter(page, 'mic-frames');
    const t0 = Date.now();
    await page.waitForFunction((n) => Number(document.getElementById('mic-frames').dataset.value) >= n, f0 + 20, { timeout: 15_000 });
    const elapsed = (Date.now() - t0) / 1000;
    assert.ok(elapsed > 1.2 && elapsed < 10, `20 frames of 100 ms took ${elapsed} s (not a 16 kHz stream?)`);
    assert.match(await page.textContent('#mic-format'), /captured at \d+ Hz, sent as 16 kHz mono 16-bit little-endian PCM/);

    // The speech is there: the level meter moved.
    const maxLevel = Number(await page.getAttribute('#mic-level', 'data-max'));
    assert.ok(maxLevel > 0.01, `highest RMS level ${maxLevel}: the fake microphone sounded silent`);
    await page.screenshot({ path: artifact('mic-streaming.png') });

    // The frames are 16-bit little-endian PCM of speech: decoded that way the
    // signal is loud enough and smooth from sample to sample at 16 kHz (lag-1
    // autocorrelation near 1); the wrong byte order or sample format decodes
    // as noise (autocorrelation near 0).
    const frames0 = await page.evaluate(() => window.__sentFrames);
    assert.ok(frames0.length >= 10, `captured ${frames0.length} frames`);
    let best = { r1: -1, peak: 0 };
    for (const bytes of frames0) {
      assert.equal(bytes.length, 3200, 'a frame is 1600 samples of 2 bytes');
      const b = Buffer.from(bytes);
      const x = Array.from({ length: 1600 }, (_, i) => b.readInt16LE(2 * i));
      const peak = Math.max(...x.map(Math.abs));
      if (peak < 1000) continue; // a pause in the speech
      let num = 0;
      let den = 0;
      for (let i = 0; i < x.length - 1; i++) {
        num += x[i] * x[i + 1];
        den += x[i] * x[i];
      }
      const r1 = num / den;
      if (peak > best.peak) best = { r1, peak };
    }
    t.diagnostic(`loudest captured frame: peak ${best.peak}, lag-1 autocorrelation ${best.r1.toFixed(3)}`);
    assert.ok(best.peak >= 1000, 'no loud frame among the first 40: the PCM is silent');
    assert.ok(best.r1 > 0.5, `lag-1 autocorrelation ${best.r1}: the PCM does not look like 16 kHz speech`);

    // Stop: the partial last frame and the end message go out, and the
    // socket stays open (data-state=closing) until the last replies are in.
    await page.click('#mic-stop');
    await page.locator('#mic-status[data-state="closing"]').waitFor({ timeout: 5_000 });
    assert.match(await page.textContent('#mic-status'), /^finishing: end message sent; waiting for the last replies/);
    assert.equal(await page.isDisabled('#mic-start'), true, 'Start stays disabled while finishing');
    await page.locator('#mic-status[data-state="closed"]').waitFor({ timeout: 10_000 });
    assert.equal(await page.isDisabled('#mic-start'), false);
    const sent = await counter(page, 'mic-bytes');
    const frames = await counter(page, 'mic-frames');
    assert.ok(sent % 2 === 0 && sent > (frames - 1) * 3200 && sent <= frames * 3200,
      `${sent} bytes in ${frames} frames: full frames are 100 ms of 16 kHz 16-bit mono (3200 bytes), the last one may be shorter`);
    assert.ok(sent >= 16_000, `page sent ${sent} bytes`);
    // Nothing was cut at Stop: the echo route sent back every byte and the
    // end message before the page closed the socket.
    assert.equal(await counter(page, 'mic-bytes-in'), sent, 'echoed bytes received before closing');
    assert.equal(await counter(page, 'mic-text-count'), 1);
    assert.equal((await page.textContent('#mic-replies li .text')).trim(), 'EOF');

    // The server saw exactly that: wssd_bytes_total{route="/ws/echo",direction="in"}
    // grew by the page's bytes plus the 3-byte end message.
    const delta = (await metric(server, 'wssd_bytes_total', labels)) - before;
    t.diagnostic(`page sent ${sent} bytes in ${frames} frames + "EOF"; server counted ${delta} bytes in on /ws/echo`);
    assert.equal(delta, sent + 3, `server counted ${delta} bytes, the page says it sent ${sent} + 3`);

    const files = await shots(page, 'mic');
    t.diagnostic(`screenshots: ${files.join(', ')}`);
    assert.deepEqual(errors, []);
  } finally {
    await context.close();
  }
});

test('mic: a dropped socket is shown and reconnected with backoff', { timeout: 120_000 }, async (t) => {
  // A second wssd (echo only) that the test stops and starts again on the same port.
  const dir = path.join(tmp, 'second');
  const extra = ['--route', '/ws/echo=echo', '--allow-origin', '*'];
  let second = await startWssd(dir, extra);
  const port = second.port;
  atEnd(() => stopWssd(second));
  const { context, page, errors } = await newPage(PHONE, '#mic');
  try {
    await page.fill('#mic-route', `wss://127.0.0.1:${port}/ws/echo`);
    await page.click('#mic-start');
    await page.locator('#mic-status[data-state="open"]').waitFor({ timeout: 15_000 });
    await page.waitForFunction(() => Number(document.getElementById('mic-frames').dataset.value) >= 3, null, { timeout: 15_000 });

    await stopWssd(second);
    assert.deepEqual(second.exited(), { code: 0, signal: null });
    await page.locator('#mic-status[data-state="reconnecting"]').waitFor({ timeout: 10_000 });
    const status = await page.textContent('#mic-status');
    assert.match(status, /^disconnected: .*\(code 100[16]\); reconnecting in \d+\.\d s \(attempt \d+\)$/);
    assert.ok(await page.locator('#mic-status.wait').isVisible(), 'the status line is not marked as waiting');
    // Frames keep coming from the microphone but cannot be sent.
    await page.waitForFunction(() => Number(document.getElementById('mic-dropped').dataset.value) >= 2, null, { timeout: 15_000 });
    await page.screenshot({ path: artifact('mic-reconnecting.png'), fullPage: true });
    t.diagnostic(`while down: ${status}`);

    // Backoff: the attempt number grows while the server is away.
    await page.waitForFunction(() => /attempt [2-9]/.test(document.getElementById('mic-status').textContent), null, { timeout: 15_000 });

    second = await startWssd(dir, extra, { port });
    await page.locator('#mic-status[data-state="open"]').waitFor({ timeout: 30_000 });
    const sentBefore = await counter(page, 'mic-bytes');
    await page.waitForFunction((n) => Number(document.getElementById('mic-bytes').dataset.value) > n, sentBefore, { timeout: 10_000 });
    await page.click('#mic-stop');
    await page.locator('#mic-status[data-state="closed"]').waitFor({ timeout: 10_000 });
    assert.deepEqual(errors, []);
  } finally {
    await context.close();
    await stopWssd(second);
  }
});

test('mic: when the server closes first after Stop, the status ends closed with its reason', { timeout: 90_000 }, async (t) => {
  // A recognizer-like exec route (binary): it reads the stream until the end
  // message, answers, and exits 0, so wssd closes the socket (1000) while
  // the page is still waiting for the last replies.
  const dir = path.join(tmp, 'server-first');
  mkdirSync(dir, { recursive: true });
  const script = [
    'import sys',
    `MARK = b"${END_MARK}"`,
    'tail = b""',
    'while True:',
    '    chunk = sys.stdin.buffer.read1(65536)',
    '    if not chunk:',
    '        sys.exit(1)',
    '    tail += chunk',
    '    if MARK in tail:',
    '        break',
    '    tail = tail[-(len(MARK) - 1):]',
    'sys.stdout.buffer.write(b"final")',
    'sys.stdout.flush()',
  ].join('\n');
  writeFileSync(path.join(dir, 'wssd.toml'), [
    '[[route]]',
    'path = "/ws/final"',
    'kind = "exec"',
    'binary = true',
    `command = ["python3", "-c", ${JSON.stringify(script)}]`,
    '',
  ].join('\n'));
  const final = await startWssd(dir, ['--config', path.join(dir, 'wssd.toml'), '--allow-origin', '*']);
  const { context, page, errors } = await newPage(PHONE, '#mic');
  try {
    await page.fill('#mic-route', `wss://127.0.0.1:${final.port}/ws/final`);
    await page.fill('#mic-end', END_MARK);
    await page.click('#mic-start');
    await page.locator('#mic-status[data-state="open"]').waitFor({ timeout: 15_000 });
    await page.waitForFunction(() => Number(document.getElementById('mic-frames').dataset.value) >= 5, null, { timeout: 15_000 });
    await page.click('#mic-stop');
    // Stop has finished once Start is usable again.
    await page.locator('#mic-start:not([disabled])').waitFor({ timeout: 10_000 });
    assert.equal(await counter(page, 'mic-bytes-in'), 5, 'the route\'s answer ("final") arrived');
    const status = await page.textContent('#mic-status');
    t.diagnostic(`status after Stop: ${status}`);
    assert.equal(await page.getAttribute('#mic-status', 'data-state'), 'closed', `status: ${status}`);
    assert.match(status, /^stopped; [\d,]+ bytes sent; closed by the server: .*\(code 1000\)$/);
    await page.screenshot({ path: artifact('mic-server-closed-first.png'), fullPage: true });
    assert.deepEqual(errors, []);
  } finally {
    await context.close();
    await stopWssd(final);
  }
});

test('mic: a refused microphone permission is explained', { timeout: 60_000 }, async () => {
  // A browser without the fake media UI: headless Chromium refuses the prompt.
  const plain = await launchChromium([...INSECURE, '--use-fake-device-for-media-stream', '--deny-permission-prompts']);
  try {
    const page = await plain.newPage({ viewport: PHONE });
    await page.goto(`${origin()}/#mic`);
    await page.click('#mic-start');
    await page.locator('#mic-message[data-kind="denied"]').waitFor({ timeout: 15_000 });
    assert.match(await page.textContent('#mic-message'), /^microphone access was refused \(NotAllowedError\)/);
    assert.equal(await page.isDisabled('#mic-start'), false, 'Start is usable again');
    assert.equal(await page.getAttribute('#mic-status', 'data-state'), 'idle', 'no socket was opened');
    await shot(page, 'mic-denied-phone');
  } finally {
    await plain.close();
  }
});

test('mic: on plain http (not localhost) the page says the microphone needs https', { timeout: 60_000 }, async () => {
  // A plain listener; the name wssd.test resolves to 127.0.0.1 in this browser only.
  const dir = path.join(tmp, 'plain');
  const httpPort = await freePort();
  // wssd.test is a DNS name: on a plain listener a browser page may use it only once allowed (DNS-rebinding guard).
  const plainServer = await startWssd(dir, ['--http', `127.0.0.1:${httpPort}`, '--route', '/=static', '--route', '/ws/echo=echo', '--allow-host', 'wssd.test']);
  atEnd(() => stopWssd(plainServer));
  const plain = await launchChromium([
    ...INSECURE,
    '--host-resolver-rules=MAP wssd.test 127.0.0.1',
    '--use-fake-ui-for-media-stream',
    '--use-fake-device-for-media-stream',
  ]);
  try {
    const page = await plain.newPage({ viewport: PHONE });
    await page.goto(`http://wssd.test:${httpPort}/#mic`);
    assert.equal(await page.evaluate(() => window.isSecureContext), false);
    const msg = page.locator('#mic-message[data-kind="insecure"]');
    await msg.waitFor({ timeout: 10_000 });
    assert.match(await msg.textContent(), /^the microphone needs https:\/\/; open https:\/\/wssd\.test\/ instead/);
    await page.click('#mic-start');
    assert.equal(await page.getAttribute('#mic-status', 'data-state'), 'idle', 'no socket was opened');
    // The echo panel uses ws:// on an http:// page.
    await page.click('#tab-echo');
    await page.locator('#echo-status[data-state="open"]').waitFor({ timeout: 10_000 });
    assert.equal(await page.textContent('#echo-status'), `connected to ws://wssd.test:${httpPort}/ws/echo`);
    await page.click('#tab-mic');
    await shot(page, 'mic-insecure-phone');
  } finally {
    await plain.close();
    await stopWssd(plainServer);
  }
});

test('chat: two users talk, see each other, and a taken name is refused', { timeout: 90_000 }, async (t) => {
  const a = await newPage(PHONE, '#chat');
  const b = await newPage(DESKTOP, '#chat');
  const c = await newPage(PHONE, '#chat');
  try {
    const room = `room-${process.pid}`;
    async function join(p, name) {
      await p.page.fill('#chat-room', room);
      await p.page.fill('#chat-username', name);
      await p.page.click('#chat-join');
    }
    const members = (p) => p.page.locator('#chat-members li').evaluateAll((els) => els.map((e) => e.dataset.username));

    await join(a, 'alice');
    await a.page.locator('#chat-members li[data-username="alice"]').waitFor({ timeout: 10_000 });
    assert.equal(await a.page.getAttribute('#chat-status', 'data-state'), 'open');
    assert.equal(await a.page.textContent('#chat-status'), `connected to wss://127.0.0.1:${server.port}/ws/chat`);
    assert.equal(await a.page.textContent('#chat-current-room'), room);
    await a.page.fill('#chat-text', 'first message, before bob came');
    await a.page.click('#chat-send');
    await a.page.locator('#chat-messages li.msg.mine').waitFor({ timeout: 10_000 });

    await join(b, 'bob');
    await b.page.locator('#chat-members li[data-username="alice"]').waitFor({ timeout: 10_000 });
    assert.deepEqual((await members(b)).sort(), ['alice', 'bob']);
    // History on join.
    const hist = b.page.locator('#chat-messages li.msg.history');
    assert.equal(await hist.count(), 1);
    assert.equal(await hist.locator('.from').textContent(), 'alice');
    assert.equal(await hist.locator('.text').textContent(), 'first message, before bob came');
    // Presence reached alice.
    await a.page.locator('#chat-members li[data-username="bob"]').waitFor({ timeout: 10_000 });
    await a.page.locator('#chat-messages li.event', { hasText: 'bob joined' }).waitFor({ timeout: 10_000 });
    assert.equal(await a.page.textContent('#chat-member-count'), '2');

    // Both ways.
    await a.page.fill('#chat-text', 'hi bob, this is alice');
    await a.page.press('#chat-text', 'Enter');
    const atB = b.page.locator('#chat-messages li.msg:not(.history)').last();
    await b.page.locator('#chat-messages li.msg[data-from="alice"]:not(.history)').waitFor({ timeout: 10_000 });
    assert.equal(await atB.locator('.text').textContent(), 'hi bob, this is alice');
    assert.match(await atB.locator('.time').textContent(), /\d{1,2}:\d{2}/);
    await b.page.fill('#chat-text', 'hello alice — a longer reply from bob, long enough to wrap on a phone screen without pushing the page sideways: https://example.invalid/a/very/long/path/without/any/spaces/at/all/0123456789');
    await b.page.click('#chat-send');
    const atA = a.page.locator('#chat-messages li.msg[data-from="bob"]');
    await atA.waitFor({ timeout: 10_000 });
    assert.match(await atA.locator('.text').textContent(), /^hello alice — a longer reply from bob/);
    assert.equal(await a.page.locator('#chat-messages li.msg').count(), 3);

    // A taken name: error inline, not joined.
    await join(c, 'alice');
    await c.page.locator('#chat-error[data-code="name_taken"]').waitFor({ timeout: 10_000 });
    assert.match(await c.page.textContent('#chat-error'), /^name_taken: .*alice/);
    assert.equal(await c.page.isDisabled('#chat-send'), true, 'not joined after name_taken');
    assert.equal(await c.page.isEnabled('#chat-join'), true);
    await assertNoOverflow(c.page, 'chat with an error at 375 px');
    await shot(c.page, 'chat-name-taken-phone');
    // carol can join under another name; everyone sees her.
    await c.page.fill('#chat-username', 'carol');
    await c.page.click('#chat-join');
    await c.page.locator('#chat-members li[data-username="carol"]').waitFor({ timeout: 10_000 });
    assert.equal(await c.page.isHidden('#chat-error'), true, 'the error clears after joining');
    await a.page.locator('#chat-members li[data-username="carol"]').waitFor({ timeout: 10_000 });
    await b.page.locator('#chat-members li[data-username="carol"]').waitFor({ timeout: 10_000 });

    await assertNoOverflow(a.page, 'chat at 375 px');
    const files = [...(await shots(a.page, 'chat')), await shot(b.page, 'chat-bob-desktop')];
    t.diagnostic(`screenshots: ${files.join(', ')}`);

    // carol leaves: members update for the others.
    await c.page.click('#chat-leave');
    await c.page.locator('#chat-messages li.event', { hasText: `you left ${room}` }).waitFor({ timeout: 10_000 });
    await a.page.locator('#chat-members li[data-username="carol"]').waitFor({ state: 'detached', timeout: 10_000 });
    assert.deepEqual((await members(a)).sort(), ['alice', 'bob']);
    assert.deepEqual([...a.errors, ...b.errors, ...c.errors], []);
  } finally {
    await a.context.close();
    await b.context.close();
    await c.context.close();
  }
});

test('chat: a moderator mutes, kicks and bans; the others see it', { timeout: 90_000 }, async (t) => {
  const mod = await newPage(DESKTOP, '#chat');
  const dan = await newPage(PHONE, '#chat');
  const eve = await newPage(PHONE, '#chat');
  try {
    const room = `modroom-${process.pid}`;
    for (const [p, name] of [[mod, 'mia'], [dan, 'dan']]) {
      await p.page.fill('#chat-room', room);
      await p.page.fill('#chat-username', name);
      await p.page.click('#chat-join');
    }
    await mod.page.locator('#chat-members li[data-username="dan"]').waitFor({ timeout: 10_000 });

    // Not a moderator yet.
    await mod.page.selectOption('#mod-target', 'dan');
    await mod.page.click('#mod-kick');
    await mod.page.locator('#chat-error[data-code="not_moderator"]').waitFor({ timeout: 10_000 });

    // A wrong password, then the right one.
    await mod.page.fill('#mod-password', 'wrong');
    await mod.page.click('#mod-auth');
    await mod.page.locator('#chat-error[data-code="bad_password"]').waitFor({ timeout: 10_000 });
    assert.equal(await mod.page.getAttribute('#mod-state', 'data-moderator'), 'false');
    await mod.page.fill('#mod-password', MOD_PASSWORD);
    // The server accepts one attempt per second; retry until it answers with authenticated.
    await until(async () => {
      await mod.page.click('#mod-auth');
      try {
        await mod.page.locator('#mod-state[data-moderator="true"]').waitFor({ timeout: 1_500 });
        return true;
      } catch {
        await mod.page.fill('#mod-password', MOD_PASSWORD);
        return false;
      }
    }, 'moderator sign-in', 15_000, 0);
    assert.equal(await mod.page.isHidden('#chat-error'), true, 'the error clears after signing in');

    // Mute dan for 60 s: both see the moderation event; dan's message is refused.
    await mod.page.selectOption('#mod-target', 'dan');
    await mod.page.fill('#mod-secs', '60');
    await mod.page.click('#mod-mute');
    await dan.page.locator('#chat-messages li.moderation', { hasText: 'mia muted you for 60 s' }).waitFor({ timeout: 10_000 });
    await mod.page.locator('#chat-messages li.moderation', { hasText: 'mia muted dan for 60 s' }).waitFor({ timeout: 10_000 });
    await dan.page.fill('#chat-text', 'can anyone hear me?');
    await dan.page.click('#chat-send');
    await dan.page.locator('#chat-error[data-code="muted"]').waitFor({ timeout: 10_000 });

    // Kick: dan's page shows it and stays closed (no automatic rejoin); mia's member list drops dan.
    await mod.page.selectOption('#mod-target', 'dan');
    await mod.page.click('#mod-kick');
    await dan.page.locator('#chat-status[data-state="closed"]').waitFor({ timeout: 10_000 });
    assert.match(await dan.page.textContent('#chat-status'), /code 4001/);
    assert.equal(await dan.page.getAttribute('#chat-error', 'data-code'), 'kicked');
    assert.match(await dan.page.textContent('#chat-error'), new RegExp(`^kicked: a moderator removed you from ${room} \\(close code 4001\\)`));
    assert.equal(await dan.page.textContent('#chat-where'), 'Not in a room');
    await mod.page.locator('#chat-members li[data-username="dan"]').waitFor({ state: 'detached', timeout: 10_000 });
    await mod.page.locator('#chat-messages li.moderation', { hasText: 'mia kicked dan' }).waitFor({ timeout: 10_000 });
    await assertNoOverflow(dan.page, 'kicked chat at 375 px');
    const files = [await shot(dan.page, 'chat-kicked-phone')];

    // Ban: eve's page shows 4003 and eve cannot come back under that name.
    await eve.page.fill('#chat-room', room);
    await eve.page.fill('#chat-username', 'eve');
    await eve.page.click('#chat-join');
    await mod.page.locator('#chat-members li[data-username="eve"]').waitFor({ timeout: 10_000 });
    await mod.page.selectOption('#mod-target', 'eve');
    await mod.page.click('#mod-ban');
    await eve.page.locator('#chat-error[data-code="banned"]').waitFor({ timeout: 10_000 });
    assert.match(await eve.page.textContent('#chat-status'), /code 4003/);
    await mod.page.locator('#chat-messages li.moderation', { hasText: 'mia banned eve' }).waitFor({ timeout: 10_000 });
    await mod.page.locator('#chat-members li[data-username="eve"]').waitFor({ state: 'detached', timeout: 10_000 });
    // Joining again reconnects and the server answers with the `banned` error.
    await eve.page.click('#chat-join');
    await eve.page.locator('#chat-messages li.error .text', { hasText: /^banned: / }).waitFor({ timeout: 10_000 });
    assert.equal(await eve.page.getAttribute('#chat-error', 'data-code'), 'banned');
    assert.equal(await eve.page.getAttribute('#chat-status', 'data-state'), 'open', 'reconnected to try again');
    assert.match(await eve.page.textContent('#chat-error'), /^banned: .*eve/);
    files.push(await shot(mod.page, 'chat-moderator-desktop'), await shot(eve.page, 'chat-banned-phone'));
    t.diagnostic(`screenshots: ${files.join(', ')}`);
    assert.deepEqual([...mod.errors, ...dan.errors, ...eve.errors], []);
  } finally {
    await mod.context.close();
    await dan.context.close();
    await eve.context.close();
  }
});
