// streammatte live: webcam → server over WebRTC → back with the background replaced.
// Shared by /live (with controls) and /obs (output only). No STUN/TURN unless the server
// configures one, so nothing leaves the machine by default.
"use strict";

(function () {
  const params = new URLSearchParams(location.search);
  const token = params.get("token");

  function authHeaders(extra) {
    const headers = Object.assign({}, extra || {});
    if (token) headers["Authorization"] = "Bearer " + token;
    return headers;
  }

  async function api(path, options) {
    const opts = Object.assign({}, options || {});
    opts.headers = authHeaders(opts.headers);
    const response = await fetch(path, opts);
    let body = null;
    try { body = await response.json(); } catch (e) { body = null; }
    if (!response.ok) {
      throw new Error((body && body.error) || (response.status + " " + response.statusText));
    }
    return body;
  }

  function waitIceGathering(pc) {
    // aiortc takes one complete offer (no trickle ICE); host candidates gather in milliseconds
    if (pc.iceGatheringState === "complete") return Promise.resolve();
    return new Promise((resolve) => {
      const done = () => {
        if (pc.iceGatheringState === "complete") {
          pc.removeEventListener("icegatheringstatechange", done);
          resolve();
        }
      };
      pc.addEventListener("icegatheringstatechange", done);
      setTimeout(resolve, 3000);
    });
  }

  // Opens the camera, connects, and calls hooks.onStream(remoteStream), hooks.onMessage(msg).
  async function connect(settings, hooks) {
    const config = await api("/api/live/config");
    const constraints = { video: { width: { ideal: 640 }, height: { ideal: 480 } }, audio: false };
    if (params.get("camera")) constraints.video.deviceId = { exact: params.get("camera") };
    const camera = await navigator.mediaDevices.getUserMedia(constraints);
    const pc = new RTCPeerConnection({ iceServers: config.ice_servers || [] });
    const session = { pc, camera, channel: null, config, closed: false };
    camera.getTracks().forEach((t) => pc.addTrack(t, camera));
    const channel = pc.createDataChannel("control");
    session.channel = channel;
    channel.onmessage = (event) => {
      let message;
      try { message = JSON.parse(event.data); } catch (e) { return; }
      if (hooks.onMessage) hooks.onMessage(message);
    };
    pc.ontrack = (event) => {
      const stream = event.streams && event.streams[0] ? event.streams[0]
        : new MediaStream([event.track]);
      if (hooks.onStream) hooks.onStream(stream, camera);
    };
    pc.onconnectionstatechange = () => {
      if (hooks.onState) hooks.onState(pc.connectionState);
    };
    await pc.setLocalDescription(await pc.createOffer());
    await waitIceGathering(pc);
    const answer = await api("/api/offer", {
      method: "POST",
      headers: { "Content-Type": "application/json" },
      body: JSON.stringify({ sdp: pc.localDescription.sdp, type: "offer", settings }),
    });
    session.peer = answer.peer;
    await pc.setRemoteDescription({ sdp: answer.sdp, type: answer.type });
    session.send = (changes) => {
      if (channel.readyState === "open") {
        channel.send(JSON.stringify({ type: "settings", settings: changes }));
      }
    };
    session.close = () => {
      session.closed = true;
      camera.getTracks().forEach((t) => t.stop());
      pc.close();
    };
    return session;
  }

  function settingsFromUrl() {
    const out = {};
    for (const name of ["engine", "background", "temporal"]) {
      if (params.get(name)) out[name] = params.get(name);
    }
    if (params.get("refine")) out.refine = params.get("refine") === "1";
    if (params.get("keep_smoothing")) out.keep_smoothing = params.get("keep_smoothing") === "1";
    if (params.get("alpha")) out.alpha = params.get("alpha") === "1";
    return out;
  }

  // Mean colour of a rectangle of a video element (fractions of its size), for checks.
  function sampleVideo(video, x0, y0, x1, y1) {
    const w = video.videoWidth, h = video.videoHeight;
    if (!w || !h) return null;
    const canvas = document.createElement("canvas");
    canvas.width = w; canvas.height = h;
    const ctx = canvas.getContext("2d");
    ctx.drawImage(video, 0, 0, w, h);
    const sx = Math.floor(x0 * w), sy = Math.floor(y0 * h);
    const sw = Math.max(1, Math.floor((x1 - x0) * w)), sh = Math.max(1, Math.floor((y1 - y0) * h));
    const data = ctx.getImageData(sx, sy, sw, sh).data;
    const sum = [0, 0, 0];
    for (let i = 0; i < data.length; i += 4) {
      sum[0] += data[i]; sum[1] += data[i + 1]; sum[2] += data[i + 2];
    }
    const n = data.length / 4;
    return { width: w, height: h, mean: sum.map((v) => v / n) };
  }

  const state = { status: "idle", error: null, stats: null, applied: null, session: null };
  window.streammatte = { connect, api, settingsFromUrl, sampleVideo, state, params };

  // ------------------------------------------------------------------ the /live page UI
  const ui = document.getElementById("sm-live-ui");
  if (!ui) return;

  const $ = (id) => document.getElementById(id);
  const original = $("original"), processed = $("processed");
  const engineSel = $("engine"), bgSel = $("background"), colour = $("colour");
  const upload = $("upload"), temporalSel = $("temporal"), refine = $("refine");
  const keepSmoothing = $("keep-smoothing");
  const startBtn = $("start"), statusEl = $("status"), overlay = $("overlay");
  let uploadedBackground = null;

  function setStatus(text, isError) {
    statusEl.textContent = text;
    statusEl.className = isError ? "error" : "";
    state.status = isError ? "error" : state.status;
    if (isError) state.error = text;
  }

  function fill(select, values, chosen) {
    select.innerHTML = "";
    for (const value of values) {
      const option = document.createElement("option");
      option.value = option.textContent = value;
      if (value === chosen) option.selected = true;
      select.appendChild(option);
    }
  }

  function currentBackground() {
    const kind = bgSel.value;
    if (kind === "blur") return "blur";
    if (kind === "colour") return colour.value;
    return uploadedBackground || "blur";
  }

  function currentSettings() {
    return {
      engine: engineSel.value,
      background: currentBackground(),
      temporal: temporalSel.value,
      keep_smoothing: keepSmoothing.checked,
      refine: refine.checked,
    };
  }

  function showStats(s) {
    state.stats = s;
    const lat = s.latency_ms || {};
    const fmt = (v) => (v === null || v === undefined ? "–" : v.toFixed(0));
    overlay.textContent =
      `${(s.fps || 0).toFixed(1)} fps · +${fmt(lat.p50)} ms (p95 ${fmt(lat.p95)}) · ` +
      `dropped ${s.dropped} of ${s.frames_in}` + (s.engine ? ` · ${s.engine}` : "") +
      // the server steps smoothing down while it falls behind: say so, and what runs instead
      (s.smoothing && s.settings && s.smoothing !== s.settings.temporal
        ? ` · smoothing ${s.smoothing} (${s.settings.temporal} shed to keep up)` : "") +
      (s.error ? ` · ${s.error}` : "");
  }

  async function init() {
    try {
      const config = await api("/api/live/config");
      const wanted = Object.assign({}, config.defaults, settingsFromUrl());
      fill(engineSel, config.engines, wanted.engine);
      fill(temporalSel, config.temporal, wanted.temporal);
      refine.checked = !!wanted.refine;
      keepSmoothing.checked = !!wanted.keep_smoothing;
      if (wanted.background === "blur") {
        bgSel.value = "blur";
      } else if (wanted.background.startsWith("#")) {
        bgSel.value = "colour"; colour.value = wanted.background;
      } else if (wanted.background.startsWith("upload:")) {
        bgSel.value = "upload"; uploadedBackground = wanted.background;
      } else {
        bgSel.value = "colour";
      }
      upload.hidden = bgSel.value !== "upload";
      colour.hidden = bgSel.value !== "colour";
    } catch (e) {
      setStatus("cannot reach the server: " + e.message, true);
      return;
    }
    if (params.get("autostart") === "1") start();
  }

  async function start() {
    if (state.session) {
      state.session.close();
      state.session = null;
      state.status = "idle";
      startBtn.textContent = "Start camera";
      setStatus("stopped");
      return;
    }
    state.status = "connecting";
    state.error = null;
    setStatus("connecting…");
    startBtn.disabled = true;
    try {
      state.session = await connect(currentSettings(), {
        onStream: (stream, camera) => {
          processed.srcObject = stream;
          original.srcObject = camera;
          state.status = "live";
          setStatus("live");
        },
        onMessage: (message) => {
          if (message.type === "stats") showStats(message);
          else if (message.type === "applied") { state.applied = message.settings; showStats(message); }
          else if (message.type === "error") setStatus(message.message, true);
        },
        onState: (s) => {
          if (s === "failed" || s === "closed") setStatus("connection " + s, s === "failed");
        },
      });
      startBtn.textContent = "Stop";
    } catch (e) {
      setStatus(e.message || String(e), true);
    } finally {
      startBtn.disabled = false;
    }
  }

  function apply() {
    if (state.session) state.session.send(currentSettings());
  }

  bgSel.addEventListener("change", () => {
    upload.hidden = bgSel.value !== "upload";
    colour.hidden = bgSel.value !== "colour";
    if (bgSel.value !== "upload" || uploadedBackground) apply();
  });
  colour.addEventListener("input", apply);
  engineSel.addEventListener("change", apply);
  temporalSel.addEventListener("change", apply);
  refine.addEventListener("change", apply);
  keepSmoothing.addEventListener("change", apply);
  upload.addEventListener("change", async () => {
    const file = upload.files && upload.files[0];
    if (!file) return;
    setStatus("uploading " + file.name + "…");
    try {
      const reply = await api("/api/live/backgrounds", { method: "POST", body: file });
      uploadedBackground = reply.background;
      setStatus(state.session ? "live" : "background ready");
      apply();
    } catch (e) {
      setStatus(e.message, true);
    }
  });
  startBtn.addEventListener("click", start);
  window.streammatte.start = start;
  window.streammatte.sampleProcessed = (x0, y0, x1, y1) => sampleVideo(processed, x0, y0, x1, y1);
  init();
})();
