// End-to-end test of roverd's page and WebRTC stream in headless Chromium.
//
// Starts `roverd --simulate --listen 127.0.0.1:0` (test pattern + test tone +
// simulated motors), opens its page in Debian's Chromium through
// playwright-core, and checks from the browser's own getStats() that the
// robot's H.264 video (640x480) and Opus audio are decoded.
//
// Run from the repo root:  npm ci --prefix tests/browser && node --test tests/browser/
// Env: ROVERD_BIN (default target/debug/roverd), CHROMIUM (default /usr/bin/chromium);
// see harness.mjs, which starts roverd and Chromium for this file and drive.test.mjs.

import { test, before, after } from 'node:test';
import assert from 'node:assert/strict';
import { mkdirSync } from 'node:fs';
import { dirname, join } from 'node:path';
import {
  REPO, START_TIMEOUT_MS, sleep, tail, roverdLog, startRoverd, stopRoverd,
  launchBrowser, closeBrowser, openRoverPage as openPage,
} from './harness.mjs';

const SCREENSHOT = join(REPO, 'target', 'browser-stream.png');

const MEDIA_DEADLINE_MS = 10_000; // page loaded -> decoded video + audio
const POLL_MS = 250;
const MIN_MEAN_LUMA = 40;

let baseUrl = null;  // http://127.0.0.1:PORT
let context = null;  // playwright BrowserContext (persistent)

// Opens a page of roverd's UI, collecting its console output for diagnostics.
function openRoverPage() {
  return openPage(context, baseUrl);
}

// What the browser itself says about the incoming media.
function readStats(page) {
  return page.evaluate(async () => {
    const r = window.roverd;
    const out = { state: r ? r.state : null, reason: r ? r.reason : null, video: null, audio: null };
    if (!r || !r.pc) return out;
    const stats = await r.pc.getStats();
    stats.forEach((s) => {
      if (s.type !== 'inbound-rtp') return;
      if (s.kind === 'video') {
        out.video = {
          framesDecoded: s.framesDecoded,
          frameWidth: s.frameWidth,
          frameHeight: s.frameHeight,
          framesPerSecond: s.framesPerSecond,
          keyFramesDecoded: s.keyFramesDecoded,
          packetsLost: s.packetsLost,
        };
      } else if (s.kind === 'audio') {
        out.audio = {
          totalSamplesReceived: s.totalSamplesReceived,
          packetsReceived: s.packetsReceived,
        };
      }
    });
    return out;
  });
}

function mediaFlowing(st) {
  return !!(st && st.video && st.audio
    && st.video.framesDecoded > 0
    && st.video.frameWidth === 640 && st.video.frameHeight === 480
    && st.audio.totalSamplesReceived > 0);
}

// Polls getStats() until 640x480 video frames and audio samples are decoded.
async function waitForMedia(page, label) {
  const deadline = Date.now() + MEDIA_DEADLINE_MS;
  let last = null;
  for (;;) {
    last = await readStats(page);
    if (mediaFlowing(last)) return last;
    if (Date.now() >= deadline) break;
    await sleep(POLL_MS);
  }
  assert.fail(`${label}: no decoded 640x480 video + audio within ${MEDIA_DEADLINE_MS / 1000} s.\n`
    + `last stats: ${JSON.stringify(last)}\n`
    + `page console:\n${page.roverLog.slice(-20).join('\n')}\n`
    + `roverd output:\n${tail(roverdLog(), 20)}`);
}

// Mean luma (0..255) of the frame the <video> shows now, or null.
function videoLuma(page) {
  return page.evaluate(() => {
    const v = document.getElementById('video');
    if (!v || v.readyState < 2 || !v.videoWidth) return null;
    const c = document.createElement('canvas');
    c.width = v.videoWidth;
    c.height = v.videoHeight;
    const g = c.getContext('2d', { willReadFrequently: true });
    g.drawImage(v, 0, 0, c.width, c.height);
    const d = g.getImageData(0, 0, c.width, c.height).data;
    let sum = 0;
    for (let i = 0; i < d.length; i += 4) sum += 0.299 * d[i] + 0.587 * d[i + 1] + 0.114 * d[i + 2];
    return { luma: sum / (d.length / 4), width: v.videoWidth, height: v.videoHeight };
  });
}

