// roverd control page: receives the robot's video and sound over WebRTC,
// keeps the connection alive, and shows the robot's status.
// Plain ES2020, no framework, no build step; served by roverd itself.
'use strict';

(() => {
  // ---------------------------------------------------------------- settings
  const RETRY_MIN_MS = 1000;        // first retry after a failure
  const RETRY_MAX_MS = 5000;        // backoff cap (retries go on forever)
  const RETRY_BUSY_MS = 10000;      // robot answered 503 or 429: too many viewers or attempts
  const ICE_GATHER_MAX_MS = 2000;   // wait at most this for ICE gathering
  const OFFER_TIMEOUT_MS = 10000;   // POST /api/offer gives up after this
  const CONNECT_TIMEOUT_MS = 15000; // answer received but never connected
  const DISCONNECTED_GRACE_MS = 3000;
  const PING_EVERY_MS = 1000;
  const STATUS_EVERY_MS = 2000;

  const $ = (id) => document.getElementById(id);
  const ui = {
    video: $('video'),
    unmute: $('unmute'),
    state: $('conn-state'),
    reason: $('conn-reason'),
    version: $('version'),
    stVideo: $('st-video'),
    stAudio: $('st-audio'),
    stViewers: $('st-viewers'),
    stRtt: $('st-rtt'),
  };

  // ------------------------------------------------------------------ token
  // `?token=...` in the page URL wins and is remembered; otherwise the token
  // stored under `roverd.token`; when the robot answers 401, the page asks for
  // it once (the token form) and remembers it. Sent as `Authorization: Bearer`.
  // The token is then taken out of the address bar (history.replaceState), so that it
  // is not left on screen, in bookmarks or in a shared link.
  function loadToken() {
    let token = null;
    try {
      const params = new URLSearchParams(location.search);
      token = params.get('token');
      if (params.has('token')) {
        params.delete('token');
        const rest = params.toString();
        history.replaceState(history.state, '',
          location.pathname + (rest ? '?' + rest : '') + location.hash);
      }
      if (token) localStorage.setItem('roverd.token', token);
      else token = localStorage.getItem('roverd.token');
    } catch (_) { /* storage may be disabled */ }
    return token || null;
  }
  let token = loadToken();

  function askForToken(why) {
    const form = $('token-form');
    form.hidden = false;
    setState('reconnecting', why);
    $('token-input').focus();
  }

  $('token-form').addEventListener('submit', (ev) => {
    ev.preventDefault();
    const given = $('token-input').value.trim();
    if (!given) return;
    token = given;
    try { localStorage.setItem('roverd.token', given); } catch (_) { /* storage disabled */ }
    $('token-form').hidden = true;
    failures = 0;
    connect();
  });

  function apiHeaders(extra) {
    const h = Object.assign({}, extra || {});
    if (token) h.Authorization = 'Bearer ' + token;
    return h;
  }

  // ------------------------------------------------------------------ state
  let pc = null;          // current RTCPeerConnection
  let dc = null;          // current 'control' data channel
  let peerId = null;      // id given by the robot (answer / hello)
  let peerUrl = null;     // the answer's Location: closes this peer whatever the token
  let generation = 0;     // bumps on every teardown; stale callbacks check it
  let state = 'connecting';
  let reason = '';
  let lastFailure = ''; // why the previous attempt failed
  let failures = 0;       // consecutive failures, for the backoff
  let stopped = false;    // page is going away (pagehide)
  let robotVersion = null;
  let rttMs = null;
  let lastRobotState = null; // last {"type":"state",...} from the robot
  const timers = { retry: 0, ping: 0, disconnected: 0, connect: 0 };

  function clearTimer(name) {
    if (timers[name]) {
      clearTimeout(timers[name]);
      clearInterval(timers[name]);
      timers[name] = 0;
    }
  }

  function setState(next, why) {
    state = next;
    reason = why || '';
    document.body.dataset.state = next;
    const label = {
      connecting: 'Connecting…',
      connected: 'Connected',
      reconnecting: 'Reconnecting…',
    }[next] || next;
    ui.state.textContent = label;
    ui.reason.textContent = reason;
    ui.reason.hidden = !reason || next === 'connected';
  }

  // ------------------------------------------------------------ connection
  function lowLatency(receiver) {
    if (!receiver) return;
    // Ask for the smallest playout delay the browser allows.
    try {
      if ('jitterBufferTarget' in receiver) receiver.jitterBufferTarget = 0;
      else receiver.playoutDelayHint = 0; // older Chromium
    } catch (_) { /* not supported: keep the default */ }
  }

  function waitIceGathering(conn, maxMs) {
    if (conn.iceGatheringState === 'complete') return Promise.resolve();
    return new Promise((resolve) => {
      const done = () => {
        clearTimeout(t);
        conn.removeEventListener('icegatheringstatechange', check);
        resolve();
      };
      const check = () => { if (conn.iceGatheringState === 'complete') done(); };
      const t = setTimeout(done, maxMs);
      conn.addEventListener('icegatheringstatechange', check);
    });
  }

  class OfferError extends Error {
    constructor(message, status) {
      super(message);
      this.status = status;
    }
  }

  async function postOffer(sdp) {
    const ctl = new AbortController();
    const t = setTimeout(() => ctl.abort(), OFFER_TIMEOUT_MS);
    let resp;
    try {
      resp = await fetch('/api/offer', {
        method: 'POST',
        headers: apiHeaders({ 'Content-Type': 'application/json' }),
        body: JSON.stringify({ sdp, type: 'offer' }),
        signal: ctl.signal,
        cache: 'no-store',
      });
    } catch (e) {
      throw new OfferError(e && e.name === 'AbortError'
        ? 'robot did not answer in time' : 'robot unreachable', 0);
    } finally {
      clearTimeout(t);
    }
    let body = null;
    try { body = await resp.json(); } catch (_) { /* not JSON */ }
    if (!resp.ok) {
      const said = body && typeof body.error === 'string' && body.error;
      let msg = said || ('HTTP ' + resp.status + (resp.statusText ? ' ' + resp.statusText : ''));
      if (resp.status === 503 && !/viewer/i.test(msg)) msg = 'robot has too many viewers: ' + msg;
      if (resp.status === 401 && !said) msg = 'this robot needs a token: open the page with ?token=…';
      throw new OfferError(msg, resp.status);
    }
    if (!body || body.type !== 'answer' || typeof body.sdp !== 'string') {
      throw new OfferError('robot sent an invalid answer', resp.status);
    }
    // `/api/peers/<id>?secret=...`: DELETE on it closes this peer, even with a viewer token.
    body.location = resp.headers.get('Location');
    return body;
  }

  // Starts a new connection, dropping any existing one.
  async function connect() {
    teardown();
    stopped = false;
    const gen = generation;
    if (failures === 0) setState('connecting');
    else setState('reconnecting', lastFailure + ' — trying again');

    let conn;
    try {
      conn = new RTCPeerConnection(); // LAN only: no ICE servers
    } catch (e) {
      fail('this browser cannot do WebRTC: ' + e.message);
      return;
    }
    pc = conn;

    const remote = new MediaStream();
    conn.ontrack = (ev) => {
      if (gen !== generation) return;
      lowLatency(ev.receiver);
      remote.addTrack(ev.track);
      if (ui.video.srcObject !== remote) ui.video.srcObject = remote;
      playVideo();
    };
    conn.onconnectionstatechange = () => {
      if (gen !== generation) return;
      onConnectionState(conn.connectionState);
    };

    conn.addTransceiver('video', { direction: 'recvonly' });
    conn.addTransceiver('audio', { direction: 'recvonly' });
    for (const tr of conn.getTransceivers()) lowLatency(tr.receiver);

    setupDataChannel(conn.createDataChannel('control'), gen);

    try {
      const offer = await conn.createOffer();
      await conn.setLocalDescription(offer);
      await waitIceGathering(conn, ICE_GATHER_MAX_MS);
      if (gen !== generation) return;
      const answer = await postOffer(conn.localDescription.sdp);
      if (gen !== generation) {
        // Torn down while the robot was answering: free its slot.
        deletePeer(peerLocation(answer), false);
        return;
      }
      if (answer.id) peerId = String(answer.id);
      peerUrl = peerLocation(answer);
      await conn.setRemoteDescription({ type: 'answer', sdp: answer.sdp });
      if (gen !== generation) return;
      for (const r of conn.getReceivers()) lowLatency(r);
      timers.connect = setTimeout(() => {
        if (gen === generation && conn.connectionState !== 'connected') {
          fail('no media connection after ' + (CONNECT_TIMEOUT_MS / 1000) + ' s');
        }
      }, CONNECT_TIMEOUT_MS);
    } catch (e) {
      if (gen !== generation) return;
      if (e instanceof OfferError && e.status === 401) {
        // Retrying without a token is pointless: ask for it instead.
        teardown();
        askForToken(token ? 'the saved token was refused: enter the robot\'s token'
          : 'this robot needs its access token');
      } else if (e instanceof OfferError) {
        const wait = e.status === 503 || e.status === 429 ? RETRY_BUSY_MS : undefined;
        fail(e.message, wait);
      } else {
        fail('signaling failed: ' + (e && e.message ? e.message : e));
      }
    }
  }

  function onConnectionState(s) {
    if (s === 'connected') {
      clearTimer('disconnected');
      clearTimer('connect');
      failures = 0;
      setState('connected');
      playVideo();
      pollStatus(); // viewer count now includes us
    } else if (s === 'disconnected') {
      // Often recovers by itself (Wi-Fi hiccup); give it a moment.
      if (!timers.disconnected) {
        setState('reconnecting', 'connection interrupted');
        timers.disconnected = setTimeout(() => {
          timers.disconnected = 0;
          if (pc && pc.connectionState === 'disconnected') fail('connection lost');
        }, DISCONNECTED_GRACE_MS);
      }
    } else if (s === 'failed') {
      fail('connection failed');
    } else if (s === 'closed') {
      fail('connection closed');
    }
  }

  // Drops the current connection and schedules the next attempt.
  function fail(why, delayMs) {
    if (stopped) return;
    teardown();
    failures += 1;
    lastFailure = why;
    const delay = delayMs || Math.min(RETRY_MIN_MS * 2 ** (failures - 1), RETRY_MAX_MS);
    console.warn('roverd: ' + why + '; retrying in ' + delay / 1000 + ' s');
    setState('reconnecting', why + ' — retrying in ' + Math.round(delay / 100) / 10 + ' s');
    timers.retry = setTimeout(() => { timers.retry = 0; connect(); }, delay);
  }

  // Closes the current connection (and tells the robot, so that it frees
  // the viewer slot at once instead of waiting for ICE to time out).
  function teardown(keepalive) {
    generation += 1;
    deletePeer(peerUrl, keepalive);
    for (const name of Object.keys(timers)) clearTimer(name);
    if (dc) {
      dc.onopen = dc.onclose = dc.onmessage = dc.onerror = null;
      try { dc.close(); } catch (_) { /* already closed */ }
      dc = null;
    }
    if (pc) {
      pc.ontrack = pc.onconnectionstatechange = null;
      try { pc.close(); } catch (_) { /* already closed */ }
      pc = null;
    }
    peerId = null;
    peerUrl = null;
    rttMs = null;
    lastRobotState = null; // from the old connection: no longer true
    lastStateAt = -Infinity;
    lastFrameAt = -Infinity;
    framesDecoded = 0;
    needLetGo = false; // the robot's "let go" rule is per connection
    if (driving || pausedWhy) {
      // A control held through a lost connection does not drive the next
      // one: it must be pressed again.
      releaseAll();
      driving = false;
      clearTimeout(repeatTimer);
      repeatTimer = 0;
      setPaused(null);
      document.body.classList.remove('driving');
    }
    ui.stRtt.textContent = '–';
  }

  // Where to DELETE an answered peer: the answer's Location (with the peer's secret),
  // else by id, which only the full token may do.
  function peerLocation(answer) {
    if (answer && typeof answer.location === 'string' && answer.location.startsWith('/api/peers/')) {
      return answer.location;
    }
    return answer && answer.id ? '/api/peers/' + encodeURIComponent(String(answer.id)) : null;
  }

  function deletePeer(url, keepalive) {
    if (!url) return;
    try {
      fetch(url, {
        method: 'DELETE',
        keepalive: !!keepalive,
        headers: apiHeaders(),
      }).catch(() => {});
    } catch (_) { /* page unloading */ }
  }

  // ---------------------------------------------------------- data channel
  function setupDataChannel(channel, gen) {
    dc = channel;
    channel.onopen = () => {
      if (gen !== generation) return;
      sendPing();
      timers.ping = setInterval(sendPing, PING_EVERY_MS);
    };
    channel.onclose = () => {
      if (gen !== generation) return;
      fail('control channel closed');
    };
    channel.onmessage = (ev) => {
      if (gen !== generation || typeof ev.data !== 'string') return;
      let msg;
      try { msg = JSON.parse(ev.data); } catch (_) {
        console.warn('roverd: robot sent non-JSON', ev.data);
        return;
      }
      if (msg && typeof msg === 'object') onRobotMessage(msg);
    };
  }

  function sendPing() {
    sendControl({ type: 'ping', t: performance.now() });
  }

  // Sends one JSON command on the control channel, stamped with the next
  // "seq" (the robot echoes it in an error about that message, and refuses a
  // drive older than one it has seen). Returns the seq, or false
  // when the channel is not open (the command is dropped, never queued: stale
  // drive commands must not reach the motors later).
  let nextSeq = 1;
  const sendListeners = new Set(); // test hooks: called with every message sent
  const sentTypes = new Map(); // seq -> "type", for the last SENT_TYPES_KEPT messages
  const SENT_TYPES_KEPT = 128;
  function sendControl(obj) {
    if (!dc || dc.readyState !== 'open') return false;
    const seq = nextSeq;
    const msg = Object.assign({}, obj, { seq });
    try {
      dc.send(JSON.stringify(msg));
    } catch (e) {
      console.warn('roverd: send failed', e);
      return false;
    }
    nextSeq += 1;
    sentTypes.set(seq, msg.type);
    if (sentTypes.size > SENT_TYPES_KEPT) sentTypes.delete(sentTypes.keys().next().value);
    for (const cb of sendListeners) {
      try { cb(msg, performance.now()); } catch (e) { console.error(e); }
    }
    return seq;
  }

  // Handlers for messages from the robot, by "type".
  const robotHandlers = {
    hello(msg) {
      if (msg.id) peerId = String(msg.id);
      // Repeat well within the robot's deadman: 4 repeats per deadman, at
      // most 50 ms apart.
      if (typeof msg.deadman_ms === 'number' && msg.deadman_ms > 0) {
        driveRepeatMs = Math.max(DRIVE_REPEAT_MIN_MS, Math.min(DRIVE_REPEAT_MAX_MS, msg.deadman_ms / 4));
      }
      if (msg.version) {
        robotVersion = String(msg.version);
        ui.version.textContent = 'v' + robotVersion;
      }
    },
    pong(msg) {
      if (typeof msg.t !== 'number') return;
      rttMs = performance.now() - msg.t;
      ui.stRtt.textContent = rttMs < 10 ? rttMs.toFixed(1) + ' ms' : Math.round(rttMs) + ' ms';
    },
    state(msg) {
      onRobotState(msg); // driving section below
    },
    error(msg) {
      onRobotError(msg); // driving section below
    },
  };

  function onRobotMessage(msg) {
    const h = robotHandlers[msg.type];
    if (h) h(msg);
  }

  // ------------------------------------------------------------------ video
  function playVideo() {
    const v = ui.video;
    const p = v.play();
    if (p && p.catch) {
      p.catch((e) => {
        // Autoplay with sound refused: fall back to muted playback; the
        // button turns the sound on (a tap is the gesture browsers want).
        if (e && e.name === 'NotAllowedError' && !v.muted) {
          v.muted = true;
          showUnmute(true);
          v.play().catch(() => {});
        }
      });
    }
  }

  function showUnmute(muted) {
    ui.unmute.textContent = muted ? '🔇 Tap for sound' : '🔊';
    ui.unmute.title = muted ? 'Turn sound on' : 'Turn sound off';
    ui.unmute.setAttribute('aria-pressed', String(!muted));
    ui.unmute.setAttribute('aria-label', muted ? 'Turn sound on' : 'Turn sound off');
    ui.unmute.classList.toggle('on', !muted);
  }

  ui.unmute.addEventListener('click', () => {
    const v = ui.video;
    v.muted = !v.muted;
    showUnmute(v.muted);
    v.play().catch(() => {
      v.muted = true;
      showUnmute(true);
    });
  });
  showUnmute(true);

  // ----------------------------------------------------------------- status
  function fmtSource(s) {
    return s === 'test' ? 'test pattern' : String(s);
  }

  function renderStatus(st) {
    const v = st.video || {};
    if (v.source) {
      let t = fmtSource(v.source);
      if (v.width && v.height) t += ' · ' + v.width + '×' + v.height;
      if (typeof v.fps === 'number') t += ' · ' + Math.round(v.fps) + ' fps';
      const cam = v.camera || {};
      if (cam.state === 'lost') {
        t += ' · camera lost' + (cam.retries ? ' (retry ' + cam.retries + ')' : '');
      } else if (cam.state === 'starting') {
        t += ' · camera starting';
      } else if (cam.state === 'streaming' && cam.format) {
        t += ' · camera ' + cam.format;
        if (typeof cam.capture_fps === 'number') t += ', ' + cam.capture_fps.toFixed(1) + ' fps';
      }
      const why = cam.last_error || cam.note;
      ui.stVideo.textContent = t;
      ui.stVideo.title = why ? String(why) : '';
      if (why && cam.state !== 'streaming') ui.stVideo.textContent += ' — ' + why;
    } else {
      ui.stVideo.textContent = 'none';
    }
    const a = st.audio || {};
    ui.stAudio.textContent = a.source ? audioText(a) : 'none';
    ui.stViewers.textContent = Array.isArray(st.peers) ? String(st.peers.length) : '–';
    otherDriverInStatus = Array.isArray(st.peers)
      && st.peers.some((p) => p && p.driver === true && String(p.id) !== String(peerId));
    if (st.version && !robotVersion) ui.version.textContent = 'v' + st.version;
  }

  // The microphone line: source, the device's own format, faults. textContent only.
  function audioText(a) {
    if (a.source === 'test') return 'test tone';
    let t = String(a.source);
    const f = a.input;
    if (f && typeof f.sample_rate === 'number') {
      t += ' · ' + (f.sample_rate / 1000) + ' kHz '
        + (f.channels === 1 ? 'mono' : f.channels + ' ch') + ' ' + String(f.sample_format);
    }
    if (a.capturing === false) t += ' · not capturing (silence)';
    if (a.overruns || a.underruns) {
      t += ' · overruns ' + Number(a.overruns) + ', underruns ' + Number(a.underruns);
    }
    if (a.last_error) t += ' · last error: ' + String(a.last_error);
    return t;
  }

  let statusBusy = false;
  async function pollStatus() {
    if (statusBusy || stopped) return;
    statusBusy = true;
    try {
      const resp = await fetch('/api/status', { headers: apiHeaders(), cache: 'no-store' });
      if (resp.ok) {
        renderStatus(await resp.json());
      } else {
        let msg = 'HTTP ' + resp.status;
        try { const b = await resp.json(); if (b && b.error) msg = b.error; } catch (_) { /* ignore */ }
        ui.stVideo.textContent = msg;
      }
    } catch (_) {
      ui.stVideo.textContent = 'status unavailable';
    } finally {
      statusBusy = false;
    }
  }

  // ---------------------------------------------------------------- driving
  // Inputs (touch joystick, keys, gamepad) become one drive command
  // {"type":"drive","linear":V,"angular":W} (V > 0 forward, W > 0 turns
  // left), scaled by the speed slider. While any control is held the command
  // is sent at once and then repeated every driveRepeatMs (the robot's
  // deadman stops the motors when the repeats stop); on release, blur or hide
  // a single zero drive goes out. Priority when several are held: joystick,
  // then keys, then gamepad.
  //
  // Never a stale or blind drive: a non-zero drive goes out only while the
  // peer connection is connected, the robot's last `state` is under
  // STATE_FRESH_MS old, a new video picture arrived within VIDEO_FROZEN_MS,
  // and nothing is queued on the channel (a queued drive would reach the
  // motors late: it is skipped, never queued). Otherwise driving pauses: one
  // zero drive, and a note on the video, until all is well again.
  //
  // Stop (button or Space, any viewer) sends {"type":"stop"}, lets go of every
  // control and sends a zero drive (the robot refuses drives after a stop
  // until the peer "lets go" with one); a new press drives again.
  const DRIVE_REPEAT_MAX_MS = 50; // ~20 Hz while a control is held (the default deadman: 500 ms)
  const DRIVE_REPEAT_MIN_MS = 10;
  const DRIVE_MIN_GAP_MS = 20;    // joystick moves closer than this wait for the repeat
  const STATE_FRESH_MS = 1000;    // drive only with a state from the robot this recent
  const VIDEO_FROZEN_MS = 1000;   // ... and a new picture this recent
  const FRAMES_POLL_MS = 200;     // how often getStats() is asked for framesDecoded
  const SPEED_DEFAULT = 100;      // percent of the robot's max_speed
  const KEY_LINEAR = 1.0;         // W / S
  const KEY_ANGULAR = 0.7;        // A / D (alone: turn on the spot)
  const JOY_DEADZONE = 0.08;      // per axis, so that "straight up" drives straight
  const PAD_DEADZONE = 0.15;      // gamepad sticks rest a little off centre
  const PAD_POLL_MS = 50;
  const PAD_ESTOP_BUTTONS = [1];  // standard mapping: B / circle / east
  const ESTOP_PENDING_MS = 1000;  // treat as latched until the robot's state says so
  const STATE_STALE_MS = 1500;    // the robot sends state at least twice a second
  const OTHER_DRIVER_MS = 1500;   // a refused drive means "someone else drives" this long
  const NOTE_MS = 3000;

  const KEY_DIRS = {
    KeyW: 'fwd', ArrowUp: 'fwd',
    KeyS: 'back', ArrowDown: 'back',
    KeyA: 'left', ArrowLeft: 'left',
    KeyD: 'right', ArrowRight: 'right',
  };
  const KEY_BY_CHAR = { w: 'KeyW', a: 'KeyA', s: 'KeyS', d: 'KeyD' };

  const cui = {
    joystick: $('joystick'),
    knob: $('joy-knob'),
    padHint: $('pad-hint'),
    driver: $('driver'),
    driverText: $('driver-text'),
    motors: $('motors'),
    left: $('motor-left'),
    right: $('motor-right'),
    estop: $('estop'),
    stop: $('stop'),
    reset: $('reset'),
    note: $('ctl-note'),
    paused: $('paused'),
    speed: $('speed'),
    speedVal: $('speed-val'),
  };

  const heldKeys = new Set(); // codes of the drive keys held down (KeyW, ArrowUp…)
  let joy = null;             // { id, x, y } while a pointer holds the joystick
  let padCmd = null;          // { linear, angular } while a gamepad stick is off centre
  let padNeedsNeutral = false; // after a stop, the stick must come back to centre first
  let padButtonsWere = [];
  let padTimer = 0;
  let driving = false;        // a control is held and drives are being sent
  let lastDrive = null;       // last command sent (null after the zero drive)
  let lastDriveAt = -Infinity;
  let repeatTimer = 0;
  let estopSentAt = -Infinity;
  let lastStateAt = -Infinity;
  let otherDriverUntil = -Infinity; // a drive of ours was refused (lease held elsewhere)
  let otherDriverInStatus = false;  // /api/status lists another peer as driver
  let lastErrorLogAt = -Infinity;
  let noteTimer = 0;
  const stateListeners = new Set();
  let driveRepeatMs = DRIVE_REPEAT_MAX_MS; // min(50, hello.deadman_ms / 4)
  let pausedWhy = null;       // why held controls do not drive now: 'link', 'novideo', 'video'
  let frozenNotice = false;   // "video frozen" stays up until pictures flow again
  let lastFrameAt = -Infinity; // when framesDecoded last grew
  let framesDecoded = 0;
  let needLetGo = false;      // a stop went out: the next drive starts with a zero drive
  const letGoSeqs = new Set(); // seqs of the zero drives sent as a "let go"
  let lastLetGoSeq = 0;
  let speedPct = loadSpeed();
  let wakeLock = null;        // WakeLockSentinel while driving
  let wakeLockPending = false;

  const round3 = (x) => Math.round(x * 1000) / 1000 || 0; // no -0
  const clamp1 = (x) => Math.max(-1, Math.min(1, x));

  function deadzone(v, dz) {
    const a = Math.abs(v);
    return a <= dz ? 0 : Math.sign(v) * Math.min(1, (a - dz) / (1 - dz));
  }

  function estopLatched() {
    if (lastRobotState && lastRobotState.estop) return true;
    return performance.now() - estopSentAt < ESTOP_PENDING_MS;
  }

  function channelOpen() {
    return !!dc && dc.readyState === 'open';
  }

  // Why a held control may not drive now, or null when it may.
  function pauseReason(now) {
    if (!pc || pc.connectionState !== 'connected' || !channelOpen()) return 'link';
    if (now - lastStateAt >= STATE_FRESH_MS) return 'link';
    if (lastFrameAt === -Infinity) return 'novideo';
    if (now - lastFrameAt >= VIDEO_FROZEN_MS) return 'video';
    return null;
  }

  function renderPaused() {
    let text = '';
    if (pausedWhy === 'link') text = 'no news from the robot — driving paused';
    else if (pausedWhy === 'video' || frozenNotice) text = 'video frozen — driving paused';
    else if (pausedWhy === 'novideo') text = 'no video yet — driving paused';
    if (cui.paused.textContent !== text) cui.paused.textContent = text;
    cui.paused.hidden = !text;
  }

  function setPaused(why) {
    pausedWhy = why;
    if (why === 'video') frozenNotice = true;
    renderPaused();
  }

  // The command the held controls ask for, or null when nothing is held.
  function currentDrive() {
    if (estopLatched()) return null;
    if (joy) {
      return { linear: deadzone(-joy.y, JOY_DEADZONE), angular: deadzone(-joy.x, JOY_DEADZONE) };
    }
    if (heldKeys.size) {
      const dirs = new Set();
      for (const code of heldKeys) dirs.add(KEY_DIRS[code]);
      const v = (dirs.has('fwd') ? 1 : 0) - (dirs.has('back') ? 1 : 0);
      const w = (dirs.has('left') ? 1 : 0) - (dirs.has('right') ? 1 : 0);
      return { linear: v * KEY_LINEAR, angular: w * KEY_ANGULAR };
    }
    if (padCmd) return padCmd;
    return null;
  }

  function sameDrive(a, b) {
    return !!a && !!b && round3(a.linear) === round3(b.linear) && round3(a.angular) === round3(b.angular);
  }

  function sendDrive(cmd) {
    lastDrive = cmd;
    lastDriveAt = performance.now();
    // On a congested link the channel queues; a queued drive would reach the
    // motors late. Skip rather than queue (the robot's deadman takes over).
    if (dc && dc.bufferedAmount === 0) {
      const k = speedPct / 100;
      sendControl({ type: 'drive', linear: round3(clamp1(cmd.linear) * k), angular: round3(clamp1(cmd.angular) * k) });
    }
    clearTimeout(repeatTimer);
    repeatTimer = setTimeout(repeatDrive, driveRepeatMs);
  }

  // A zero drive is never stale: it goes out whenever the channel is open.
  function sendZeroDrive() {
    lastDrive = null;
    lastDriveAt = performance.now();
    return sendControl({ type: 'drive', linear: 0, angular: 0 });
  }

  // The zero drive that tells the robot we let go after a stop.
  function sendLetGo() {
    const seq = sendZeroDrive();
    if (!seq) return;
    needLetGo = false;
    lastLetGoSeq = seq;
    letGoSeqs.add(seq);
    if (letGoSeqs.size > 32) letGoSeqs.delete(letGoSeqs.values().next().value);
  }

  // Stops sending drives; one zero drive if we were driving.
  function haltDrives() {
    clearTimeout(repeatTimer);
    repeatTimer = 0;
    if (driving) {
      driving = false;
      sendZeroDrive();
    }
  }

  function repeatDrive() {
    repeatTimer = 0;
    const cmd = currentDrive();
    if (cmd && driving && !pauseReason(performance.now())) sendDrive(cmd);
    else updateDrive();
  }

  // Re-evaluates the controls after any input change (and on every repeat
  // while paused, to resume when the link and the video are back).
  function updateDrive() {
    const now = performance.now();
    const cmd = currentDrive();
    const why = cmd ? pauseReason(now) : null;
    if (!cmd || why) {
      haltDrives();
      setPaused(why);
      if (why) repeatTimer = setTimeout(repeatDrive, driveRepeatMs);
    } else {
      setPaused(null);
      if (!driving) {
        driving = true;
        if (needLetGo) sendLetGo();
        sendDrive(cmd);
      } else if (!sameDrive(cmd, lastDrive) && now - lastDriveAt >= DRIVE_MIN_GAP_MS) {
        sendDrive(cmd); // else the next repeat (at most 50 ms away) carries it
      }
    }
    document.body.classList.toggle('driving', driving);
    keepAwake(driving || !!why);
  }

  // ------------------------------------------------------------ video watch
  // framesDecoded from getStats(): when it last grew is when the last new
  // picture arrived (works whether or not the <video> is painted).
  let framesBusy = false;
  async function pollFrames() {
    const conn = pc;
    if (framesBusy || !conn || conn.connectionState !== 'connected') return;
    framesBusy = true;
    try {
      let n = 0;
      (await conn.getStats()).forEach((s) => {
        if (s.type === 'inbound-rtp' && s.kind === 'video') n = s.framesDecoded || 0;
      });
      if (conn !== pc) return;
      if (n > framesDecoded) {
        framesDecoded = n;
        lastFrameAt = performance.now();
        if (frozenNotice || pausedWhy) {
          frozenNotice = false;
          if (pausedWhy) updateDrive(); else renderPaused();
        }
      }
    } catch (_) { /* closed meanwhile */ } finally {
      framesBusy = false;
    }
  }
  setInterval(pollFrames, FRAMES_POLL_MS);

  // ------------------------------------------------------------ wake lock
  // Keeps the phone's screen on while driving; failures (no support, page
  // hidden, headless) are ignored.
  function keepAwake(on) {
    if (!navigator.wakeLock || typeof navigator.wakeLock.request !== 'function') return;
    if (on && !wakeLock && !wakeLockPending && !document.hidden) {
      wakeLockPending = true;
      navigator.wakeLock.request('screen').then((lock) => {
        wakeLockPending = false;
        wakeLock = lock;
        lock.addEventListener('release', () => { if (wakeLock === lock) wakeLock = null; });
        if (!driving && !pausedWhy) keepAwake(false);
      }, () => { wakeLockPending = false; });
    } else if (!on && wakeLock) {
      const lock = wakeLock;
      wakeLock = null;
      lock.release().catch(() => {});
    }
  }

  // ------------------------------------------------------------ speed
  function loadSpeed() {
    let v = NaN;
    try { v = Number(localStorage.getItem('roverd.speed')); } catch (_) { /* storage disabled */ }
    return v >= 10 && v <= 100 ? Math.round(v / 10) * 10 : SPEED_DEFAULT;
  }

  function setSpeed(pct, remember) {
    speedPct = pct;
    cui.speed.value = String(pct);
    cui.speedVal.textContent = pct + '%';
    if (remember) {
      try { localStorage.setItem('roverd.speed', String(pct)); } catch (_) { /* storage disabled */ }
    }
  }
  setSpeed(speedPct, false);
  cui.speed.addEventListener('input', () => {
    const v = Number(cui.speed.value);
    if (v >= 10 && v <= 100) setSpeed(v, true);
    // A held control takes the new speed with its next repeat.
  });

  // Lets go of every control; a control still held must be pressed again.
  function releaseAll() {
    heldKeys.clear();
    if (joy) {
      const id = joy.id;
      joy = null;
      try { cui.joystick.releasePointerCapture(id); } catch (_) { /* already released */ }
    }
    setKnob(0, 0);
    cui.joystick.classList.remove('active');
    if (padCmd) padNeedsNeutral = true;
    padCmd = null;
  }

  // Stops driving now (Space, blur, page hidden, e-stop). Sends the zero
  // drive when we were driving or the robot says we hold the lease; never
  // while e-stopped (the robot refuses drives then).
  function stopDriving() {
    const wasDriving = driving;
    releaseAll();
    driving = false;
    clearTimeout(repeatTimer);
    repeatTimer = 0;
    setPaused(null);
    document.body.classList.remove('driving');
    keepAwake(false);
    if ((wasDriving || (lastRobotState && lastRobotState.driver)) && !estopLatched()) sendZeroDrive();
  }

  // The Stop button and Space, for every viewer: {"type":"stop"} (never
  // refused), then let go of every control; the driver also sends its zero
  // drive at once, a viewer that did not drive sends it before its next drive.
  function userStop() {
    const wasDriving = driving || !!(lastRobotState && lastRobotState.driver);
    releaseAll();
    driving = false;
    clearTimeout(repeatTimer);
    repeatTimer = 0;
    setPaused(null);
    document.body.classList.remove('driving');
    keepAwake(false);
    const sent = sendControl({ type: 'stop' });
    if (!sent) showNote('Not connected: the stop could not be sent!', 'bad');
    needLetGo = true;
    if (sent && wasDriving && !estopLatched()) sendLetGo();
    renderControls();
  }

  function estop() {
    estopSentAt = performance.now();
    stopDriving();
    const sent = sendControl({ type: 'estop' });
    if (!sent) showNote('Not connected: the e-stop could not be sent!', 'bad');
    renderControls();
  }

  function resetEstop() {
    estopSentAt = -Infinity;
    if (!sendControl({ type: 'reset' })) showNote('Not connected: reset not sent', 'bad');
    // The robot holds every drive after an e-stop until this page lets go (a zero
    // drive): let go now, so the next press drives at once.
    else if (!currentDrive()) sendLetGo();
    renderControls();
  }

  // ------------------------------------------------------------ keyboard
  function isTextField(el) {
    if (!el || el === document.body) return false;
    if (el.isContentEditable) return true;
    if (el.tagName === 'TEXTAREA' || el.tagName === 'SELECT') return true;
    if (el.tagName === 'INPUT') {
      return !/^(button|checkbox|radio|range|reset|submit|image|color)$/i.test(el.type);
    }
    return false;
  }

  function driveKey(e) {
    if (KEY_DIRS[e.code]) return e.code;
    if (KEY_DIRS[e.key]) return e.key; // arrows by name (some keyboards lack codes)
    const c = typeof e.key === 'string' && e.key.length === 1 ? KEY_BY_CHAR[e.key.toLowerCase()] : null;
    return c || null;
  }

  function isSpace(e) {
    return e.code === 'Space' || e.key === ' ' || e.key === 'Spacebar';
  }

  window.addEventListener('keydown', (e) => {
    if (isTextField(e.target) || e.ctrlKey || e.metaKey || e.altKey) return;
    if (isSpace(e)) {
      e.preventDefault(); // no scrolling, and no click on a focused button
      if (!e.repeat) userStop();
      return;
    }
    const code = driveKey(e);
    if (!code) return;
    e.preventDefault(); // arrows must not scroll the page
    // Only a fresh press drives: a key held through a stop or a blur
    // (auto-repeat) does not start the motors again.
    if (e.repeat || heldKeys.has(code)) return;
    if (estopLatched()) {
      showNote('E-STOP is latched: press Reset to drive again', 'bad');
      return;
    }
    heldKeys.add(code);
    updateDrive();
  }, true);

  window.addEventListener('keyup', (e) => {
    if (isSpace(e)) {
      if (!isTextField(e.target)) e.preventDefault();
      return;
    }
    const code = driveKey(e);
    if (!code) return;
    // Released keys always count, even from a text field or with modifiers.
    let changed = heldKeys.delete(code);
    // "w" pressed with one code and released under another (layout switch).
    if (!changed && KEY_BY_CHAR[String(e.key).toLowerCase()]) {
      changed = heldKeys.delete(KEY_BY_CHAR[String(e.key).toLowerCase()]);
    }
    if (!isTextField(e.target)) e.preventDefault();
    if (changed) updateDrive();
  }, true);

  // ------------------------------------------------------------ joystick
  function setKnob(x, y) {
    const r = joyRadius();
    cui.knob.style.transform = 'translate(-50%, -50%) translate(' + (x * r).toFixed(1) + 'px, ' + (y * r).toFixed(1) + 'px)';
  }

  // How far (px) the knob's centre may travel from the pad's centre.
  function joyRadius() {
    const pad = cui.joystick.clientWidth || 1;
    const knob = cui.knob.offsetWidth || 0;
    return Math.max(1, (pad - knob) / 2);
  }

  function moveJoy(e) {
    const rect = cui.joystick.getBoundingClientRect();
    const r = joyRadius();
    let x = (e.clientX - (rect.left + rect.width / 2)) / r;
    let y = (e.clientY - (rect.top + rect.height / 2)) / r;
    const m = Math.hypot(x, y);
    if (m > 1) { x /= m; y /= m; }
    joy.x = x;
    joy.y = y;
    setKnob(x, y);
    updateDrive();
  }

  cui.joystick.addEventListener('pointerdown', (e) => {
    if (joy || (e.pointerType === 'mouse' && e.button !== 0)) return;
    e.preventDefault();
    if (estopLatched()) {
      showNote('E-STOP is latched: press Reset to drive again', 'bad');
      return;
    }
    try { cui.joystick.setPointerCapture(e.pointerId); } catch (_) { /* synthetic event */ }
    joy = { id: e.pointerId, x: 0, y: 0 };
    cui.joystick.classList.add('active');
    moveJoy(e);
  });
  cui.joystick.addEventListener('pointermove', (e) => {
    if (joy && e.pointerId === joy.id) moveJoy(e);
  });
  const joyUp = (e) => {
    if (!joy || e.pointerId !== joy.id) return;
    joy = null;
    cui.joystick.classList.remove('active');
    setKnob(0, 0);
    updateDrive();
  };
  cui.joystick.addEventListener('pointerup', joyUp);
  cui.joystick.addEventListener('pointercancel', joyUp);
  cui.joystick.addEventListener('lostpointercapture', joyUp);
  cui.joystick.addEventListener('contextmenu', (e) => e.preventDefault());

  // ------------------------------------------------------------- gamepad
  function firstGamepad() {
    const list = navigator.getGamepads ? navigator.getGamepads() : [];
    for (const gp of list || []) if (gp && gp.connected) return gp;
    return null;
  }

  function pollGamepad() {
    const gp = firstGamepad();
    cui.padHint.hidden = !gp;
    if (!gp) {
      if (padCmd) { padCmd = null; updateDrive(); }
      padButtonsWere = [];
      clearInterval(padTimer);
      padTimer = 0;
      return;
    }
    // B / east: e-stop, on the press.
    for (const i of PAD_ESTOP_BUTTONS) {
      const b = gp.buttons[i];
      const pressed = !!(b && (b.pressed || b.value > 0.5));
      if (pressed && !padButtonsWere[i]) estop();
      padButtonsWere[i] = pressed;
    }
    if (document.hidden || !document.hasFocus()) return; // blur/hide stopped us already
    // Per-axis dead zone: a stick pushed "straight" drives straight.
    const linear = deadzone(-(gp.axes[1] || 0), PAD_DEADZONE);
    const angular = deadzone(-(gp.axes[0] || 0), PAD_DEADZONE);
    const centred = linear === 0 && angular === 0;
    if (padNeedsNeutral) {
      if (!centred) return;
      padNeedsNeutral = false;
    }
    const next = centred || estopLatched() ? null : { linear, angular };
    const had = !!padCmd;
    padCmd = next;
    if (next || had) updateDrive();
  }

  function startGamepadPolling() {
    if (!padTimer) padTimer = setInterval(pollGamepad, PAD_POLL_MS);
    pollGamepad();
  }
  window.addEventListener('gamepadconnected', startGamepadPolling);
  window.addEventListener('gamepaddisconnected', pollGamepad);

  // ------------------------------------------------------------- buttons
  // E-STOP and Stop act on the first touch, not on a click that a finger
  // sliding off the button would cancel; mouse and keyboard (Enter) click.
  function onFirstTouch(button, act) {
    let touchAt = -Infinity;
    button.addEventListener('pointerdown', (e) => {
      if (e.pointerType === 'touch' || e.pointerType === 'pen') {
        touchAt = performance.now();
        act();
      }
    });
    button.addEventListener('click', () => {
      if (performance.now() - touchAt > 1000) act();
    });
  }
  onFirstTouch(cui.estop, estop);
  onFirstTouch(cui.stop, userStop);
  cui.reset.addEventListener('click', () => resetEstop());

  // Losing focus or visibility lets go of everything.
  window.addEventListener('blur', () => stopDriving());
  document.addEventListener('visibilitychange', () => {
    if (document.hidden) stopDriving();
  });

  // ----------------------------------------------------- robot → page
  function onRobotState(msg) {
    lastRobotState = msg;
    lastStateAt = performance.now();
    if (msg.estop && (driving || joy || heldKeys.size || padCmd)) {
      // Latched (by us or by another viewer): let go, so that a reset does
      // not drive on a control that was held through the e-stop.
      releaseAll();
      driving = false;
      clearTimeout(repeatTimer);
      repeatTimer = 0;
      setPaused(null);
      document.body.classList.remove('driving');
      keepAwake(false);
    }
    renderControls();
    for (const cb of stateListeners) {
      try { cb(msg, lastStateAt); } catch (e) { console.error(e); }
    }
  }

  function onRobotError(msg) {
    const now = performance.now();
    const about = typeof msg.seq === 'number' ? sentTypes.get(msg.seq) : undefined;
    const text = typeof msg.message === 'string' ? msg.message : 'unknown error';
    if (about === 'drive' && letGoSeqs.has(msg.seq)) {
      // Our "let go" after a stop was refused (viewer token, someone else's
      // lease, e-stop): nothing to tell the user, who only pressed Stop.
      console.info('roverd: zero drive after a stop refused:', text);
      return;
    }
    if (about === 'drive') {
      // The let-go refusal names "another viewer" as a possible sender of the stop:
      // it is no sign that someone else drives, so it is handled first.
      if (!estopLatched() && /let go/i.test(text)) {
        // About a drive sent before our last let go: already handled.
        if (msg.seq < lastLetGoSeq) return;
        // A stop (ours or another viewer's) holds our drives until we let go:
        // release the controls, send the zero drive, wait for a new press.
        const was = driving || heldKeys.size || joy || padCmd;
        releaseAll();
        clearTimeout(repeatTimer);
        repeatTimer = 0;
        driving = false;
        setPaused(null);
        document.body.classList.remove('driving');
        keepAwake(false);
        if (was || needLetGo) sendLetGo();
        showNote('Stopped: ' + text + ' — press again to drive', 'warn');
        renderControls();
        return;
      }
      if (!estopLatched() && /another|other (viewer|peer|browser)|lease|driver/i.test(text)) {
        otherDriverUntil = now + OTHER_DRIVER_MS;
      }
      showNote('Drive refused: ' + text, 'warn');
      renderControls();
    } else {
      showNote('Robot: ' + text, 'bad');
    }
    if (now - lastErrorLogAt > 1000) { // drives repeat at 20 Hz: do not flood the console
      lastErrorLogAt = now;
      console.error('roverd: robot error:', text, msg.seq !== undefined ? '(seq ' + msg.seq + ', ' + (about || '?') + ')' : '');
    }
  }

  function showNote(text, kind) {
    cui.note.textContent = text;
    cui.note.dataset.kind = kind || 'info';
    cui.note.hidden = false;
    clearTimeout(noteTimer);
    noteTimer = setTimeout(() => { cui.note.hidden = true; }, NOTE_MS);
  }

  function renderBar(el, v) {
    const x = typeof v === 'number' && isFinite(v) ? clamp1(v) : 0;
    const fill = el.querySelector('.fill');
    fill.style.width = (Math.abs(x) * 50).toFixed(1) + '%';
    fill.classList.toggle('neg', x < 0);
    el.querySelector('.val').textContent = (x < 0 ? '−' : x > 0 ? '+' : '') + Math.abs(x).toFixed(2);
  }

  function renderControls() {
    const now = performance.now();
    const s = lastRobotState;
    const open = channelOpen();
    const fresh = !!s && open && now - lastStateAt < STATE_STALE_MS;
    const latched = estopLatched();
    renderBar(cui.left, s && s.left);
    renderBar(cui.right, s && s.right);
    cui.motors.classList.toggle('stale', !fresh);
    let kind;
    let text;
    if (!open) { kind = 'off'; text = 'Not connected'; }
    else if (!s) { kind = 'wait'; text = 'Waiting for the robot…'; }
    else if (!fresh) { kind = 'wait'; text = 'No news from the robot'; }
    else if (s.estop) { kind = 'estop'; text = 'E-STOP latched'; }
    else if (s.driver) { kind = 'me'; text = 'You are driving'; }
    else if (otherDriverUntil > now || otherDriverInStatus) { kind = 'other'; text = 'Another viewer is driving'; }
    else { kind = 'idle'; text = 'Not driving'; }
    if (cui.driver.dataset.kind !== kind) cui.driver.dataset.kind = kind;
    if (cui.driverText.textContent !== text) cui.driverText.textContent = text;
    cui.reset.hidden = !(s && s.estop);
    cui.estop.classList.toggle('latched', latched);
    cui.joystick.classList.toggle('disabled', latched || !open);
    document.body.classList.toggle('is-driver', !!(fresh && s.driver));
  }
  setInterval(renderControls, 250);
  renderControls();

  // -------------------------------------------------------------- lifecycle
  window.addEventListener('pagehide', () => {
    stopDriving();
    stopped = true;
    teardown(true); // DELETE /api/peers/<id> with keepalive
  });
  window.addEventListener('pageshow', (ev) => {
    if (ev.persisted) { failures = 0; connect(); } // back from bfcache
  });
  window.addEventListener('online', () => {
    // Network is back: do not wait for the backoff.
    if (timers.retry) { clearTimer('retry'); connect(); }
  });

  // For tests and for debugging from the console.
  window.roverd = {
    get pc() { return pc; },
    get dc() { return dc; },
    get state() { return state; },
    get reason() { return reason; },
    get peerId() { return peerId; },
    get version() { return robotVersion; },
    get rttMs() { return rttMs; },
    get robotState() { return lastRobotState; },
    get driving() { return driving; },
    get drive() { return currentDrive(); },
    get lastSeq() { return nextSeq - 1; },
    get repeatMs() { return driveRepeatMs; },
    get paused() { return pausedWhy; },
    get speed() { return speedPct; },
    connect,
    sendControl,
    estop,
    stop: userStop,
    reset: resetEstop,
    stopDriving,
    // Hooks: cb(msg, performance.now() of arrival / sending); return an unsubscribe.
    onState(cb) { stateListeners.add(cb); return () => stateListeners.delete(cb); },
    onSend(cb) { sendListeners.add(cb); return () => sendListeners.delete(cb); },
  };

  setState('connecting');
  pollStatus();
  setInterval(pollStatus, STATUS_EVERY_MS);
  connect();
})();
