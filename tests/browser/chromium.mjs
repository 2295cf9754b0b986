// How wssd's browser tests and benches launch Chromium: the binary and the
// arguments they all use. No test framework here, so that a bench script
// (bench/h2_load.mjs) can import it as tests/browser/lib.mjs does.
//
// Environment: CHROMIUM_BIN (default Debian's /usr/bin/chromium).

/** The Chromium binary (CHROMIUM_BIN, default Debian's /usr/bin/chromium). */
export const CHROMIUM = process.env.CHROMIUM_BIN || '/usr/bin/chromium';

/** Chromium arguments every test uses: no sandbox, GPU, QUIC, proxy or background traffic. */
export const CHROMIUM_ARGS = [
  '--no-sandbox',
  '--disable-gpu',
  '--disable-quic',
  '--no-first-run',
  '--disable-background-networking',
  '--disable-component-update',
  '--disable-sync',
  '--no-proxy-server',
];
