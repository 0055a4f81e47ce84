// End-to-end test of driving from roverd's page in headless Chromium.
//
// Starts `roverd --simulate --listen 127.0.0.1:0` (simulated motors, shown in
// /api/status), opens its page, and drives with the keyboard and the E-STOP
// button as a user would, watching the motors through /api/status. Also
// measures, inside the page, the time from a key press to the first `state`
// message with moving motors (the "key-to-motor" bench figure).
//
// Run from the repo root:  npm ci --prefix tests/browser && node --test tests/browser/
// Env: see harness.mjs (ROVERD_BIN, CHROMIUM, ROVERD_WEB_DIR); DRIVE_BENCH_PRESSES
// (default 30).

import { test, before, after } from 'node:test';
import assert from 'node:assert/strict';
import {
  START_TIMEOUT_MS, sleep, tail, roverdLog, roverdProcess, startRoverd, stopRoverd,
  launchBrowser, closeBrowser, openRoverPage,
} from './harness.mjs';

const STATUS_POLL_MS = 50;
const MOVE_DEADLINE_MS = 5000;   // key down -> /api/status motors > 0
const STOP_DEADLINE_MS = 1000;   // key up / e-stop / blur -> motors 0
const READY_DEADLINE_MS = 15_000; // page loaded -> data channel open + hello
const STILL_MS = 300;            // "nothing moves" is watched this long
const HOLD_DRIVES = 14;          // W is held until this many drives went out (~650 ms)
const BENCH_PRESSES = Number(process.env.DRIVE_BENCH_PRESSES || 30);
const BENCH_DWELL_MIN_MS = 60;   // pause before each bench press: 60..160 ms
const BENCH_DWELL_SPREAD_MS = 100;

let baseUrl = null;
let context = null;

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

async function getStatus() {
  const resp = await fetch(baseUrl + '/api/status', { cache: 'no-store' });
  assert.equal(resp.status, 200, `/api/status answered ${resp.status}`);
  return resp.json();
}

function motorsOf(st) {
  return st && st.motors ? st.motors : {};
}

function moving(st) {
  const m = motorsOf(st);
  return m.left > 0 && m.right > 0;
}

function stopped(st) {
  const m = motorsOf(st);
  return m.left === 0 && m.right === 0;
}

async function diagnostics(page) {
  let pageState = null;
  try {
    pageState = await page.evaluate(() => ({
      state: window.roverd.state,
      dc: window.roverd.dc && window.roverd.dc.readyState,
      robotState: window.roverd.robotState,
      driving: window.roverd.driving,
      driver: document.getElementById('driver-text').textContent,
      lastSent: (window.__sent || []).slice(-5).map((s) => s.m),
    }));
  } catch (e) {
    pageState = String(e);
  }
  return `page: ${JSON.stringify(pageState)}\n`
    + `page console:\n${page.roverLog.slice(-15).join('\n')}\n`
    + `roverd output:\n${tail(roverdLog(), 15)}`;
}

// Polls /api/status every STATUS_POLL_MS until pred(status) or the deadline.
async function waitForStatus(page, pred, deadlineMs, what) {
  const deadline = Date.now() + deadlineMs;
  let last = null;
  for (;;) {
    last = await getStatus();
    if (pred(last)) return last;
    if (Date.now() >= deadline) break;
    await sleep(STATUS_POLL_MS);
  }
  assert.fail(`${what}: not within ${deadlineMs} ms; last /api/status motors: `
    + `${JSON.stringify(last && last.motors)}\n${await diagnostics(page)}`);
}

// Watches /api/status for `ms` and fails if the motors move.
async function assertStill(page, ms, what) {
  const until = Date.now() + ms;
  while (Date.now() < until) {
    const st = await getStatus();
    if (!stopped(st)) {
      assert.fail(`${what}: motors moved: ${JSON.stringify(st.motors)}\n${await diagnostics(page)}`);
    }
    await sleep(STATUS_POLL_MS);
  }
}

