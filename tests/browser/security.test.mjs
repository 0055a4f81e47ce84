// The page behind a token and over HTTPS, in headless Chromium.
//
// roverd runs with http.token, http.viewer_token and a self-signed certificate
// (made at start in a temporary state directory). The page, opened over HTTPS
// without a token, must ask for it; given the full token it must connect and
// decode video, and remember the token across a reload; given only the viewer
// token it must connect, and its drive keys must move nothing.
//
// Run from the repo root:  npm ci --prefix tests/browser && node --test tests/browser/

import { test, before, after } from 'node:test';
import assert from 'node:assert/strict';
import { mkdtempSync, writeFileSync, existsSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import {
  sleep, tail, roverdLog, startRoverd, stopRoverd, launchBrowser, closeBrowser, openRoverPage,
} from './harness.mjs';

const FULL = 'full-token-for-the-browser-test';
const VIEWER = 'viewer-token-for-the-browser-test';
const DEADLINE_MS = 15_000;

let baseUrl = null;
let context = null;
let stateDir = null;

before(async () => {
  stateDir = mkdtempSync(join(tmpdir(), 'roverd-state-'));
  const config = join(stateDir, 'roverd.toml');
  writeFileSync(config, [
    '[http]',
    `token = "${FULL}"`,
    `viewer_token = "${VIEWER}"`,
    '[http.tls]',
    'listen = "127.0.0.1:0"',
    'self_signed = true',
    '[motors]',
    'ramp_per_s = 1000',
    '',
  ].join('\n'));
  const addr = await startRoverd({
    args: ['--config', config],
    env: { STATE_DIRECTORY: stateDir },
    scheme: 'https',
  });
  baseUrl = `https://${addr}`;
  // A self-signed certificate: the test accepts it as a user would, once.
  context = await launchBrowser({ ignoreHTTPSErrors: true });
});

after(async () => {
  await closeBrowser();
  await stopRoverd();
  if (stateDir) rmSync(stateDir, { recursive: true, force: true });
});

async function waitFor(page, what, fn, arg) {
  const deadline = Date.now() + DEADLINE_MS;
  for (;;) {
    const got = await page.evaluate(fn, arg);
    if (got) return got;
    if (Date.now() > deadline) {
      throw new Error(`${what} did not happen within ${DEADLINE_MS / 1000} s; page log:\n`
        + page.roverLog.join('\n') + '\nroverd log:\n' + tail(roverdLog()));
    }
    await sleep(100);
  }
}

const framesDecoded = async () => {
  const r = window.roverd;
  if (!r || !r.pc) return 0;
  let n = 0;
  (await r.pc.getStats()).forEach((s) => {
    if (s.type === 'inbound-rtp' && s.kind === 'video') n = s.framesDecoded || 0;
  });
  return n;
};

test('over HTTPS the page asks for the token once, then streams and remembers it', { timeout: 60_000 }, async () => {
  assert.ok(existsSync(join(stateDir, 'tls-cert.pem')), 'the self-signed certificate is kept in the state directory');
  const page = await openRoverPage(context, baseUrl);
  try {
    await waitFor(page, 'the token form', () => !document.getElementById('token-form').hidden);
    assert.equal(await page.evaluate(framesDecoded), 0, 'nothing streams without the token');
    await page.fill('#token-input', FULL);
    await page.click('#token-form button[type=submit]');
    await waitFor(page, 'decoded video', framesDecoded);
    assert.equal(await page.evaluate(() => document.getElementById('token-form').hidden), true);
    // A reload keeps the token: no form, straight to video.
    await page.reload({ waitUntil: 'load' });
    await waitFor(page, 'decoded video after a reload', framesDecoded);
    assert.equal(await page.evaluate(() => document.getElementById('token-form').hidden), true);
    assert.deepEqual(cspViolations(page), [], 'the page broke its Content-Security-Policy');
  } finally {
    await page.evaluate(() => localStorage.removeItem('roverd.token'));
    await page.close({ runBeforeUnload: true });
  }
});

// What the Content-Security-Policy refused, from the page's console: must be nothing.
function cspViolations(page) {
  return page.roverLog.filter((l) => /Content Security Policy|Content-Security-Policy/i.test(l));
}

// The peers roverd lists (asked over the browser context, which accepts the certificate).
async function peerIds() {
  const r = await context.request.get(`${baseUrl}/api/status`, { headers: { Authorization: `Bearer ${FULL}` } });
  return (await r.json()).peers.map((p) => p.id);
}

test('with the viewer token the page streams but W moves nothing', { timeout: 60_000 }, async () => {
  const page = await openRoverPage(context, baseUrl);
  try {
    await page.goto(`${baseUrl}/?token=${VIEWER}`, { waitUntil: 'load' });
    await waitFor(page, 'decoded video', framesDecoded);
    // The token is read, then taken out of the address bar.
    assert.equal(await page.evaluate(() => location.search), '', 'the token left in the address bar');
    assert.equal(await page.evaluate(() => localStorage.getItem('roverd.token')), VIEWER);
    await page.keyboard.down('w');
    const refusal = await waitFor(page, 'the refusal shown on the page', () => {
      const note = document.getElementById('ctl-note');
      return note && !note.hidden && /watch but not drive/.test(note.textContent) && note.textContent;
    });
    assert.match(refusal, /watch but not drive/);
    const status = await page.evaluate(async (token) => {
      const r = await fetch('/api/status', { headers: { Authorization: `Bearer ${token}` } });
      return r.json();
    }, VIEWER);
    assert.equal(status.motors.left, 0);
    assert.equal(status.motors.right, 0);
    await page.keyboard.up('w');
    assert.deepEqual(cspViolations(page), [], 'the page broke its Content-Security-Policy');
    // Leaving the page DELETEs its peer through the answer's Location, which carries the
    // peer's secret: a viewer token may close its own peer, so it goes at once (not after
    // ICE gives up on it, seconds later). The page's own teardown, run as on leaving.
    const id = await page.evaluate(() => window.roverd.peerId);
    assert.ok((await peerIds()).includes(id), `peer ${id} is listed`);
    const deleted = page.waitForResponse((r) => r.request().method() === 'DELETE', { timeout: DEADLINE_MS });
    const left = Date.now();
    await page.evaluate(() => window.dispatchEvent(new Event('pagehide')));
    const response = await deleted;
    assert.equal(response.status(), 204, `the teardown DELETE ${response.url().replace(/secret=[^&]*/, 'secret=…')}`);
    assert.match(response.url(), /\/api\/peers\/[^/?]+\?secret=/, 'the DELETE went to the answer\'s Location');
    await untilGone(id, left);
  } finally {
    await page.evaluate(() => localStorage.removeItem('roverd.token'));
    await page.close({ runBeforeUnload: true });
  }
});

// Waits until roverd lists no peer `id`: within 1 s of `since`.
async function untilGone(id, since) {
  while ((await peerIds()).includes(id)) {
    assert.ok(Date.now() - since < 1000, `peer ${id} still listed 1 s after its page left:\n${tail(roverdLog())}`);
    await sleep(20);
  }
  return Date.now() - since;
}

test('a page that Chromium closes gives its place back within 1 s, without its DELETE', { timeout: 60_000 }, async () => {
  const page = await openRoverPage(context, baseUrl);
  let closed = false;
  try {
    await page.goto(`${baseUrl}/?token=${VIEWER}`, { waitUntil: 'load' });
    await waitFor(page, 'decoded video', framesDecoded);
    // The teardown DELETE never leaves the page (a route cannot stop a keepalive fetch
    // sent while the page unloads): only what the closing connection says can free the
    // place.
    await page.evaluate(() => {
      const fetchForReal = window.fetch;
      window.fetch = (url, options) => (options && options.method === 'DELETE'
        ? Promise.resolve(new Response(null, { status: 204 }))
        : fetchForReal(url, options));
    });
    const id = await page.evaluate(() => window.roverd.peerId);
    assert.ok((await peerIds()).includes(id), `peer ${id} is listed`);
    await page.evaluate(() => localStorage.removeItem('roverd.token'));
    const left = Date.now();
    await page.close({ runBeforeUnload: true });
    closed = true;
    const took = await untilGone(id, left);
    console.log(`# closed page's peer gone after ${(took / 1000).toFixed(3)} s`);
    assert.doesNotMatch(roverdLog(), new RegExp(`peer ${id} closed on request`), 'the DELETE was not stopped');
  } finally {
    if (!closed) {
      await page.evaluate(() => localStorage.removeItem('roverd.token'));
      await page.close({ runBeforeUnload: true });
    }
  }
});

test('with the viewer token the Stop button and Space still send a stop, unrefused', { timeout: 60_000 }, async () => {
  const page = await openRoverPage(context, baseUrl);
  try {
    await page.goto(`${baseUrl}/?token=${VIEWER}`, { waitUntil: 'load' });
    await waitFor(page, 'decoded video', framesDecoded);
    await waitFor(page, 'the data channel', () => window.roverd.dc && window.roverd.dc.readyState === 'open');
    await page.evaluate(() => {
      window.__sent = [];
      window.__errors = [];
      window.roverd.onSend((m) => window.__sent.push(m));
      window.roverd.dc.addEventListener('message', (ev) => {
        const m = JSON.parse(ev.data);
        if (m.type === 'error') window.__errors.push(m);
      });
    });
    assert.ok(await page.isVisible('#stop'), 'the Stop button is visible to a viewer');
    await page.click('#stop', { timeout: 2000 });
    await page.keyboard.press('Space');
    await sleep(500); // any refusal would be back by now
    const { sent, errors, note } = await page.evaluate(() => ({
      sent: window.__sent,
      errors: window.__errors,
      note: document.getElementById('ctl-note').hidden ? '' : document.getElementById('ctl-note').textContent,
    }));
    assert.equal(sent.filter((m) => m.type === 'stop').length, 2, `two stops sent: ${JSON.stringify(sent)}`);
    // A viewer that was not driving has nothing to let go of: no drive at all.
    assert.deepEqual(sent.filter((m) => m.type === 'drive'), [], 'no drive from a viewer that did not drive');
    assert.deepEqual(errors, [], 'the stops were not refused');
    assert.equal(note, '', 'no refusal shown');
  } finally {
    await page.evaluate(() => localStorage.removeItem('roverd.token'));
    await page.close({ runBeforeUnload: true });
  }
});
