// streammatte page: pick or drop a file, send it to the server, show and download the result.
// A picture runs the engine once (POST /api/mattes); a new background, format or "matte alone"
// only composes the kept matte again. A clip runs as a job with progress.
// Plain ES2020, no build step, no third-party code.
"use strict";

const $ = (id) => document.getElementById(id);
const { api, fillEngines, engineNote } = window.streammatteCommon;
const VIDEO_EXTENSIONS = ["mp4", "mov", "webm", "avi", "mkv", "m4v"];
const CONTAINERS = { ".webm": "WebM", ".mp4": "MP4", ".mov": "MOV", ".zip": "PNG frames (zip)" };

const state = {
  file: null,
  kind: null,            // "image" | "video"
  engines: [],
  formats: {},           // video format name → {description, extension, alpha}
  defaultEngine: null,
  matte: null,           // the kept matte of the current picture (POST /api/mattes)
  jobId: null,
  poll: null,
  resultUrl: null,       // object URL of the composed picture
  originalUrl: null,
  originalPlays: null,   // can this browser play the original clip? null: not known yet
  busy: false,
  zoom: "fit",
  composeSerial: 0,
};
window.streammattePage = state;

function setState(name) {
  document.body.dataset.state = name;
}

function formatSeconds(s) {
  if (s == null || !isFinite(s)) return "–";
  if (s < 60) return (s < 10 ? s.toFixed(1) : Math.round(s)) + " s";
  const m = Math.floor(s / 60);
  const rest = Math.round(s % 60);
  return m + " min" + (rest ? " " + String(rest).padStart(2, "0") + " s" : "");
}

function kindOf(file) {
  if (file.type.startsWith("video/")) return "video";
  if (file.type.startsWith("image/")) return "image";
  const ext = file.name.split(".").pop().toLowerCase();
  return VIDEO_EXTENSIONS.includes(ext) ? "video" : "image";
}

function fileSize(bytes) {
  return bytes < 1e6 ? Math.max(1, Math.round(bytes / 1e3)) + " KB" : (bytes / 1e6).toFixed(1) + " MB";
}

function extensionOf(name) {
  const dot = name.lastIndexOf(".");
  return dot < 0 ? "" : name.slice(dot + 1).toUpperCase();
}

function backgroundValue() {
  const value = $("background").value;
  if (value === "custom") return $("custom-colour").value;
  if (value === "picture") return "auto";
  return value;
}

function backgroundPicture() {
  return $("background").value === "picture" ? $("background-file").files[0] || null : null;
}

// -- problems, shown in place of the result --------------------------------------------------

const PROBLEMS = {
  0: ["The server did not answer", true],
  400: ["These settings do not work together", true, "Change a setting above and try again."],
  401: ["This server needs its token", false,
    "Open the address that streammatte serve printed; it ends in ?token=…"],
  404: ["The result is gone from the server", true, "Results are removed after a while."],
  409: ["The result is not ready", true],
  413: ["This file is too large for this server", false,
    "Choose a smaller file, or start the server with higher limits."],
  415: ["This file is not a picture or a video this page can use", false,
    "Choose a JPG, PNG or WebP picture, or an MP4, MOV, WebM or AVI clip."],
  422: ["This file cannot be read", false, "It may be damaged or cut short. Choose another file."],
  503: ["The server is busy", true, "Wait a moment and try again."],
};

function showProblem(title, text, canRetry, hint) {
  stopPolling();
  setBusy(false);
  $("problem-title").textContent = title;
  $("problem-text").textContent = text;
  $("problem-hint").textContent = hint || "";
  $("problem-hint").hidden = !hint;
  $("problem-retry").hidden = !canRetry || !state.file;
  $("problem").hidden = false;
  $("work").hidden = true;
  $("download").hidden = true;
  $("again").disabled = true;
  setState("error");
}

function showError(error) {
  const [title, canRetry, hint] = PROBLEMS[error.status] || ["Something went wrong", true];
  showProblem(title, error.message, canRetry, hint);
}

function clearProblem() {
  $("problem").hidden = true;
}

// -- settings ---------------------------------------------------------------------------------

