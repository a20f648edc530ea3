// streammatte page: pick or drop a file, send it to the HTTP API, show and download the result.
// Plain ES2020, no build step, no third-party code.
"use strict";

const $ = (id) => document.getElementById(id);
const VIDEO_EXTENSIONS = ["mp4", "mov", "webm", "avi", "mkv", "m4v"];

// The token arrives once in the URL the server printed; keep it for this tab and take it out
// of the address bar so it is not shared by accident.
const TOKEN = (() => {
  const params = new URLSearchParams(location.search);
  const fromUrl = params.get("token");
  if (fromUrl) {
    sessionStorage.setItem("streammatte-token", fromUrl);
    params.delete("token");
    const rest = params.toString();
    history.replaceState(null, "", location.pathname + (rest ? "?" + rest : ""));
    return fromUrl;
  }
  return sessionStorage.getItem("streammatte-token");
})();

const state = {
  file: null,
  kind: null,          // "image" | "video"
  jobId: null,
  poll: null,
  resultUrl: null,     // object URL of an image result
  originalUrl: null,
  busy: false,
};

function setState(name) {
  document.body.dataset.state = name;
}

function withToken(url) {
  if (!TOKEN) return url;
  return url + (url.includes("?") ? "&" : "?") + "token=" + encodeURIComponent(TOKEN);
}

async function api(path, options = {}) {
  const headers = new Headers(options.headers || {});
  if (TOKEN) headers.set("Authorization", "Bearer " + TOKEN);
  const response = await fetch(path, { ...options, headers });
  if (!response.ok) {
    let message = response.status + " " + response.statusText;
    try {
      const body = await response.json();
      if (body.error) message = body.error;
    } catch (_) { /* not JSON: keep the status line */ }
    const error = new Error(message);
    error.status = response.status;
    throw error;
  }
  return response;
}

function showError(message) {
  const box = $("error");
  box.textContent = message;
  box.hidden = !message;
  if (message) setState("error");
}

function formatSeconds(s) {
  if (s == null || !isFinite(s)) return "–";
  if (s < 60) return Math.round(s) + " s";
  const m = Math.floor(s / 60);
  return m + " min " + String(Math.round(s % 60)).padStart(2, "0") + " s";
}

function kindOf(file) {
  if (file.type.startsWith("video/")) return "video";
  if (file.type.startsWith("image/")) return "image";
  const ext = file.name.split(".").pop().toLowerCase();
  return VIDEO_EXTENSIONS.includes(ext) ? "video" : "image";
}

function background() {
  const value = $("background").value;
  return value === "custom" ? $("custom-colour").value : value;
}

function options() {
  const form = new FormData();
  form.append("engine", $("engine").value);
  const picture = $("background").value === "picture" ? $("background-file").files[0] : null;
  if (picture) form.append("background_file", picture, picture.name);
  else form.append("background", $("background").value === "picture" ? "auto" : background());
  form.append("refine", $("refine").checked ? "true" : "false");
  if (state.kind === "image") {
    form.append("format", $("image-format").value);
    form.append("only_mask", $("only-mask").checked ? "true" : "false");
  } else {
    form.append("format", $("video-format").value);
    form.append("temporal", $("temporal").value);
  }
  return form;
}

// -- loading the settings ----------------------------------------------------------------------

async function loadSettings() {
  const [info, engines] = await Promise.all([
    api("/api/info").then((r) => r.json()),
    api("/api/engines").then((r) => r.json()),
  ]);
  const engineSelect = $("engine");
  for (const e of engines.engines) {
    const option = new Option(e.name + " — " + e.title + (e.cached ? "" : " (downloads on first use)"), e.name);
    option.dataset.videoOnly = e.video_only ? "1" : "";
    option.selected = e.name === engines.default;
    engineSelect.add(option);
  }
  for (const f of info.video_formats) {
    $("video-format").add(new Option(f.description, f.name));
  }
  for (const t of info.temporal) {
    $("temporal").add(new Option(t, t));
  }
  $("temporal").value = info.default_temporal;
  const mb = (info.limits.max_upload_bytes / 1e6).toFixed(0);
  $("limits").textContent = " · up to " + mb + " MB, videos up to " +
    formatSeconds(info.limits.max_video_duration_s);
  if (info.extensions && info.extensions["streammatte.server.live"] === "installed") {
    $("live-link").hidden = false;
  }
}

// -- choosing a file -----------------------------------------------------------------------------

function showOriginal(file) {
  if (state.originalUrl) URL.revokeObjectURL(state.originalUrl);
  state.originalUrl = URL.createObjectURL(file);
  const img = $("original-image");
  const video = $("original-video");
  img.hidden = state.kind !== "image";
  video.hidden = state.kind !== "video";
  if (state.kind === "image") {
    img.src = state.originalUrl;
    video.removeAttribute("src");
  } else {
    video.src = state.originalUrl;
    img.removeAttribute("src");
  }
  $("original-name").textContent = file.name + " · " + (file.size / 1e6).toFixed(1) + " MB";
}

function chooseFile(file) {
  if (!file) return;
  state.file = file;
  state.kind = kindOf(file);
  document.body.dataset.kind = state.kind;
  $("work").hidden = false;
  showOriginal(file);
  process();
}

