// roverd control page: receives the robot's video and sound over WebRTC,
// keeps the connection alive, and shows the robot's status.
// Plain ES2020, no framework, no build step; served by roverd itself.
'use strict';

(() => {
  // ---------------------------------------------------------------- settings
  const RETRY_MIN_MS = 1000;        // first retry after a failure
  const RETRY_MAX_MS = 5000;        // backoff cap (retries go on forever)
  const RETRY_BUSY_MS = 10000;      // robot answered 503: too many viewers
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
  // stored under `roverd.token`. Sent as `Authorization: Bearer <token>`.
  function loadToken() {
    let token = null;
    try {
      token = new URLSearchParams(location.search).get('token');
      if (token) localStorage.setItem('roverd.token', token);
      else token = localStorage.getItem('roverd.token');
    } catch (_) { /* storage may be disabled */ }
    return token || null;
  }
  const token = loadToken();

  function apiHeaders(extra) {
    const h = Object.assign({}, extra || {});
    if (token) h.Authorization = 'Bearer ' + token;
    return h;
  }

  // ------------------------------------------------------------------ state
  let pc = null;          // current RTCPeerConnection
  let dc = null;          // current 'control' data channel
  let peerId = null;      // id given by the robot (answer / hello)
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
        deletePeer(answer.id, false);
        return;
      }
      if (answer.id) peerId = String(answer.id);
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
      if (e instanceof OfferError) {
        fail(e.message, e.status === 503 ? RETRY_BUSY_MS : undefined);
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
    deletePeer(peerId, keepalive);
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
    rttMs = null;
    ui.stRtt.textContent = '–';
  }

  function deletePeer(id, keepalive) {
    if (!id) return;
    try {
      fetch('/api/peers/' + encodeURIComponent(id), {
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

  // Sends one JSON command on the control channel. Returns false when the
  // channel is not open (the command is dropped, never queued: stale drive
  // commands must not reach the motors later).
  function sendControl(obj) {
    if (!dc || dc.readyState !== 'open') return false;
    try {
      dc.send(JSON.stringify(obj));
      return true;
    } catch (e) {
      console.warn('roverd: send failed', e);
      return false;
    }
  }

  // Handlers for messages from the robot, by "type". A later issue adds
  // "state" handling here (motor bars, e-stop latch, driver lease).
  const robotHandlers = {
    hello(msg) {
      if (msg.id) peerId = String(msg.id);
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
      lastRobotState = msg;
    },
    error(msg) {
      console.error('roverd: robot error:', msg.message, msg.seq !== undefined ? '(seq ' + msg.seq + ')' : '');
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
      ui.stVideo.textContent = t;
    } else {
      ui.stVideo.textContent = 'none';
    }
    const a = st.audio || {};
    ui.stAudio.textContent = a.source
      ? (a.source === 'test' ? 'test tone' : String(a.source)) : 'none';
    ui.stViewers.textContent = Array.isArray(st.peers) ? String(st.peers.length) : '–';
    if (st.version && !robotVersion) ui.version.textContent = 'v' + st.version;
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

  // -------------------------------------------------------------- lifecycle
  window.addEventListener('pagehide', () => {
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

  // For tests and for the controls added later.
  window.roverd = {
    get pc() { return pc; },
    get dc() { return dc; },
    get state() { return state; },
    get reason() { return reason; },
    get peerId() { return peerId; },
    get version() { return robotVersion; },
    get rttMs() { return rttMs; },
    get robotState() { return lastRobotState; },
    connect,
    sendControl,
  };

  setState('connecting');
  pollStatus();
  setInterval(pollStatus, STATUS_EVERY_MS);
  connect();
})();