// Opens the page and waits until it can drive (data channel open, hello
// received); records every message the page sends in window.__sent.
async function openDrivingPage() {
  const page = await openRoverPage(context, baseUrl);
  if (await page.locator('#estop').count() === 0) {
    await page.close();
    assert.fail('the page roverd serves has no driving controls (#estop): roverd compiles web/ '
      + 'into the binary, so rebuild it (cargo build), or set ROVERD_WEB_DIR=web');
  }
  await page.waitForFunction(
    () => window.roverd && window.roverd.dc && window.roverd.dc.readyState === 'open' && !!window.roverd.version,
    null, { timeout: READY_DEADLINE_MS, polling: 50 },
  ).catch(async () => assert.fail(`the page did not open its data channel within ${READY_DEADLINE_MS} ms\n`
    + `${await diagnostics(page)}`));
  await page.evaluate(() => {
    window.__sent = [];
    window.roverd.onSend((m, t) => window.__sent.push({ m, t }));
  });
  return page;
}

async function closePage(page) {
  await page.keyboard.up('w').catch(() => {});
  await page.close({ runBeforeUnload: true }).catch(() => {});
}

const median = (xs) => {
  const s = [...xs].sort((a, b) => a - b);
  return s.length ? s[Math.floor((s.length - 1) / 2)] : NaN;
};

// Nearest-rank percentile.
function percentile(xs, p) {
  const s = [...xs].sort((a, b) => a - b);
  if (!s.length) return NaN;
  return s[Math.min(s.length - 1, Math.max(0, Math.ceil((p / 100) * s.length) - 1))];
}

test('holding W drives the sim motors; releasing it stops them', { timeout: 60_000 }, async () => {
  const page = await openDrivingPage();
  try {
    await waitForStatus(page, stopped, STOP_DEADLINE_MS, 'motors at rest before the test');

    await page.keyboard.down('w');
    const st = await waitForStatus(page, moving, MOVE_DEADLINE_MS, 'motors > 0 while W is held');
    assert.equal(motorsOf(st).estop, false);
    // The page learns from `state` that it holds the lease.
    await page.waitForFunction(() => {
      const s = window.roverd.robotState;
      return s && s.driver === true && (s.left > 0 || s.right > 0)
        && document.getElementById('driver-text').textContent === 'You are driving';
    }, null, { timeout: 2000, polling: 50 })
      .catch(async () => assert.fail(`the page does not show itself as the driver\n${await diagnostics(page)}`));

    // Held past the robot's deadman (500 ms), the ~20 Hz repeats keep it going.
    await page.waitForFunction((n) => window.__sent.filter((s) => s.m.type === 'drive').length >= n,
      HOLD_DRIVES, { timeout: 3000, polling: 50 })
      .catch(async () => assert.fail(`fewer than ${HOLD_DRIVES} drive messages within 3 s of holding W\n`
        + `${await diagnostics(page)}`));
    const still = await getStatus();
    assert.ok(moving(still), `motors stopped although W is held: ${JSON.stringify(still.motors)}`);

    await page.keyboard.up('w');
    await waitForStatus(page, stopped, STOP_DEADLINE_MS, 'motors back to 0 after releasing W');

    // What the page sent: every message with an increasing integer seq;
    // W = full forward, repeated about every 50 ms; one zero drive at the end.
    await sleep(STILL_MS); // any stray repeat would show up here
    const sent = await page.evaluate(() => window.__sent);
    const seqs = sent.map((s) => s.m.seq);
    assert.ok(seqs.every(Number.isInteger), `seq missing or not an integer: ${JSON.stringify(seqs)}`);
    for (let i = 1; i < seqs.length; i++) assert.ok(seqs[i] > seqs[i - 1], `seq not increasing: ${JSON.stringify(seqs)}`);
    const drives = sent.filter((s) => s.m.type === 'drive');
    assert.ok(drives.length >= HOLD_DRIVES + 1, `only ${drives.length} drive messages sent`);
    const held = drives.slice(0, -1);
    const last = drives[drives.length - 1];
    for (const d of held) assert.deepEqual([d.m.linear, d.m.angular], [1, 0], `W sends ${JSON.stringify(d.m)}`);
    assert.deepEqual([last.m.linear, last.m.angular], [0, 0], 'the last drive is the zero drive');
    const gaps = held.slice(1).map((d, i) => d.t - held[i].t);
    const gap = median(gaps);
    assert.ok(gaps.length === 0 || (gap >= 35 && gap <= 100),
      `drive repeats every ${gap.toFixed(1)} ms (median), expected about 50 ms`);
  } finally {
    await closePage(page);
  }
});

