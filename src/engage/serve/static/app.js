// engage's page: upload a photo or a video, or score the camera live, through the server's /v1 API.
"use strict";

const $ = (id) => document.getElementById(id);
const fmt2 = (p) => (p === null || p === undefined ? "-" : p.toFixed(2));
const LIVE_INTERVAL_MS = 333; // about 3 frames per second
let currentJob = null;
let blobUrls = [];

function headers() {
  const token = $("token").value.trim();
  return token ? { Authorization: "Bearer " + token } : {};
}

async function api(path, options = {}) {
  const response = await fetch(path, { ...options, headers: { ...headers(), ...(options.headers || {}) } });
  if (!response.ok) {
    let detail = response.status + " " + response.statusText;
    try {
      const body = (await response.json()).detail;
      // a refusal is one line; FastAPI's request validation is a list of {loc, msg}
      detail = Array.isArray(body) ? body.map((e) => (e.loc || []).slice(1).join(".") + ": " + e.msg).join("; ")
                                   : body || detail;
    } catch (e) { /* not JSON */ }
    throw new Error(detail);
  }
  return response;
}

function say(text, isError = false, where = "status") {
  const node = $(where);
  node.textContent = text;
  node.classList.toggle("error", isError);
}

function cell(row, text) {
  const td = document.createElement("td");
  td.textContent = text;
  row.appendChild(td);
}

function fillRows(table, rows) {
  const body = $(table).querySelector("tbody");
  body.replaceChildren();
  for (const values of rows) {
    const row = document.createElement("tr");
    values.forEach((v) => cell(row, v));
    body.appendChild(row);
  }
}

function releaseBlobs() {
  blobUrls.forEach((url) => URL.revokeObjectURL(url));
  blobUrls = [];
}

function blobUrl(blob) {
  const url = URL.createObjectURL(blob);
  blobUrls.push(url);
  return url;
}

function isVideo(file) {
  if (file.type) return file.type.startsWith("video/");
  return /\.(mp4|mkv|webm|avi|mov|m4v|mpg|mpeg|wmv|flv|3gp|ts|ogv)$/i.test(file.name);
}

async function handleFile(file) {
  if (!file) return;
  releaseBlobs();
  $("image-result").hidden = true;
  $("video-result").hidden = true;
  try {
    if (isVideo(file)) await scoreVideo(file); else await scoreImage(file);
  } catch (error) {
    $("progress-box").hidden = true;
    say(error.message, true);
  }
}

async function scoreImage(file) {
  say("Scoring " + file.name + " ...");
  const form = new FormData();
  form.append("file", file);
  form.append("annotate", "true");
  form.append("expressions", $("expressions").checked ? "true" : "false");
  const result = await (await api("/v1/images", { method: "POST", body: form })).json();
  const img = $("annotated");
  img.src = "data:image/png;base64," + result.annotated_png;
  await img.decode().catch(() => {});
  fillRows("image-faces", result.faces.map((f) => [
    "#" + f.face_id, f.label === "uncertain" ? `uncertain (${f.quality.replace(/\+/g, ", ")})` : f.label, fmt2(f.p_engaged), f.det_conf.toFixed(2), f.box.join(", "), f.expression || "-",
  ]));
  $("image-result").hidden = false;
  const n = result.faces.length;
  say(n ? `${result.source}: ${n} face${n > 1 ? "s" : ""} found` : `${result.source}: no face found`);
}

async function scoreVideo(file) {
  say("Uploading " + file.name + " ...");
  const form = new FormData();
  form.append("file", file);
  form.append("every", String(Math.max(1, parseInt($("every").value, 10) || 1)));
  form.append("expressions", $("expressions").checked ? "true" : "false");
  let job = await (await api("/v1/videos", { method: "POST", body: form })).json();
  currentJob = job.id;
  $("progress-box").hidden = false;
  $("progress").value = 0;
  say("Scoring " + job.source + " ...");
  while (job.state === "queued" || job.state === "running") {
    await new Promise((resolve) => setTimeout(resolve, 400));
    if (currentJob !== job.id) return; // cancelled
    job = await (await api("/v1/jobs/" + job.id)).json();
    if (job.progress !== null) $("progress").value = job.progress;
    say(`Scoring ${job.source}: ${job.frames_done}${job.frames_total ? " of " + job.frames_total : ""} frames`);
  }
  $("progress-box").hidden = true;
  if (job.state !== "done") throw new Error(`${job.source}: ${job.error || job.state}`);
  await showVideo(job);
}

async function showVideo(job) {
  const r = job.result;
  const timeline = await (await api(job.links["timeline.png"])).blob();
  $("timeline").src = blobUrl(timeline);
  await $("timeline").decode().catch(() => {});
  fillRows("video-faces", r.faces.map((f) => [
    "#" + f.face_id, `${(f.last_s - f.first_s).toFixed(1)} s (${f.first_s.toFixed(1)}-${f.last_s.toFixed(1)} s)`,
    fmt2(f.mean_p_engaged), f.share_engaged === undefined ? "-" : Math.round(100 * f.share_engaged) + "%", String(f.frames),
  ]));
  const csv = await (await api(job.links["faces.csv"])).blob();
  const stem = job.source.replace(/\.[^.]*$/, "");
  $("download-csv").href = blobUrl(csv);
  $("download-csv").download = stem + ".faces.csv";
  $("download-json").href = blobUrl(new Blob([JSON.stringify(r, null, 1)], { type: "application/json" }));
  $("download-json").download = stem + ".json";
  $("video-summary").textContent = `${r.source}: ${r.frames_scored} frames scored (${r.duration_s.toFixed(1)} s of video), ` +
    (r.faces.length ? `${r.faces.length} face(s) tracked` : "no face found");
  $("video-result").hidden = false;
  say(`${r.source}: done`);
}