// -- processing ---------------------------------------------------------------------------------

function clearResult() {
  stopPolling();
  if (state.resultUrl) URL.revokeObjectURL(state.resultUrl);
  state.resultUrl = null;
  const img = $("result-image");
  const video = $("result-video");
  img.hidden = true;
  img.removeAttribute("src");
  video.hidden = true;
  video.removeAttribute("src");
  video.load();
  $("download").hidden = true;
  $("result-info").textContent = "";
  showError("");
}

async function forgetJob() {
  if (!state.jobId) return;
  const id = state.jobId;
  state.jobId = null;
  try {
    await api("/api/jobs/" + id, { method: "DELETE" });
  } catch (_) { /* already expired: nothing to remove */ }
}

function setBusy(busy) {
  state.busy = busy;
  $("again").disabled = busy || !state.file;
  $("progress").hidden = !busy;
}

async function process() {
  if (!state.file || state.busy) return;
  clearResult();
  await forgetJob();
  setBusy(true);
  $("progress-bar").removeAttribute("value");
  $("status").textContent = "Uploading…";
  $("cancel").hidden = state.kind !== "video";
  setState("uploading");
  try {
    if (state.kind === "image") {
      await processImage();
    } else {
      await startVideo();
    }
  } catch (error) {
    setBusy(false);
    showError(error.message);
  }
}

async function processImage() {
  const form = options();
  form.append("file", state.file, state.file.name);
  setState("processing");
  const started = performance.now();
  const response = await api("/api/remove", { method: "POST", body: form });
  const blob = await response.blob();
  state.resultUrl = URL.createObjectURL(blob);
  const img = $("result-image");
  img.src = state.resultUrl;
  await img.decode().catch(() => undefined);
  img.hidden = false;
  const name = /filename="([^"]+)"/.exec(response.headers.get("Content-Disposition") || "");
  const download = $("download");
  download.href = state.resultUrl;
  download.download = name ? name[1] : "result.png";
  download.textContent = "Download " + (name ? name[1].split(".").pop().toUpperCase() : "PNG");
  download.hidden = false;
  const seconds = ((performance.now() - started) / 1000).toFixed(1);
  $("result-info").textContent = (response.headers.get("X-Streammatte-Engine") || "") + " · " + seconds + " s";
  setBusy(false);
  setState("done");
}

async function startVideo() {
  const form = options();
  form.append("file", state.file, state.file.name);
  const response = await api("/api/jobs", { method: "POST", body: form });
  const job = await response.json();
  state.jobId = job.id;
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
    stopPolling();
    setBusy(false);
    showError(error.message);
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
  } else if (job.state === "failed" || job.state === "cancelled") {
    stopPolling();
    setBusy(false);
    showError(job.state === "failed" ? "The job failed: " + job.error : "The job was cancelled.");
  }
}

function showVideoResult(job) {
  const frames = job.options.format === "png";  // a zip of PNG frames: nothing to play
  const video = $("result-video");
  video.hidden = frames;
  if (!frames) {
    video.src = withToken(job.result_url + "?inline=1");
    video.play().catch(() => undefined);
  }
  const download = $("download");
  download.href = withToken(job.result_url);
  download.removeAttribute("download");  // the server names the file (Content-Disposition)
  download.textContent = frames ? "Download PNG frames (zip)"
    : "Download " + job.options.format.toUpperCase();
  download.hidden = false;
  const notes = job.notes && job.notes.length ? " · " + job.notes.join("; ") : "";
  $("result-info").textContent = job.frames_done + " frames · " + formatSeconds(job.elapsed_s) +
    " · " + job.fps.toFixed(1) + " fps" + notes;
  setState("done");
}

async function cancelJob() {
  stopPolling();
  await forgetJob();
  setBusy(false);
  $("status").textContent = "";
  showError("Cancelled.");
  setState("cancelled");
}

function reset() {
  clearResult();
  forgetJob();
  state.file = null;
  setBusy(false);
  $("work").hidden = true;
  $("file-input").value = "";
  setState("idle");
}

// -- wiring -------------------------------------------------------------------------------------

function wire() {
  const zone = $("drop-zone");
  const input = $("file-input");
  input.addEventListener("change", () => chooseFile(input.files[0]));
  zone.addEventListener("click", (event) => {
    if (event.target.tagName !== "LABEL") input.click();
  });
  zone.addEventListener("keydown", (event) => {
    if (event.key === "Enter" || event.key === " ") { event.preventDefault(); input.click(); }
  });
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
  $("background").addEventListener("change", () => {
    $("custom-colour").hidden = $("background").value !== "custom";
    $("background-file").hidden = $("background").value !== "picture";
    if ($("background").value === "picture" && !$("background-file").files.length) {
      $("background-file").click();
    }
  });
  $("again").addEventListener("click", process);
  $("cancel").addEventListener("click", cancelJob);
  $("reset").addEventListener("click", reset);
  window.addEventListener("pagehide", () => { if (state.jobId && state.busy) forgetJob(); });
}

wire();
loadSettings().then(() => setState("ready")).catch((error) => showError(
  error.status === 401 ? "This server needs a token: open the URL it printed (…/?token=…)." : error.message));