test('the E-STOP button stops the motors and latches until Reset', { timeout: 60_000 }, async () => {
  const page = await openDrivingPage();
  try {
    await page.keyboard.down('w');
    await waitForStatus(page, moving, MOVE_DEADLINE_MS, 'motors > 0 while W is held');

    await page.click('#estop');
    await waitForStatus(page, (s) => stopped(s) && motorsOf(s).estop === true, STOP_DEADLINE_MS,
      'motors 0 and estop true after clicking E-STOP');
    await page.waitForSelector('#reset', { state: 'visible', timeout: 2000 });
    assert.equal(await page.textContent('#driver-text'), 'E-STOP latched');

    await page.click('#reset');
    await waitForStatus(page, (s) => motorsOf(s).estop === false, STOP_DEADLINE_MS, 'estop false after Reset');
    await page.waitForSelector('#reset', { state: 'hidden', timeout: 2000 });
    // W is still held down, but it was held through the e-stop: the page
    // waits for a fresh press instead of driving off after the reset.
    await assertStill(page, STILL_MS, 'after Reset with W still held');
    await page.keyboard.up('w');

    // A fresh press drives again.
    await page.keyboard.down('w');
    await waitForStatus(page, moving, MOVE_DEADLINE_MS, 'motors > 0 on a new press after Reset');
    await page.keyboard.up('w');
    await waitForStatus(page, stopped, STOP_DEADLINE_MS, 'motors back to 0 after releasing W');
  } finally {
    await closePage(page);
  }
});

test('losing focus or visibility stops the motors although W is held', { timeout: 60_000 }, async () => {
  const page = await openDrivingPage();
  try {
    for (const how of ['blur', 'hidden']) {
      await page.keyboard.down('w');
      await waitForStatus(page, moving, MOVE_DEADLINE_MS, `motors > 0 while W is held (before ${how})`);
      // The mark is read in the same turn of the page's event loop as the event, so a
      // repeat sent just before the blur is not counted as sent after it.
      const mark = await page.evaluate((kind) => {
        const before = window.__sent.length;
        if (kind === 'blur') {
          window.dispatchEvent(new Event('blur'));
        } else {
          Object.defineProperty(document, 'hidden', { configurable: true, get: () => true });
          Object.defineProperty(document, 'visibilityState', { configurable: true, get: () => 'hidden' });
          document.dispatchEvent(new Event('visibilitychange'));
        }
        return before;
      }, how);
      await waitForStatus(page, stopped, STOP_DEADLINE_MS, `motors 0 after ${how} with W held`);
      await assertStill(page, STILL_MS, `after ${how} with W held`);
      // What the page sent, not what the deadman did: the deadman alone would stop the
      // motors within the bounds above, so the page's own part is read off the wire.
      const sent = await page.evaluate((m) => window.__sent.slice(m), mark);
      const drives = sent.filter(isDrive);
      assert.ok(drives.length >= 1 && !nonZero(drives[0]),
        `after ${how} the page's first drive must be a zero drive; it sent ${JSON.stringify(sent.map((s) => s.m))}`);
      assert.ok(!drives.some(nonZero),
        `after ${how} with W held the page went on driving: ${JSON.stringify(drives.map((s) => s.m))}`);
      await page.evaluate(() => {
        delete document.hidden;
        delete document.visibilityState;
      });
      await page.keyboard.up('w');
    }
  } finally {
    await closePage(page);
  }
});