async function deleteJob() {
  const id = currentJob;
  currentJob = null;
  if (!id) return;
  try { await api("/v1/jobs/" + id, { method: "DELETE" }); } catch (e) { /* already gone */ }
  $("progress-box").hidden = true;
  $("video-result").hidden = true;
  releaseBlobs();
  say("The job and its files were deleted on the server.");
}

// ---- live camera ------------------------------------------------------------------------------------
const live = { session: null, stream: null, timer: null, canvas: document.createElement("canvas") };

async function liveStart() {
  $("live-start").disabled = true;
  try {
    live.stream = await navigator.mediaDevices.getUserMedia({ video: { width: 640, height: 480 }, audio: false });
    $("live-video").srcObject = live.stream;
    await $("live-video").play();
    live.session = (await (await api("/v1/live", { method: "POST" })).json()).id;
    $("live-stop").disabled = false;
    say("Live: scoring about 3 frames a second", false, "live-status");
    liveLoop();
  } catch (error) {
    say("Camera: " + error.message, true, "live-status");
    await liveStop();
  }
}

async function liveLoop() {
  const session = live.session;  // Stop may end it while a frame is on its way: then that answer is dropped
  if (!session) return;
  const started = performance.now();
  const video = $("live-video");
  try {
    if (video.videoWidth) {
      live.canvas.width = video.videoWidth;
      live.canvas.height = video.videoHeight;
      live.canvas.getContext("2d").drawImage(video, 0, 0);
      const frame = await new Promise((resolve) => live.canvas.toBlob(resolve, "image/jpeg", 0.85));
      const form = new FormData();
      form.append("file", frame, "frame.jpg");
      const result = await (await api(`/v1/live/${session}/frames`, { method: "POST", body: form })).json();
      if (live.session !== session) return;
      drawLive(result);
    }
  } catch (error) {
    if (live.session !== session) return;
    say("Live: " + error.message, true, "live-status");
  }
  if (live.session === session) live.timer = setTimeout(liveLoop, Math.max(0, LIVE_INTERVAL_MS - (performance.now() - started)));
}

function drawLive(result) {
  const overlay = $("live-overlay");
  overlay.width = result.width;
  overlay.height = result.height;
  const ctx = overlay.getContext("2d");
  ctx.clearRect(0, 0, overlay.width, overlay.height);
  ctx.lineWidth = Math.max(2, result.width / 250);
  ctx.font = `${Math.max(14, result.width / 35)}px system-ui, sans-serif`;
  for (const f of result.faces) {
    const [x, y, w, h] = f.box;
    const colour = f.label === "engaged" ? "#28b43c" : f.label === "uncertain" ? "#8c8c8c" : "#e13c28";
    ctx.strokeStyle = colour;
    ctx.strokeRect(x, y, w, h);
    const caption = `#${f.face_id} ${f.label} ${fmt2(f.p_engaged)}`;
    const width = ctx.measureText(caption).width + 8;
    ctx.fillStyle = colour;
    ctx.fillRect(x, Math.max(0, y - 24), width, 24);
    ctx.fillStyle = "#fff";
    ctx.fillText(caption, x + 4, Math.max(18, y - 6));
  }
  fillRows("live-faces", result.faces.map((f) => ["#" + f.face_id, f.label, fmt2(f.p_engaged)]));
  say(`Live: frame ${result.frame + 1}, ${result.faces.length} face(s)`, false, "live-status");
}

async function liveStop() {
  clearTimeout(live.timer);
  const session = live.session;
  live.session = null;
  if (live.stream) live.stream.getTracks().forEach((track) => track.stop());
  live.stream = null;
  $("live-video").srcObject = null;
  if (session) { try { await api("/v1/live/" + session, { method: "DELETE" }); } catch (e) { /* expired */ } }
  $("live-start").disabled = false;
  $("live-stop").disabled = true;
  if (session) say("Live: stopped", false, "live-status");
}

// ---- wiring -----------------------------------------------------------------------------------------
function init() {
  const drop = $("drop");
  $("file").addEventListener("change", (event) => handleFile(event.target.files[0]));
  drop.addEventListener("dragover", (event) => { event.preventDefault(); drop.classList.add("over"); });
  drop.addEventListener("dragleave", () => drop.classList.remove("over"));
  drop.addEventListener("drop", (event) => {
    event.preventDefault();
    drop.classList.remove("over");
    handleFile(event.dataTransfer.files[0]);
  });
  $("cancel").addEventListener("click", deleteJob);
  $("delete-job").addEventListener("click", deleteJob);
  $("live-start").addEventListener("click", liveStart);
  $("live-stop").addEventListener("click", liveStop);
  $("token").value = sessionStorage.getItem("engage-token") || "";
  $("token").addEventListener("change", () => sessionStorage.setItem("engage-token", $("token").value));
  fetch("/healthz").then((r) => r.json()).then((health) => { $("token-section").hidden = !health.auth; }).catch(() => {});
}

init();
