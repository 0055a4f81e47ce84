// The page feeds a short deadman: with `[control] deadman_ms = 100` roverd's
// hello says so, and a held key is repeated every min(50, 100 / 4) = 25 ms.
// What the page sends is read below the page's own code, by wrapping
// RTCDataChannel.prototype.send in an init script.
//
// Run from the repo root:  npm ci --prefix tests/browser && node --test tests/browser/

import { test, before, after } from 'node:test';
import assert from 'node:assert/strict';
import { mkdtempSync, writeFileSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import {
  START_TIMEOUT_MS, sleep, tail, roverdLog, startRoverd, stopRoverd, launchBrowser, closeBrowser, openRoverPage,
} from './harness.mjs';

const DEADLINE_MS = 15_000;
const HOLD_MS = 1000;

let baseUrl = null;
let context = null;
let dir = null;

before(async () => {
  dir = mkdtempSync(join(tmpdir(), 'roverd-deadman-'));
  const config = join(dir, 'roverd.toml');
  writeFileSync(config, '[control]\ndeadman_ms = 100\n');
  const addr = await startRoverd({ args: ['--config', config] });
  baseUrl = `http://${addr}`;
  context = await launchBrowser();
  await context.addInitScript(() => {
    window.__wire = [];
    const send = RTCDataChannel.prototype.send;
    RTCDataChannel.prototype.send = function wrappedSend(data) {
      if (typeof data === 'string') window.__wire.push({ t: performance.now(), data });
      return send.call(this, data);
    };
  });
}, { timeout: START_TIMEOUT_MS + 30_000 });

after(async () => {
  await closeBrowser();
  await stopRoverd();
  if (dir) rmSync(dir, { recursive: true, force: true });
});

const median = (xs) => {
  const s = [...xs].sort((a, b) => a - b);
  return s.length ? s[Math.floor((s.length - 1) / 2)] : NaN;
};

test('with deadman_ms = 100 a held W is repeated every 25 ms', { timeout: 60_000 }, async () => {
  const page = await openRoverPage(context, baseUrl);
  try {
    await page.waitForFunction(() => {
      const r = window.roverd;
      return r && r.dc && r.dc.readyState === 'open' && r.version && r.robotState;
    }, null, { timeout: DEADLINE_MS, polling: 50 });
    const mark = await page.evaluate(() => window.__wire.length);
    await page.keyboard.down('w');
    await page.waitForFunction((m) => window.__wire.slice(m).some((w) => /"drive"/.test(w.data)),
      mark, { timeout: DEADLINE_MS, polling: 20 });
    await sleep(HOLD_MS);
    const wire = await page.evaluate((m) => window.__wire.slice(m), mark);
    await page.keyboard.up('w');
    const drives = wire.map((w) => ({ t: w.t, m: JSON.parse(w.data) }))
      .filter((w) => w.m.type === 'drive' && w.m.linear > 0);
    const gaps = drives.slice(1).map((d, i) => d.t - drives[i].t);
    const gap = median(gaps);
    assert.ok(drives.length >= 2, `only ${drives.length} drives in ${HOLD_MS} ms of holding W\n`
      + `page console:\n${page.roverLog.slice(-10).join('\n')}\nroverd:\n${tail(roverdLog(), 10)}`);
    assert.ok(gap >= 18 && gap <= 32, `drives repeat every ${gap.toFixed(1)} ms (median), expected 25 ms`);
  } finally {
    await page.close({ runBeforeUnload: true }).catch(() => {});
  }
});
