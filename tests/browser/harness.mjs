// Shared by the browser tests: starts roverd, launches Debian's Chromium
// through playwright-core, and opens roverd's page.
//
// Env: ROVERD_BIN (default target/debug/roverd), CHROMIUM (default
// /usr/bin/chromium), ROVERD_WEB_DIR (optional: serve the page's files from
// this directory instead of the copy compiled into roverd, to try page edits
// without rebuilding; the API and WebRTC still go to roverd).

import { spawn } from 'node:child_process';
import { mkdtempSync, rmSync, existsSync, readFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { dirname, join, resolve } from 'node:path';
import { fileURLToPath } from 'node:url';
import { chromium } from 'playwright-core';

const HERE = dirname(fileURLToPath(import.meta.url));
export const REPO = resolve(HERE, '..', '..');
export const ROVERD_BIN = process.env.ROVERD_BIN
  ? resolve(process.env.ROVERD_BIN)
  : join(REPO, 'target', 'debug', 'roverd');
export const CHROMIUM = process.env.CHROMIUM || '/usr/bin/chromium';
export const WEB_DIR = process.env.ROVERD_WEB_DIR ? resolve(process.env.ROVERD_WEB_DIR) : null;

export const START_TIMEOUT_MS = 60_000; // roverd prints its address within this

export const CHROMIUM_ARGS = [
  '--no-sandbox',
  '--disable-gpu',
  '--disable-quic',
  '--no-first-run',
  '--disable-background-networking',
  '--disable-component-update',
  '--disable-sync',
  '--use-fake-ui-for-media-stream',
  '--autoplay-policy=no-user-gesture-required',
];

let roverd = null;   // ChildProcess
let log = '';        // everything roverd printed (stderr + stdout)
let context = null;  // playwright BrowserContext (persistent)
let profileDir = null;

export const sleep = (ms) => new Promise((r) => setTimeout(r, ms));

export function tail(text, lines = 40) {
  return text.split('\n').slice(-lines).join('\n');
}

// Everything roverd printed so far.
export function roverdLog() {
  return log;
}

// The running roverd's ChildProcess (to pause it with SIGSTOP, say), or null.
export function roverdProcess() {
  return roverd;
}

// Starts `roverd --simulate --listen 127.0.0.1:0` and resolves with
// "IP:PORT" from its "listening on http://" line, or its "https://" line with
// { scheme: 'https' }. `args` are added to the command line, `env` to its
// environment.
export function startRoverd({ args = [], env = {}, scheme = 'http' } = {}) {
  if (!existsSync(ROVERD_BIN)) {
    throw new Error(`roverd binary not found at ${ROVERD_BIN}: run \`cargo build\` first or set ROVERD_BIN`);
  }
  roverd = spawn(ROVERD_BIN, ['--simulate', '--listen', '127.0.0.1:0', ...args], {
    cwd: REPO,
    env: { ...process.env, RUST_LOG: 'info', ...env },
    stdio: ['ignore', 'pipe', 'pipe'],
  });
  return new Promise((resolvePromise, reject) => {
    const re = new RegExp(`listening on ${scheme}://([0-9.]+:[0-9]+)`);
    let settled = false;
    const finish = (err, addr) => {
      if (settled) return;
      settled = true;
      clearTimeout(timer);
      if (err) reject(err); else resolvePromise(addr);
    };
    const onData = (chunk) => {
      log += chunk.toString();
      const m = re.exec(log);
      if (m) finish(null, m[1]);
    };
    roverd.stderr.on('data', onData);
    roverd.stdout.on('data', onData);
    roverd.on('error', (e) => finish(new Error(`cannot start ${ROVERD_BIN}: ${e.message}`)));
    roverd.on('exit', (code, signal) => finish(new Error(
      `roverd exited (code ${code}, signal ${signal}) before listening; its output:\n${tail(log)}`)));
    const timer = setTimeout(() => finish(new Error(
      `roverd did not print "listening on ${scheme}://IP:PORT" within ${START_TIMEOUT_MS / 1000} s; its output:\n${tail(log)}`)),
    START_TIMEOUT_MS);
  });
}

export async function stopRoverd() {
  const child = roverd;
  roverd = null;
  if (!child || child.exitCode !== null || child.signalCode !== null) return;
  const exited = new Promise((r) => child.once('exit', r));
  child.kill('SIGTERM');
  const t = setTimeout(() => child.kill('SIGKILL'), 5000);
  await exited;
  clearTimeout(t);
}

// Last resort if the test process dies without running `after`.
process.on('exit', () => {
  if (roverd && roverd.exitCode === null) roverd.kill('SIGKILL');
});

// Launches headless Chromium with a fresh profile; one per test file.
export async function launchBrowser(options = {}) {
  profileDir = mkdtempSync(join(tmpdir(), 'roverd-chromium-'));
  context = await chromium.launchPersistentContext(profileDir, {
    executablePath: CHROMIUM,
    headless: true,
    args: CHROMIUM_ARGS,
    viewport: { width: 390, height: 844 },
    ...options,
  });
  if (WEB_DIR) {
    const files = { '/': 'index.html', '/index.html': 'index.html', '/app.js': 'app.js', '/style.css': 'style.css' };
    const types = { html: 'text/html; charset=utf-8', js: 'text/javascript; charset=utf-8', css: 'text/css; charset=utf-8' };
    await context.route((url) => Object.hasOwn(files, url.pathname), (route) => {
      const name = files[new URL(route.request().url()).pathname];
      route.fulfill({
        status: 200,
        contentType: types[name.split('.').pop()],
        body: readFileSync(join(WEB_DIR, name)),
      });
    });
  }
  return context;
}

export async function closeBrowser() {
  try {
    if (context) await Promise.race([context.close(), sleep(10_000)]);
  } finally {
    context = null;
    if (profileDir) rmSync(profileDir, { recursive: true, force: true });
    profileDir = null;
  }
}

// Opens a page of roverd's UI, collecting its console output for diagnostics
// in page.roverLog.
export async function openRoverPage(ctx, baseUrl) {
  const page = await ctx.newPage();
  const lines = [];
  page.on('console', (m) => lines.push(`[${m.type()}] ${m.text()}`));
  page.on('pageerror', (e) => lines.push(`[pageerror] ${e.message}`));
  page.roverLog = lines;
  await page.goto(baseUrl + '/', { waitUntil: 'load' });
  return page;
}