async function loadSettings() {
  const [info, engines] = await Promise.all([
    api("/api/info").then((r) => r.json()),
    api("/api/engines").then((r) => r.json()),
  ]);
  state.engines = engines.engines;
  state.defaultEngine = engines.default;
  fillEngines($("engine"), engines.engines, engines.default);
  showEngineNote();
  for (const f of info.video_formats) {
    state.formats[f.name] = f;
    $("video-format").add(new Option(f.description, f.name));
  }
  for (const t of info.temporal) {
    $("temporal").add(new Option(t, t));
  }
  $("temporal").value = info.default_temporal;
  const mb = (info.limits.max_upload_bytes / 1e6).toFixed(0);
  $("limits").textContent = " · up to " + mb + " MB, clips up to " +
    formatSeconds(info.limits.max_video_duration_s);
  if (info.extensions && info.extensions["streammatte.server.live"] === "installed") {
    $("live-link").hidden = false;
  }
}

function selectedEngine() {
  return state.engines.find((e) => e.name === $("engine").value) || null;
}

function showEngineNote() {
  const engine = selectedEngine();
  $("engine-note").textContent = engine ? engineNote(engine) : "";
}

// A video-only engine (MOG2 learns the background over frames) cannot take a picture.
function fitEnginesToKind() {
  for (const option of $("engine").options) {
    const engine = state.engines.find((e) => e.name === option.value);
    option.disabled = state.kind === "image" && !!(engine && engine.video_only);
  }
  if ($("engine").selectedOptions[0] && $("engine").selectedOptions[0].disabled) {
    $("engine").value = state.defaultEngine;
    showEngineNote();
  }
}

// -- choosing a file ----------------------------------------------------------------------------

function showOriginal(file) {
  if (state.originalUrl) URL.revokeObjectURL(state.originalUrl);
  state.originalUrl = URL.createObjectURL(file);
  $("file-facts").textContent = file.name + " · " + fileSize(file.size);
  const video = $("original-video");
  if (state.kind === "image") {
    $("original-image").src = state.originalUrl;
    video.removeAttribute("src");
    video.removeAttribute("poster");
    video.load();
    return;
  }
  $("original-image").removeAttribute("src");
  state.originalPlays = null;
  $("video-view").style.setProperty("--ar", "16 / 9");
  $("original-poster").hidden = true;
  $("original-poster").removeAttribute("src");
  $("original-note").hidden = true;
  video.hidden = false;
  video.removeAttribute("poster");
  video.src = state.originalUrl;
}

function onOriginalMetadata() {
  const video = $("original-video");
  state.originalPlays = true;
  if (video.videoWidth && video.videoHeight) {
    $("video-view").style.setProperty("--ar", video.videoWidth + " / " + video.videoHeight);
  }
}

// The browser cannot play this clip (AVI, for one): show the server's poster frame instead of
// a black 0:00 player, and say why.
function onOriginalError() {
  if (state.kind !== "video" || !state.file) return;
  state.originalPlays = false;
  $("original-video").hidden = true;
  const note = $("original-note");
  note.hidden = false;
  note.textContent = "This browser cannot play " + (extensionOf(state.file.name) || "this clip") +
    (state.jobId ? ": a frame from the server is shown." : ". A frame will show once it is uploaded.");
  showPoster();
}

function showPoster() {
  if (state.originalPlays !== false || !state.jobId) return;
  const poster = $("original-poster");
  poster.src = "/api/jobs/" + state.jobId + "/poster";
  poster.hidden = false;
  $("original-note").textContent = "This browser cannot play " + extensionOf(state.file.name) +
    ": a frame from the server is shown.";
}

function showClipFacts(media, framesTotal) {
  if (!media) return;
  if (media.width && media.height) {
    $("video-view").style.setProperty("--ar", media.width + " / " + media.height);
  }
  const parts = [extensionOf(state.file.name) || media.container.toUpperCase(),
    media.width + "×" + media.height];
  if (media.frame_rate) parts.push((Math.round(media.frame_rate * 100) / 100) + " fps");
  if (media.duration_s) parts.push(formatSeconds(media.duration_s));
  if (framesTotal) parts.push(framesTotal + " frames");
  $("clip-facts").textContent = parts.join(" · ");
}

function chooseFile(file) {
  if (!file) return;
  state.file = file;
  state.kind = kindOf(file);
  state.matte = null;
  document.body.dataset.kind = state.kind;
  $("drop-zone").classList.add("compact");
  fitEnginesToKind();
  showOriginal(file);
  process();
}

// -- processing ---------------------------------------------------------------------------------

function clearResult() {
  stopPolling();
  if (state.resultUrl) URL.revokeObjectURL(state.resultUrl);
  state.resultUrl = null;
  const img = $("result-image");
  img.hidden = true;
  img.removeAttribute("src");
  const video = $("result-video");
  video.hidden = true;
  video.removeAttribute("src");
  video.load();
  $("result-note").hidden = true;
  $("download").hidden = true;
  $("result-info").textContent = "";
  $("result-info").removeAttribute("title");
  $("clip-facts").textContent = "";
  setCompare(false);
}

