// Shared helpers of the browser tests (tests/browser/*.test.mjs): where the
// wssd binary, Chromium and the artifacts folder are, Chromium's launch
// arguments, free ports, polling, starting wssd and waiting for /readyz,
// stopping it by PID, temporary folders and the cleanups run after all tests
// of a file. Not a test itself: node --test runs only *.test.mjs.
//
// Environment: WSSD_BIN (default <repo>/target/debug/wssd),
//              CHROMIUM_BIN (default /usr/bin/chromium),
//              BROWSER_ARTIFACTS (default <repo>/target/browser).

import { after } from 'node:test';
import assert from 'node:assert/strict';
import { spawn } from 'node:child_process';
import { existsSync, mkdirSync, mkdtempSync, rmSync } from 'node:fs';
import net from 'node:net';
import os from 'node:os';
import path from 'node:path';
import { fileURLToPath } from 'node:url';
import { chromium } from 'playwright-core';
import { CHROMIUM, CHROMIUM_ARGS } from './chromium.mjs';

const here = path.dirname(fileURLToPath(import.meta.url));
const repo = path.resolve(here, '..', '..');

/** The wssd binary under test (WSSD_BIN, default <repo>/target/debug/wssd). */
export const WSSD = path.resolve(process.env.WSSD_BIN || path.join(repo, 'target', 'debug', 'wssd'));
/** Where screenshots go (BROWSER_ARTIFACTS, default <repo>/target/browser). */
export const ARTIFACTS = path.resolve(process.env.BROWSER_ARTIFACTS || path.join(repo, 'target', 'browser'));

export { CHROMIUM, CHROMIUM_ARGS };

/** Asserts that WSSD and CHROMIUM exist, saying how to get them when not. */
export function checkBinaries() {
  assert.ok(existsSync(WSSD), `${WSSD} not found: run cargo build --bin wssd (or set WSSD_BIN)`);
  assert.ok(existsSync(CHROMIUM), `${CHROMIUM} not found: apt-get install chromium (or set CHROMIUM_BIN)`);
}

// The cleanups of the importing test file, run by one `after` hook.
const cleanups = [];
after(async () => {
  for (const fn of cleanups.reverse()) {
    try {
      await fn();
    } catch (e) {
      console.error('cleanup failed:', e);
    }
  }
});

/** Runs `fn` (may be async) after all tests of the file, the last added first; a failure is logged, not thrown. */
export function atEnd(fn) {
  cleanups.push(fn);
}

/** A fresh folder under the system temporary folder, named PREFIX-xxxxxx; removed at the end (atEnd). */
export function tempDir(prefix) {
  const dir = mkdtempSync(path.join(os.tmpdir(), `${prefix}-`));
  atEnd(() => rmSync(dir, { recursive: true, force: true }));
  return dir;
}

/** The path of artifact NAME (a file name) in ARTIFACTS, creating the folder. */
export function artifact(name) {
  mkdirSync(ARTIFACTS, { recursive: true });
  return path.join(ARTIFACTS, name);
}

/** Launches CHROMIUM with CHROMIUM_ARGS then `extraArgs`; `options` go to playwright's chromium.launch. */
export function launchChromium(extraArgs = [], options = {}) {
  return chromium.launch({ executablePath: CHROMIUM, args: [...CHROMIUM_ARGS, ...extraArgs], ...options });
}

/** A TCP port free on 127.0.0.1 right now. */
export function freePort() {
  return new Promise((resolve, reject) => {
    const srv = net.createServer();
    srv.unref();
    srv.on('error', reject);
    srv.listen(0, '127.0.0.1', () => {
      const { port } = srv.address();
      srv.close(() => resolve(port));
    });
  });
}

/**
 * Polls `fn` (async, truthy = done) every `ms` until `timeout`; returns its
 * value. On timeout throws with `what` (a string, or a function giving one then).
 */
export async function until(fn, what, timeout = 10_000, ms = 100) {
  const deadline = Date.now() + timeout;
  for (;;) {
    const v = await fn();
    if (v) return v;
    if (Date.now() > deadline) {
      throw new Error(`timed out after ${timeout} ms: ${typeof what === 'function' ? what() : what}`);
    }
    await new Promise((r) => setTimeout(r, ms));
  }
}

/**
 * Starts `wssd --tls TLS --state-dir STATEDIR --listen 127.0.0.1:PORT --admin
 * 127.0.0.1:ADMIN ...extra` (PORT free unless given, ADMIN free), in `cwd`
 * when given, with `env` added to the environment; resolves once the admin
 * /readyz answers 200 (30 s at most). Returns { child, port, adminPort,
 * output(), exited() }; exited() is null while it runs, then { code, signal }.
 */
export async function startWssd({ tls, stateDir, extra = [], port, cwd, env = {} }) {
  port = port ?? (await freePort());
  const adminPort = await freePort();
  const args = [
    '--tls', tls,
    '--state-dir', stateDir,
    '--listen', `127.0.0.1:${port}`,
    '--admin', `127.0.0.1:${adminPort}`,
    ...extra,
  ];
  const child = spawn(WSSD, args, { cwd, stdio: ['ignore', 'pipe', 'pipe'], env: { ...process.env, ...env } });
  let output = '';
  child.stdout.on('data', (d) => { output += d; });
  child.stderr.on('data', (d) => { output += d; });
  let exited = null;
  child.on('exit', (code, signal) => { exited = { code, signal }; });
  const server = { child, port, adminPort, output: () => output, exited: () => exited };
  await until(async () => {
    if (exited) throw new Error(`wssd exited (${JSON.stringify(exited)}) before it was ready:\n${output}`);
    try {
      return (await fetch(`http://127.0.0.1:${adminPort}/readyz`)).status === 200;
    } catch {
      return false; // not listening yet
    }
  }, () => `wssd ready (admin /readyz); output so far:\n${output}`, 30_000);
  return server;
}

/** Stops a startWssd server: SIGTERM by PID, SIGKILL after 15 s; resolves when it has exited. */
export async function stopWssd(server) {
  if (!server || server.exited()) return;
  const gone = new Promise((r) => server.child.once('exit', r));
  process.kill(server.child.pid, 'SIGTERM');
  const timer = setTimeout(() => {
    if (!server.exited()) process.kill(server.child.pid, 'SIGKILL');
  }, 15_000);
  await gone;
  clearTimeout(timer);
}