test('key-to-motor latency (bench figure)', { timeout: 120_000 }, async (t) => {
  const page = await openDrivingPage();
  try {
    await page.waitForFunction(() => !!window.roverd.robotState, null, { timeout: 5000, polling: 50 })
      .catch(async () => assert.fail(`no state message from the robot\n${await diagnostics(page)}`));
    // Timestamps taken inside the page: the key event's own timeStamp (when
    // the browser created it, before the page's handlers ran) to the arrival
    // of the first `state` message that shows the motors moving (key down)
    // or both at 0 (key up).
    await page.evaluate(() => {
      const b = { phase: 'idle', t0: 0, down: [], up: [] };
      window.__bench = b;
      window.addEventListener('keydown', (e) => {
        if (e.code === 'KeyW' && !e.repeat) { b.phase = 'down'; b.t0 = e.timeStamp; }
      }, true);
      window.addEventListener('keyup', (e) => {
        if (e.code === 'KeyW') { b.phase = 'up'; b.t0 = e.timeStamp; }
      }, true);
      window.roverd.onState((s, t) => {
        if (b.phase === 'down' && (s.left !== 0 || s.right !== 0)) {
          b.down.push(t - b.t0);
          b.phase = 'moving';
        } else if (b.phase === 'up' && s.left === 0 && s.right === 0) {
          b.up.push(t - b.t0);
          b.phase = 'idle';
        }
      });
    });
    await waitForStatus(page, stopped, STOP_DEADLINE_MS, 'motors at rest before the bench');
    for (let i = 0; i < BENCH_PRESSES; i++) {
      // roverd sends at most one state per 50 ms: a press right after the
      // previous state would always wait out that window. A random pause
      // puts presses at random points of the robot's cycle, as a user's are.
      await sleep(BENCH_DWELL_MIN_MS + Math.random() * BENCH_DWELL_SPREAD_MS);
      await page.keyboard.down('w');
      await page.waitForFunction(() => window.__bench.phase === 'moving', null, { timeout: MOVE_DEADLINE_MS, polling: 5 })
        .catch(async () => assert.fail(`press ${i + 1}: no state with moving motors\n${await diagnostics(page)}`));
      // Released at once: the motors have barely started, so the release
      // figure is mostly the command path, not the ramp back down.
      await page.keyboard.up('w');
      await page.waitForFunction(() => window.__bench.phase === 'idle', null, { timeout: STOP_DEADLINE_MS, polling: 5 })
        .catch(async () => assert.fail(`release ${i + 1}: no state with stopped motors\n${await diagnostics(page)}`));
    }
    const { down, up } = await page.evaluate(() => window.__bench);
    assert.equal(down.length, BENCH_PRESSES);
    assert.equal(up.length, BENCH_PRESSES);
    const fmt = (x) => x.toFixed(1);
    const lines = [
      `key-to-motor p50=${fmt(percentile(down, 50))} p95=${fmt(percentile(down, 95))} ms (n=${down.length})`,
      `key-release-to-stop p50=${fmt(percentile(up, 50))} p95=${fmt(percentile(up, 95))} ms (n=${up.length})`,
    ];
    for (const line of lines) t.diagnostic(line);
    // Loose sanity bounds only: this is a measurement, not a benchmark gate.
    assert.ok(percentile(down, 95) < 1000, lines[0]);
    assert.ok(percentile(up, 95) < 1000, lines[1]);
  } finally {
    await closePage(page);
  }
});

// The messages the page sent from index `from` of window.__sent on.
async function sentSince(page, from) {
  return page.evaluate((i) => window.__sent.slice(i), from);
}

function isDrive(s) { return s.m.type === 'drive'; }
function nonZero(s) { return isDrive(s) && (s.m.linear !== 0 || s.m.angular !== 0); }