async function forgetJob() {
  if (!state.jobId) return;
  const id = state.jobId;
  state.jobId = null;
  try {
    await api("/api/jobs/" + id, { method: "DELETE" });
  } catch (_) { /* already expired: nothing to remove */ }
}

function setBusy(busy, message) {
  state.busy = busy;
  $("again").disabled = busy || !state.file;
  const progress = $("progress");
  progress.hidden = !busy;
  if (busy) {
    // over the picture, or over the result clip
    (state.kind === "image" ? $("viewport") : $("result-frame")).appendChild(progress);
    $("progress-bar").removeAttribute("value");
    $("status").textContent = message || "";
    $("cancel").hidden = state.kind !== "video";
  }
}

async function process() {
  if (!state.file || state.busy) return;
  clearProblem();
  clearResult();
  await forgetJob();
  $("work").hidden = false;
  setBusy(true, "Uploading…");
  setState("uploading");
  try {
    if (state.kind === "image") {
      await runMatte();
    } else {
      await startVideo();
    }
  } catch (error) {
    showError(error);
  }
}

// The engine runs once per picture (and engine, and refine setting); the matte is kept.
async function runMatte() {
  const form = new FormData();
  form.append("engine", $("engine").value);
  form.append("refine", $("refine").checked ? "true" : "false");
  form.append("file", state.file, state.file.name);
  setBusy(true, "Removing the background with " + $("engine").value + "…");
  setState("processing");
  const response = await api("/api/mattes", { method: "POST", body: form });
  state.matte = await response.json();
  $("file-facts").textContent = state.file.name + " · " + state.matte.width + "×" +
    state.matte.height + " · " + fileSize(state.file.size);
  await compose();
}

function matteIsCurrent() {
  return state.matte && state.matte.engine === $("engine").value &&
    state.matte.refine === $("refine").checked;
}

// Compose the kept matte with the chosen background and format: no model run.
async function compose() {
  const serial = ++state.composeSerial;
  const started = performance.now();
  const params = new URLSearchParams({
    format: $("image-format").value,
    only_mask: $("only-mask").checked ? "true" : "false",
  });
  const picture = backgroundPicture();
  if (!picture) params.set("background", backgroundValue());
  setState("composing");
  let response;
  try {
    response = await api(state.matte.composite_url + "?" + params, picture
      ? { method: "POST", body: picture } : {});
  } catch (error) {
    if (error.status === 404 && state.file) {
      state.matte = null;  // expired on the server: run the engine again
      return runMatte();
    }
    throw error;
  }
  const blob = await response.blob();
  if (serial !== state.composeSerial) return;  // a newer choice is on its way
  if (state.resultUrl) URL.revokeObjectURL(state.resultUrl);
  state.resultUrl = URL.createObjectURL(blob);
  const img = $("result-image");
  img.src = state.resultUrl;
  await img.decode().catch(() => undefined);
  img.hidden = false;
  applyZoom();
  setCompare(true);
  // two tags side by side need room; a small picture goes without them
  $("stage").classList.toggle("narrow", img.getBoundingClientRect().width < 240);
  const name = /filename="([^"]+)"/.exec(response.headers.get("Content-Disposition") || "");
  const download = $("download");
  download.href = state.resultUrl;
  download.download = name ? name[1] : "result.png";
  download.textContent = "Download " + ({ png: "PNG", webp: "WebP", jpeg: "JPEG" })[$("image-format").value] +
    ($("only-mask").checked ? " (the matte)" : $("image-format").value !== "jpeg" && backgroundValue() === "auto" &&
      !picture ? " (transparent)" : "");
  download.hidden = false;
  const m = state.matte;
  const composed = (performance.now() - started) / 1000;
  $("result-info").textContent = m.engine + " · " + m.device.toUpperCase() + " · " +
    m.elapsed_s.toFixed(1) + " s";
  $("result-info").title = m.engine_detail + "; the engine took " + m.elapsed_s.toFixed(2) +
    " s on the server. The last background took " + composed.toFixed(2) +
    " s: the kept matte was composed again, the engine did not run.";
  setBusy(false);
  setState("done");
}