before(async () => {
  const addr = await startRoverd();
  baseUrl = `http://${addr}`;
  context = await launchBrowser();
}, { timeout: START_TIMEOUT_MS + 30_000 });

after(async () => {
  try {
    await closeBrowser();
  } finally {
    context = null;
    await stopRoverd();
  }
});

test('one browser receives 640x480 H.264 video and Opus audio', { timeout: 60_000 }, async () => {
  const page = await openRoverPage();
  try {
    const st = await waitForMedia(page, 'browser 1');
    assert.ok(st.video.framesDecoded > 0);
    assert.equal(st.video.frameWidth, 640);
    assert.equal(st.video.frameHeight, 480);
    assert.ok(st.audio.totalSamplesReceived > 0);

    mkdirSync(dirname(SCREENSHOT), { recursive: true });
    await page.screenshot({ path: SCREENSHOT });

    // The picture is not black (a dead encoder or a decode failure would be).
    let shot = null;
    const lumaDeadline = Date.now() + 3000;
    for (;;) {
      shot = await videoLuma(page);
      if ((shot && shot.luma > MIN_MEAN_LUMA) || Date.now() >= lumaDeadline) break;
      await sleep(POLL_MS);
    }
    assert.ok(shot, 'the <video> element has no frame to draw');
    assert.equal(shot.width, 640);
    assert.equal(shot.height, 480);
    assert.ok(shot.luma > MIN_MEAN_LUMA,
      `video looks black: mean luma ${shot.luma.toFixed(1)} <= ${MIN_MEAN_LUMA} (screenshot: ${SCREENSHOT})`);

    // The page says it is connected.
    const shown = await page.evaluate(() => ({
      state: window.roverd.state,
      text: document.getElementById('conn-state').textContent.trim(),
    }));
    assert.equal(shown.state, 'connected');
    assert.equal(shown.text, 'Connected');
  } finally {
    await page.close({ runBeforeUnload: true });
  }
});

test('the data channel says hello and answers pings', { timeout: 30_000 }, async () => {
  const page = await openRoverPage();
  try {
    // The page pings every second and shows the round trip of the pong;
    // the robot's hello carries its version.
    await page.waitForFunction(
      () => window.roverd && typeof window.roverd.rttMs === 'number' && !!window.roverd.version,
      null, { timeout: 10_000, polling: POLL_MS },
    ).catch(async () => {
      const s = await page.evaluate(() => ({
        state: window.roverd && window.roverd.state,
        dc: window.roverd && window.roverd.dc && window.roverd.dc.readyState,
        rttMs: window.roverd && window.roverd.rttMs,
        version: window.roverd && window.roverd.version,
      }));
      assert.fail(`no hello/pong on the data channel within 10 s: ${JSON.stringify(s)}\n`
        + `page console:\n${page.roverLog.slice(-20).join('\n')}`);
    });
    const r = await page.evaluate(() => ({
      rtt: window.roverd.rttMs,
      version: window.roverd.version,
      shownVersion: document.getElementById('version').textContent,
      shownRtt: document.getElementById('st-rtt').textContent,
    }));
    assert.ok(r.rtt >= 0 && r.rtt < 1000, `ping round trip ${r.rtt} ms`);
    assert.match(r.version, /^\d+\.\d+\.\d+/);
    assert.equal(r.shownVersion, 'v' + r.version);
    assert.match(r.shownRtt, /ms$/);
  } finally {
    await page.close({ runBeforeUnload: true });
  }
});

test('three browsers receive the stream at once', { timeout: 60_000 }, async () => {
  const pages = [];
  try {
    for (let i = 0; i < 3; i++) pages.push(await openRoverPage());
    const stats = await Promise.all(pages.map((p, i) => waitForMedia(p, `browser ${i + 1} of 3`)));
    for (const st of stats) {
      assert.ok(st.video.framesDecoded > 0);
      assert.equal(st.video.frameWidth, 640);
      assert.equal(st.video.frameHeight, 480);
      assert.ok(st.audio.totalSamplesReceived > 0);
    }
    // The robot counts them too.
    const resp = await fetch(baseUrl + '/api/status');
    assert.equal(resp.status, 200);
    const status = await resp.json();
    assert.ok(Array.isArray(status.peers) && status.peers.length >= 3,
      `/api/status peers: ${JSON.stringify(status.peers)}`);
  } finally {
    for (const p of pages) await p.close({ runBeforeUnload: true }).catch(() => {});
  }
});