for (const how of ['button', 'Space']) {
  test(`Stop (${how}) sends a stop, lets go of the held W, and a new press drives again`, { timeout: 60_000 }, async () => {
    const page = await openDrivingPage();
    try {
      await page.keyboard.down('w');
      await waitForStatus(page, moving, MOVE_DEADLINE_MS, 'motors > 0 while W is held');
      const mark = await page.evaluate(() => window.__sent.length);
      if (how === 'button') {
        await page.click('#stop', { timeout: 2000 })
          .catch(async (e) => assert.fail(`no usable Stop button: ${e.message}\n${await diagnostics(page)}`));
      } else {
        await page.keyboard.press('Space');
      }
      await waitForStatus(page, stopped, STOP_DEADLINE_MS, `motors 0 after ${how} with W held`);
      // W is still held: nothing drives until a new press.
      await assertStill(page, STILL_MS, `after ${how} with W still held`);
      const after = await sentSince(page, mark);
      const stopAt = after.findIndex((s) => s.m.type === 'stop');
      assert.ok(stopAt >= 0, `${how} sent no {"type":"stop"}: ${JSON.stringify(after.map((s) => s.m))}`);
      const rest = after.slice(stopAt + 1);
      assert.deepEqual(rest.filter(nonZero), [], `a non-zero drive after the stop: ${JSON.stringify(rest.map((s) => s.m))}`);
      const letGo = rest.filter(isDrive);
      assert.equal(letGo.length, 1, `one zero drive (the let go) after the stop: ${JSON.stringify(rest.map((s) => s.m))}`);
      await page.keyboard.up('w');

      await page.keyboard.down('w');
      await waitForStatus(page, moving, MOVE_DEADLINE_MS, `motors > 0 on a new press after ${how}`);
      await page.keyboard.up('w');
      await waitForStatus(page, stopped, STOP_DEADLINE_MS, 'motors back to 0 after releasing W');
    } finally {
      await closePage(page);
    }
  });
}

test('a drive refused until we let go releases W, sends one zero drive and says so', { timeout: 60_000 }, async () => {
  const page = await openDrivingPage();
  try {
    await page.keyboard.down('w');
    await waitForStatus(page, moving, MOVE_DEADLINE_MS, 'motors > 0 while W is held');
    // What roverd answers a drive after another viewer's stop (the page keys
    // on the words "let go").
    const mark = await page.evaluate(() => {
      const drives = window.__sent.filter((s) => s.m.type === 'drive');
      const seq = drives[drives.length - 1].m.seq;
      const data = JSON.stringify({
        type: 'error', seq,
        message: 'drive refused after a stop: send a zero drive (let go) before driving again',
      });
      const mark = window.__sent.length;
      window.roverd.dc.onmessage(new MessageEvent('message', { data }));
      return mark;
    });
    await waitForStatus(page, stopped, STOP_DEADLINE_MS, 'motors 0 after the let-go refusal');
    await assertStill(page, STILL_MS, 'after the let-go refusal with W still held');
    const after = (await sentSince(page, mark)).filter(isDrive);
    assert.deepEqual(after.map((s) => [s.m.linear, s.m.angular]), [[0, 0]],
      `expected exactly one zero drive after the refusal, sent: ${JSON.stringify(after.map((s) => s.m))}`);
    const note = await page.evaluate(() => {
      const n = document.getElementById('ctl-note');
      return n.hidden ? '' : n.textContent;
    });
    assert.match(note, /let go/, 'the refusal shows in the note area');
    await page.keyboard.up('w');
    await page.keyboard.down('w');
    await waitForStatus(page, moving, MOVE_DEADLINE_MS, 'motors > 0 on a new press');
    await page.keyboard.up('w');
    await waitForStatus(page, stopped, STOP_DEADLINE_MS, 'motors back to 0 after releasing W');
  } finally {
    await closePage(page);
  }
});