async function startVideo() {
  const form = new FormData();
  form.append("engine", $("engine").value);
  const picture = backgroundPicture();
  if (picture) form.append("background_file", picture, picture.name);
  else form.append("background", backgroundValue());
  form.append("refine", $("refine").checked ? "true" : "false");
  form.append("format", $("video-format").value);
  form.append("temporal", $("temporal").value);
  form.append("file", state.file, state.file.name);
  const response = await api("/api/jobs", { method: "POST", body: form });
  const job = await response.json();
  state.jobId = job.id;
  showClipFacts(job.media, job.frames_total);
  if (state.originalPlays === false) showPoster();
  setState("processing");
  showJob(job);
  state.poll = setInterval(pollJob, 500);
}

function stopPolling() {
  if (state.poll) clearInterval(state.poll);
  state.poll = null;
}

async function pollJob() {
  if (!state.jobId) return stopPolling();
  try {
    const job = await (await api("/api/jobs/" + state.jobId)).json();
    showJob(job);
  } catch (error) {
    showError(error);
  }
}

function showJob(job) {
  const bar = $("progress-bar");
  if (job.progress == null) bar.removeAttribute("value"); else bar.value = job.progress;
  const status = $("status");
  if (job.state === "queued") {
    status.textContent = "Waiting for a free slot (position " + (job.queue_position || "?") + ")…";
  } else if (job.state === "running") {
    const pct = job.progress == null ? "" : Math.floor(job.progress * 100) + " % · ";
    status.textContent = pct + job.frames_done + (job.frames_total ? " / " + job.frames_total : "") +
      " frames · " + job.fps.toFixed(1) + " fps · " + formatSeconds(job.eta_s) + " left";
  } else if (job.state === "done") {
    stopPolling();
    setBusy(false);
    showVideoResult(job);
  } else if (job.state === "failed") {
    showProblem("Processing stopped", job.error || "The job failed.", true);
  } else if (job.state === "cancelled") {
    showProblem("Cancelled", "Nothing was kept.", true);
  }
}

// "WebM (with alpha)", "MP4", "PNG frames (zip)": what the file is, not how it is coded.
function containerLabel(format, background) {
  const f = state.formats[format] || { extension: "", alpha: false };
  const name = CONTAINERS[f.extension] || f.extension.replace(".", "").toUpperCase();
  if (f.extension === ".zip") return name;
  if (format === "matte") return name + " (the matte)";
  const transparent = ["auto", "transparent", "none", "alpha"].includes(background);
  return name + (f.alpha && transparent ? " (with alpha)" : "");
}

function showVideoResult(job) {
  const format = job.options.format;
  const label = containerLabel(format, job.options.background);
  const video = $("result-video");
  const note = $("result-note");
  if (format === "png") {
    note.textContent = "PNG frames in a zip: nothing to play here. Download them below.";
    note.hidden = false;
  } else {
    video.hidden = false;
    video.src = job.result_url + "?inline=1";
    video.play().catch(() => undefined);
  }
  const download = $("download");
  download.href = job.result_url;
  download.removeAttribute("download");  // the server names the file (Content-Disposition)
  download.textContent = "Download " + label;
  download.title = (state.formats[format] || {}).description || "";
  download.hidden = false;
  const notes = job.notes && job.notes.length ? " · " + job.notes.join("; ") : "";
  $("result-info").textContent = job.options.engine + " · " + job.frames_done + " frames · " +
    formatSeconds(job.elapsed_s) + " · " + job.fps.toFixed(1) + " fps" + notes;
  setState("done");
}

function onResultError() {
  if (state.kind !== "video" || !state.jobId || $("result-video").hidden) return;
  $("result-video").hidden = true;
  const note = $("result-note");
  note.textContent = "This browser cannot play " + $("download").textContent.replace("Download ", "") +
    ". Download it to watch it.";
  note.hidden = false;
}

async function cancelJob() {
  stopPolling();
  await forgetJob();
  showProblem("Cancelled", "Nothing was kept.", true);
}

function reset() {
  clearResult();
  clearProblem();
  forgetJob();
  if (state.matte) {
    api("/api/mattes/" + state.matte.id, { method: "DELETE" }).catch(() => undefined);
  }
  state.matte = null;
  state.file = null;
  setBusy(false);
  $("work").hidden = true;
  $("drop-zone").classList.remove("compact");
  $("file-input").value = "";
  setState("ready");
}

// A setting changed. On a finished picture it applies at once: a new background, format or
// "matte alone" composes the kept matte again; another engine or refine runs the engine again.
async function settingChanged() {
  if (state.kind !== "image" || !state.matte || state.busy) return;
  if ($("background").value === "picture" && !backgroundPicture()) return;
  clearProblem();
  $("work").hidden = false;
  try {
    if (matteIsCurrent()) {
      await compose();
    } else {
      setBusy(true);
      await runMatte();
    }
  } catch (error) {
    showError(error);
  }
}

