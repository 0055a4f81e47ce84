// Not driving blind: roverd runs with ROVERD_TEST_STALL_VIDEO_AFTER_FRAMES, so
// its video stops after a few seconds while the daemon and the data channel
// stay up. With W held, the page must stop driving within 1.5 s of the last
// picture, send one zero drive, and say "video frozen — driving paused".
//
// Run from the repo root:  npm ci --prefix tests/browser && node --test tests/browser/

import { test, before, after } from 'node:test';
import assert from 'node:assert/strict';
import {
  START_TIMEOUT_MS, sleep, tail, roverdLog, startRoverd, stopRoverd, launchBrowser, closeBrowser, openRoverPage,
} from './harness.mjs';

const STALL_AFTER_FRAMES = 300; // about 10 s of the 30 fps test pattern
const READY_DEADLINE_MS = 15_000;
const FREEZE_DEADLINE_MS = 25_000;
const PAUSE_WITHIN_MS = 1500;

let baseUrl = null;
let context = null;

before(async () => {
  const addr = await startRoverd({ env: { ROVERD_TEST_STALL_VIDEO_AFTER_FRAMES: String(STALL_AFTER_FRAMES) } });
  baseUrl = `http://${addr}`;
  context = await launchBrowser();
}, { timeout: START_TIMEOUT_MS + 30_000 });

after(async () => {
  await closeBrowser();
  await stopRoverd();
});

async function motors() {
  const resp = await fetch(baseUrl + '/api/status', { cache: 'no-store' });
  return (await resp.json()).motors;
}

async function diagnostics(page) {
  const p = await page.evaluate(() => ({
    state: window.roverd.state,
    paused: window.roverd.paused,
    lastFrame: window.__lastFrame,
    now: performance.now(),
    lastSent: window.__sent.slice(-4),
  })).catch((e) => String(e));
  return `page: ${JSON.stringify(p)}\npage console:\n${page.roverLog.slice(-10).join('\n')}\n`
    + `roverd:\n${tail(roverdLog(), 10)}`;
}

test('video frozen while W is held: driving pauses within 1.5 s and the page says so', { timeout: 60_000 }, async () => {
  const page = await openRoverPage(context, baseUrl);
  try {
    // The test's own view of the pictures: when framesDecoded last grew.
    await page.evaluate(() => {
      window.__sent = [];
      window.__lastFrame = { n: 0, t: -1 };
      window.roverd.onSend((m, t) => window.__sent.push({ m, t }));
      setInterval(async () => {
        const pc = window.roverd.pc;
        if (!pc) return;
        (await pc.getStats()).forEach((s) => {
          if (s.type === 'inbound-rtp' && s.kind === 'video' && s.framesDecoded > window.__lastFrame.n) {
            window.__lastFrame = { n: s.framesDecoded, t: performance.now() };
          }
        });
      }, 20);
    });
    await page.waitForFunction(() => window.roverd.robotState && window.__lastFrame.n > 0,
      null, { timeout: READY_DEADLINE_MS, polling: 50 })
      .catch(async () => assert.fail(`no video or no state within ${READY_DEADLINE_MS} ms\n${await diagnostics(page)}`));

    await page.keyboard.down('w');
    await page.waitForFunction(() => window.__sent.some((s) => s.m.type === 'drive' && s.m.linear > 0),
      null, { timeout: 5000, polling: 20 })
      .catch(async () => assert.fail(`W sends no drive\n${await diagnostics(page)}`));
    const fresh = await page.evaluate(() => performance.now() - window.__lastFrame.t);
    assert.ok(fresh < 500, `the video froze before driving began (raise STALL_AFTER_FRAMES)\n${await diagnostics(page)}`);

    await page.waitForFunction(() => {
      const p = document.getElementById('paused');
      return p && !p.hidden && /video frozen — driving paused/.test(p.textContent);
    }, null, { timeout: FREEZE_DEADLINE_MS, polling: 50 })
      .catch(async () => assert.fail(`the page never said "video frozen — driving paused"\n${await diagnostics(page)}`));
    await sleep(500); // any drive after the pause would show up here
    const { sent, lastFrame } = await page.evaluate(() => ({ sent: window.__sent, lastFrame: window.__lastFrame }));
    const drives = sent.filter((s) => s.m.type === 'drive');
    const lastMoving = drives.filter((s) => s.m.linear !== 0 || s.m.angular !== 0).pop();
    const after = drives.filter((s) => s.t > lastMoving.t);
    assert.ok(lastMoving.t - lastFrame.t <= PAUSE_WITHIN_MS,
      `the last drive went ${(lastMoving.t - lastFrame.t).toFixed(0)} ms after the last picture`);
    assert.deepEqual(after.map((s) => [s.m.linear, s.m.angular]), [[0, 0]], 'one zero drive after the pause');
    const m = await motors();
    assert.deepEqual([m.left, m.right], [0, 0], 'the motors are at rest');
  } finally {
    await page.keyboard.up('w').catch(() => {});
    await page.close({ runBeforeUnload: true }).catch(() => {});
  }
});