test('the speed slider scales what the keys send, and is remembered', { timeout: 60_000 }, async () => {
  let page = await openDrivingPage();
  const setSpeed = (pct) => page.evaluate((v) => {
    const el = document.getElementById('speed');
    if (!el) throw new Error('no speed control (#speed) on the page');
    el.value = String(v);
    el.dispatchEvent(new Event('input', { bubbles: true }));
  }, pct);
  // Holds `key` until a few drives went out; returns the non-zero ones.
  const hold = async (key) => {
    const mark = await page.evaluate(() => window.__sent.length);
    await page.keyboard.down(key);
    await page.waitForFunction((m) => window.__sent.slice(m).filter((s) => s.m.type === 'drive').length >= 4,
      mark, { timeout: MOVE_DEADLINE_MS, polling: 20 });
    await page.keyboard.up(key);
    return (await sentSince(page, mark)).filter(nonZero).map((s) => [s.m.linear, s.m.angular]);
  };
  const uniq = (xs) => [...new Set(xs.map((x) => JSON.stringify(x)))].map((x) => JSON.parse(x));
  try {
    await setSpeed(100);
    assert.deepEqual(uniq(await hold('w')), [[1, 0]], 'W at full speed');
    assert.deepEqual(uniq(await hold('a')), [[0, 0.7]], 'A at full speed');
    await setSpeed(50);
    assert.deepEqual(uniq(await hold('w')), [[0.5, 0]], 'W at half speed sends half');
    assert.deepEqual(uniq(await hold('a')), [[0, 0.35]], 'A at half speed sends half');
    await closePage(page);
    page = await openDrivingPage();
    assert.equal(await page.evaluate(() => document.getElementById('speed').value), '50', 'speed remembered');
    assert.deepEqual(uniq(await hold('w')), [[0.5, 0]], 'W at the remembered half speed');
    await waitForStatus(page, stopped, STOP_DEADLINE_MS, 'motors back to 0');
  } finally {
    await page.evaluate(() => localStorage.removeItem('roverd.speed')).catch(() => {});
    await closePage(page);
  }
});

test('no stale drives: a held W stops sending while the link is down', { timeout: 60_000 }, async () => {
  const OUTAGE_MS = 2000;
  const page = await openDrivingPage();
  const proc = roverdProcess();
  try {
    await page.keyboard.down('w');
    await waitForStatus(page, moving, MOVE_DEADLINE_MS, 'motors > 0 while W is held');
    // roverd paused: nothing comes back (no state, no SCTP acks, no ICE
    // answers), as when the Wi-Fi drops; what the page sends meanwhile
    // waits in the network and reaches the robot late.
    const t0 = await page.evaluate(() => performance.now());
    proc.kill('SIGSTOP');
    let t1;
    let paused;
    try {
      await sleep(OUTAGE_MS);
      [t1, paused] = await page.evaluate(() => [performance.now(), (document.getElementById('paused') || {}).textContent]);
    } finally {
      proc.kill('SIGCONT');
    }
    const sent = await page.evaluate(() => window.__sent);
    const during = sent.filter((s) => nonZero(s) && s.t >= t0 && s.t <= t1);
    // The last state came at most 500 ms before t0; after 1 s without one
    // the page must stop (plus one repeat and some slack).
    const late = during.filter((s) => s.t > t0 + 1200);
    assert.equal(late.length, 0, `${late.length} drives sent more than 1.2 s into a ${OUTAGE_MS} ms outage `
      + `(${during.length} in all)\n${await diagnostics(page)}`);
    assert.ok(during.length <= 1000 / 50 + 3, `${during.length} drives sent during the outage`);
    assert.match(paused || '', /driving paused/, 'the page says that driving is paused');
    await page.keyboard.up('w');
    // Queued SCTP data is retransmitted after a backoff: give it time.
    await waitForStatus(page, stopped, 8000, 'motors back to 0 after releasing W');
  } finally {
    try { proc.kill('SIGCONT'); } catch (_) { /* exited */ }
    await closePage(page);
  }
});