// -- before / after and zoom --------------------------------------------------------------

function setCompare(on) {
  const stage = $("stage");
  stage.dataset.compare = on ? "on" : "off";
  $("compare").disabled = !on;
  for (const button of document.querySelectorAll("[data-zoom]")) button.disabled = !on;
  $("original-image").hidden = false;
  // before a result exists the whole picture is the original
  stage.style.setProperty("--pos", on ? $("compare").value + "%" : "100%");
  if (!on) $("result-image").hidden = true;
}

function setPosition(percent) {
  const value = Math.max(0, Math.min(100, Math.round(percent)));
  $("compare").value = value;
  $("compare").setAttribute("aria-valuetext", value + " % original, " + (100 - value) + " % result");
  $("stage").style.setProperty("--pos", value + "%");
  // a tag over a side that is not shown would mislabel the picture
  $("stage").querySelector(".before-tag").hidden = value < 10;
  $("stage").querySelector(".after-tag").hidden = value > 90;
}

function applyZoom() {
  const img = $("result-image");
  $("viewport").dataset.zoom = state.zoom;
  if (state.zoom === "fit" || !img.naturalWidth) {
    img.style.width = "";
  } else {
    img.style.width = img.naturalWidth * Number(state.zoom) + "px";
  }
  for (const button of document.querySelectorAll("[data-zoom]")) {
    button.setAttribute("aria-pressed", String(button.dataset.zoom === state.zoom));
  }
}

function wireCompare() {
  const stage = $("stage");
  $("compare").addEventListener("input", () => setPosition(Number($("compare").value)));
  const follow = (event) => {
    const box = stage.getBoundingClientRect();
    setPosition(((event.clientX - box.left) / box.width) * 100);
  };
  stage.addEventListener("pointerdown", (event) => {
    if (stage.dataset.compare !== "on") return;
    stage.setPointerCapture(event.pointerId);
    follow(event);
  });
  stage.addEventListener("pointermove", (event) => {
    if (stage.hasPointerCapture(event.pointerId)) follow(event);
  });
  for (const button of document.querySelectorAll("[data-zoom]")) {
    button.addEventListener("click", () => {
      state.zoom = button.dataset.zoom;
      applyZoom();
    });
  }
}

// -- wiring -------------------------------------------------------------------------------------

function wire() {
  const zone = $("drop-zone");
  const input = $("file-input");
  input.addEventListener("change", () => chooseFile(input.files[0]));
  $("choose").addEventListener("click", (event) => {
    event.stopPropagation();
    input.click();
  });
  zone.addEventListener("click", () => input.click());
  for (const name of ["dragenter", "dragover"]) {
    zone.addEventListener(name, (event) => { event.preventDefault(); zone.classList.add("over"); });
  }
  for (const name of ["dragleave", "drop"]) {
    zone.addEventListener(name, () => zone.classList.remove("over"));
  }
  zone.addEventListener("drop", (event) => {
    event.preventDefault();
    chooseFile(event.dataTransfer.files[0]);
  });
  // a file dropped beside the zone should not make the browser navigate away
  window.addEventListener("dragover", (event) => event.preventDefault());
  window.addEventListener("drop", (event) => event.preventDefault());

  $("engine").addEventListener("change", () => { showEngineNote(); settingChanged(); });
  $("background").addEventListener("change", () => {
    const value = $("background").value;
    $("custom-colour").hidden = value !== "custom";
    $("background-file").hidden = value !== "picture";
    if (value === "picture" && !$("background-file").files.length) {
      $("background-file").click();
    }
    settingChanged();
  });
  for (const id of ["custom-colour", "background-file", "image-format", "only-mask", "refine"]) {
    $(id).addEventListener("change", settingChanged);
  }
  $("original-video").addEventListener("loadedmetadata", onOriginalMetadata);
  $("original-video").addEventListener("error", onOriginalError);
  $("result-video").addEventListener("error", onResultError);
  $("again").addEventListener("click", process);
  $("cancel").addEventListener("click", cancelJob);
  $("reset").addEventListener("click", reset);
  $("problem-retry").addEventListener("click", process);
  $("problem-other").addEventListener("click", () => { reset(); input.click(); });
  wireCompare();
  window.addEventListener("pagehide", () => { if (state.jobId && state.busy) forgetJob(); });
}

wire();
loadSettings().then(() => setState("ready")).catch(showError);
