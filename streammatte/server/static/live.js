// streammatte live: webcam → server over WebRTC → back with the background replaced.
// Shared by /live (with controls) and /obs (output only). No STUN/TURN unless the server
// configures one, so nothing leaves the machine by default. Needs common.js first.
"use strict";

(function () {
  const { api, engineNote, fillEngines, cameraProblem } = window.streammatteCommon;
  const params = new URLSearchParams(location.search);

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

  // "1280x720" → {width, height}; anything else → 640×480
  function parseSize(text) {
    const match = /^(\d+)x(\d+)$/.exec(text || "");
    return match ? { width: Number(match[1]), height: Number(match[2]) } : { width: 640, height: 480 };
  }

  function constraintsFor(camera) {
    const video = { width: { ideal: camera.width }, height: { ideal: camera.height } };
    if (camera.deviceId) video.deviceId = { exact: camera.deviceId };
    return { video, audio: false };
  }

  function cameraFromUrl() {
    return { deviceId: params.get("camera") || "", ...parseSize(params.get("size")) };
  }

  // Opens the camera, connects, and calls hooks.onStream(remoteStream, camera),
  // hooks.onMessage(msg), hooks.onState(connectionState). A camera error is thrown with
  // .camera = true, so a page can say what to do about it.
  async function connect(settings, hooks, camera) {
    camera = camera || cameraFromUrl();
    const config = await api("/api/live/config").then((r) => r.json());
    let stream;
    try {
      if (!navigator.mediaDevices || !navigator.mediaDevices.getUserMedia) {
        throw Object.assign(new Error("no camera API in this context"), { name: "InsecureContext" });
      }
      stream = await navigator.mediaDevices.getUserMedia(constraintsFor(camera));
    } catch (error) {
      error.camera = true;
      throw error;
    }
    const pc = new RTCPeerConnection({ iceServers: config.ice_servers || [] });
    const session = { pc, camera: stream, channel: null, config, closed: false };
    stream.getTracks().forEach((t) => pc.addTrack(t, stream));
    const channel = pc.createDataChannel("control");
    session.channel = channel;
    channel.onmessage = (event) => {
      let message;
      try { message = JSON.parse(event.data); } catch (e) { return; }
      if (hooks.onMessage) hooks.onMessage(message);
    };
    pc.ontrack = (event) => {
      const remote = event.streams && event.streams[0] ? event.streams[0]
        : new MediaStream([event.track]);
      if (hooks.onStream) hooks.onStream(remote, session.camera);
    };
    pc.onconnectionstatechange = () => {
      if (hooks.onState) hooks.onState(pc.connectionState);
    };
    session.send = (changes) => {
      if (channel.readyState === "open") {
        channel.send(JSON.stringify({ type: "settings", settings: changes }));
      }
    };
    // another camera or size, without reconnecting: the sender's track is swapped
    session.replaceCamera = async (wanted) => {
      const next = await navigator.mediaDevices.getUserMedia(constraintsFor(wanted));
      const sender = pc.getSenders().find((s) => s.track && s.track.kind === "video");
      await sender.replaceTrack(next.getVideoTracks()[0]);
      session.camera.getTracks().forEach((t) => t.stop());
      session.camera = next;
      return next;
    };
    session.close = () => {
      session.closed = true;
      session.camera.getTracks().forEach((t) => t.stop());
      pc.close();
    };
    try {
      await pc.setLocalDescription(await pc.createOffer());
      await waitIceGathering(pc);
      const answer = await api("/api/offer", {
        method: "POST",
        headers: { "Content-Type": "application/json" },
        body: JSON.stringify({ sdp: pc.localDescription.sdp, type: "offer", settings }),
      }).then((r) => r.json());
      session.peer = answer.peer;
      await pc.setRemoteDescription({ sdp: answer.sdp, type: answer.type });
    } catch (error) {
      session.close();
      throw error;
    }
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
  window.streammatte = { connect, api, settingsFromUrl, sampleVideo, state, params, cameraProblem };

  // ------------------------------------------------------------------ the /live page UI
  const ui = document.getElementById("sm-live-ui");
  if (!ui) return;

  const $ = (id) => document.getElementById(id);
  const original = $("original"), processed = $("processed");
  const engineSel = $("engine"), bgSel = $("background"), colour = $("colour");
  const upload = $("upload"), temporalSel = $("temporal"), refine = $("refine");
  const keepSmoothing = $("keep-smoothing"), cameraSel = $("camera"), sizeSel = $("resolution");
  const startBtn = $("start"), statusEl = $("status");
  let uploadedBackground = null;
  let engines = [];

  function setStatus(text, isError) {
    statusEl.textContent = text;
    statusEl.classList.toggle("error", !!isError);
  }

  function setPhase(phase) {
    state.status = phase;
    document.body.dataset.state = phase;
    const live = phase === "live";
    $("live-view").hidden = !live;
    $("placeholder").hidden = live || phase === "error";
    startBtn.textContent = state.session ? "Stop camera" : "Start camera";
  }

  function showProblem(title, text) {
    state.error = title + ": " + text;
    $("live-error-title").textContent = title;
    $("live-error-text").textContent = text;
    $("live-error").hidden = false;
    setStatus("Not started");
    setPhase("error");
  }

  function fill(select, values, chosen) {
    select.textContent = "";
    for (const value of values) {
      select.add(new Option(value, value, false, value === chosen));
    }
  }

  function wantedCamera() {
    return { deviceId: cameraSel.value, ...parseSize(sizeSel.value) };
  }

  // The cameras the browser knows; their names only show once the camera is allowed.
  async function listCameras() {
    if (!navigator.mediaDevices || !navigator.mediaDevices.enumerateDevices) return;
    const devices = (await navigator.mediaDevices.enumerateDevices())
      .filter((d) => d.kind === "videoinput");
    const chosen = cameraSel.value;
    cameraSel.textContent = "";
    cameraSel.add(new Option("The browser's default camera", ""));
    devices.forEach((d, i) => {
      if (!d.deviceId) return;
      cameraSel.add(new Option(d.label || "Camera " + (i + 1), d.deviceId, false, d.deviceId === chosen));
    });
  }

  function showCamera(stream) {
    const track = stream.getVideoTracks()[0];
    const info = track ? track.getSettings() : {};
    if (info.deviceId && [...cameraSel.options].some((o) => o.value === info.deviceId)) {
      cameraSel.value = info.deviceId;
    }
    $("camera-size").textContent = info.width ? "· " + info.width + " × " + info.height : "";
    if (info.width && info.height) {
      ui.querySelector(".live-view").style.setProperty("--ar", info.width + " / " + info.height);
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

  function figure(id, value, unit, title) {
    const dd = $(id);
    dd.textContent = value;
    if (unit) {
      const small = document.createElement("small");
      small.textContent = unit;
      dd.appendChild(small);
    }
    $(id + "-box").title = title;
  }

  // Three figures a person can read at a glance; the details are in their tooltips.
  function showStats(s) {
    state.stats = s;
    const lat = s.latency_ms || {};
    const ms = (v) => (v === null || v === undefined ? "–" : Math.round(v) + " ms");
    const engine = s.engine || (s.settings && s.settings.engine) || "";
    figure("stat-fps", (s.fps || 0).toFixed(1), "fps",
      "Frames sent back per second over the last 2 s. " + s.frames_out + " frames sent back so far" +
      (engine ? "; engine: " + engine : "") + ".");
    figure("stat-latency", lat.p50 == null ? "–" : "+" + Math.round(lat.p50), lat.p50 == null ? "" : "ms",
      "Median time from the server receiving a frame to sending it back, over the last 300 " +
      "frames. 95th percentile " + ms(lat.p95) + ", last frame " + ms(lat.last) + ". The network " +
      "and the video codecs are not included.");
    const share = s.frames_in ? (100 * s.dropped) / s.frames_in : 0;
    figure("stat-dropped", share < 10 && share > 0 ? share.toFixed(1) : Math.round(share), "%",
      s.dropped + " of " + s.frames_in + " frames dropped. The newest frame wins: while the " +
      "engine is busy, a frame that arrives replaces the waiting one instead of queueing, so " +
      "the delay stays short.");
    $("engine-running").textContent = s.engine ? "· " + s.engine.split(" (")[0] : "";
    // the server steps smoothing down while it falls behind: say so, and what runs instead
    const note = $("smoothing-note");
    const shed = s.smoothing && s.settings && s.smoothing !== s.settings.temporal;
    note.hidden = !shed;
    note.textContent = shed ? "Smoothing " + s.smoothing + " (" + s.settings.temporal +
      " shed to keep up with the camera). Tick Keep smoothing under load to keep " +
      s.settings.temporal + " whatever it costs." : "";
    if (s.error) setStatus("The server could not process a frame: " + s.error, true);
  }

  async function loadEngines(config, chosen) {
    let described = [];
    try {
      described = (await api("/api/engines").then((r) => r.json())).engines;
    } catch (_) { /* a live-only server has no /api/engines: plain names */ }
    engines = config.engines.map((name) => described.find((e) => e.name === name) || { name });
    fillEngines(engineSel, engines, chosen);
    showEngineNote();
  }

  function showEngineNote() {
    const engine = engines.find((e) => e.name === engineSel.value);
    $("engine-note").textContent = engine && engine.title ? engineNote(engine) : "";
  }

  async function init() {
    try {
      const config = await api("/api/live/config").then((r) => r.json());
      const wanted = Object.assign({}, config.defaults, settingsFromUrl());
      await loadEngines(config, wanted.engine);
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
      const size = params.get("size");
      if (size && ![...sizeSel.options].some((o) => o.value === size)) {
        sizeSel.add(new Option(size.replace("x", " × "), size));
      }
      if (size) sizeSel.value = size;
      await listCameras();
      if (params.get("camera")) {
        if (![...cameraSel.options].some((o) => o.value === params.get("camera"))) {
          cameraSel.add(new Option("The camera in the address", params.get("camera")));
        }
        cameraSel.value = params.get("camera");
      }
    } catch (e) {
      showProblem("Cannot reach the server", e.message);
      return;
    }
    setPhase("idle");
    setStatus("Not started");
    if (params.get("autostart") === "1") start();
  }

  function stop() {
    if (state.session) state.session.close();
    state.session = null;
    original.srcObject = null;
    processed.srcObject = null;
    setStatus("Stopped");
    setPhase("idle");
  }

  async function start() {
    if (state.session) return stop();
    state.error = null;
    $("live-error").hidden = true;
    setPhase("connecting");
    setStatus("Connecting…");
    startBtn.disabled = true;
    const wanted = wantedCamera();
    try {
      state.session = await connect(currentSettings(), {
        onStream: (stream, camera) => {
          processed.srcObject = stream;
          original.srcObject = camera;
          showCamera(camera);
          setStatus("Live");
          setPhase("live");
        },
        onMessage: (message) => {
          if (message.type === "stats") showStats(message);
          else if (message.type === "applied") { state.applied = message.settings; showStats(message); }
          else if (message.type === "error") setStatus(message.message, true);
        },
        onState: (s) => {
          if (s === "failed") {
            stop();
            showProblem("The connection to the server was lost", "Press Start camera to connect again.");
          }
        },
      }, wanted);
      setPhase(state.status === "live" ? "live" : "connecting");
      listCameras().then(() => showCamera(state.session.camera)).catch(() => undefined);
    } catch (e) {
      state.session = null;
      if (e.camera) {
        const problem = cameraProblem(e, sizeSel.selectedOptions[0] && sizeSel.value.replace("x", " × "));
        showProblem(problem.title, problem.text);
      } else {
        showProblem("The server did not start the session", e.message || String(e));
      }
    } finally {
      startBtn.disabled = false;
      startBtn.textContent = state.session ? "Stop camera" : "Start camera";
    }
  }

  function apply() {
    if (state.session) state.session.send(currentSettings());
  }

  async function switchCamera() {
    if (!state.session) return;
    try {
      const stream = await state.session.replaceCamera(wantedCamera());
      original.srcObject = stream;
      showCamera(stream);
      setStatus("Live");
    } catch (e) {
      const problem = cameraProblem(e, sizeSel.value.replace("x", " × "));
      setStatus(problem.title + ". " + problem.text, true);
    }
  }

  bgSel.addEventListener("change", () => {
    upload.hidden = bgSel.value !== "upload";
    colour.hidden = bgSel.value !== "colour";
    if (bgSel.value === "upload" && !uploadedBackground) upload.click();
    if (bgSel.value !== "upload" || uploadedBackground) apply();
  });
  colour.addEventListener("input", apply);
  engineSel.addEventListener("change", () => { showEngineNote(); apply(); });
  temporalSel.addEventListener("change", apply);
  refine.addEventListener("change", apply);
  keepSmoothing.addEventListener("change", apply);
  cameraSel.addEventListener("change", switchCamera);
  sizeSel.addEventListener("change", switchCamera);
  if (navigator.mediaDevices && navigator.mediaDevices.addEventListener) {
    navigator.mediaDevices.addEventListener("devicechange", () => listCameras().catch(() => undefined));
  }
  upload.addEventListener("change", async () => {
    const file = upload.files && upload.files[0];
    if (!file) return;
    setStatus("Uploading " + file.name + "…");
    try {
      const reply = await api("/api/live/backgrounds", { method: "POST", body: file }).then((r) => r.json());
      uploadedBackground = reply.background;
      setStatus(state.session ? "Live" : "Background ready");
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
