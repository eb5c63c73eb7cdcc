// The page of `python -m unetsr.serve`: uploads photos to this server, shows each one's progress as the
// server pushes it (Server-Sent Events), then a before/after comparison with a slider, at fit or 1:1 zoom.
"use strict";

const $ = (id) => document.getElementById(id);
const client = Array.from(crypto.getRandomValues(new Uint8Array(16)), (b) => b.toString(16).padStart(2, "0")).join("");
const cards = new Map();   // job id -> {el, snap}
const early = new Map();   // job id -> latest snapshot that came before its upload's answer
let uploads = Promise.resolve();  // one upload at a time, so photos are queued in the order they were dropped
let shown = null;          // the job id in the comparison view
let zoom = "fit";

function chosen() {
  const scale = $("scale").value === "other" ? $("scale-other").value : $("scale").value;
  return { scale, model: $("model").value, format: $("format").value, quality: $("quality").value,
           ensemble: $("ensemble").checked ? "1" : "0" };
}

function megabytes(bytes) {
  return bytes >= 1e6 ? `${(bytes / 1e6).toFixed(1)} MB` : `${Math.max(1, Math.round(bytes / 1e3))} KB`;
}

function seconds(s) {
  return s < 10 ? `${s.toFixed(1)} s` : `${Math.round(s)} s`;
}

function size(wh) {
  return `${wh[0]}×${wh[1]}`;
}

function newCard(name) {
  const el = $("job-template").content.firstElementChild.cloneNode(true);
  el.querySelector(".job-name").textContent = name;
  el.querySelector(".job-name").title = name;
  el.dataset.state = "uploading";
  el.querySelector(".job-status").textContent = "uploading…";
  $("jobs").append(el);
  return el;
}

function fail(el, message) {
  el.dataset.state = "failed";
  el.className = "job failed";
  el.querySelector(".job-status").textContent = "failed";
  el.querySelector(".job-error").textContent = message;
  el.querySelector(".fill").style.width = "100%";
}

function render(id, snap) {
  const card = cards.get(id);
  if (!card) {  // its upload has not answered yet
    if (!early.has(id) || early.get(id).seq < snap.seq) early.set(id, snap);
    return;
  }
  if (card.snap && card.snap.seq >= snap.seq) return;
  card.snap = snap;
  const el = card.el;
  el.dataset.state = snap.state;
  el.className = `job ${snap.state}${shown === id ? " selected" : ""}`;
  const status = el.querySelector(".job-status");
  const fill = el.querySelector(".fill");
  const label = `×${+snap.scale}, ${snap.format.toUpperCase()}`;
  if (snap.state === "queued") {
    status.textContent = snap.position ? `waiting: ${snap.position} photo${snap.position > 1 ? "s" : ""} ahead` : "waiting: next";
    fill.style.width = "0";
  } else if (snap.state === "running") {
    const using = snap.model_used ? ` (${snap.model_used})` : "";
    status.textContent = snap.total ? `upscaling ${label}${using}: tile ${snap.done} of ${snap.total}` : `reading…`;
    fill.style.width = snap.total ? `${(100 * snap.done) / snap.total}%` : "0";
  } else if (snap.state === "done") {
    status.textContent = `${size(snap.input_size)} → ${size(snap.output_size)} · ${seconds(snap.seconds)} · ${megabytes(snap.bytes)}`;
    status.title = snap.model_used || "";
    fill.style.width = "100%";
    const link = el.querySelector(".job-download");
    link.href = `/api/jobs/${id}/result`;
    link.download = snap.download;
    link.title = snap.download;
    if (shown === null) show(id);
  } else if (snap.state === "failed") {
    fail(el, snap.error);
  }
  el.querySelector(".job-notes").textContent = (snap.notes || []).map((n) => `warning: ${n}`).join("\n");
  if (shown === id) describe(snap);
}

async function upload(file) {
  const el = newCard(file.name);
  const params = new URLSearchParams({ client, name: file.name, ...chosen() });
  let answer, body;
  try {
    answer = await fetch(`/api/jobs?${params}`, {
      method: "POST", headers: { "Content-Type": "application/octet-stream" }, body: file,
    });
    body = await answer.json();
  } catch (e) {
    fail(el, `upload failed: ${answer ? `the server answered ${answer.status}` : "the server is not answering"}`);
    return;
  }
  if (!answer.ok) {
    fail(el, body.error || `the server answered ${answer.status}`);
    el.querySelector(".job-remove").onclick = () => el.remove();
    return;
  }
  const id = body.id;
  cards.set(id, { el, snap: null });
  el.querySelector(".job-remove").onclick = () => remove(id);
  el.querySelector(".job-compare").onclick = () => { show(id); $("viewer").scrollIntoView({ block: "nearest" }); };
  const later = early.get(id);
  early.delete(id);
  render(id, later && later.seq > body.seq ? later : body);
}

function addFiles(files) {
  for (const file of files) uploads = uploads.then(() => upload(file));
}

async function remove(id) {
  const card = cards.get(id);
  cards.delete(id);
  card.el.remove();
  if (shown === id) {
    shown = null;
    $("viewer").hidden = true;
  }
  await fetch(`/api/jobs/${id}`, { method: "DELETE" }).catch(() => {});
}

// The comparison view: the result, with the original (enlarged by the browser) over it, cut at the split.
function describe(snap) {
  $("viewer-name").textContent = snap.name;
  const using = snap.model_used ? `, ${snap.model_used}` : "";
  $("viewer-info").textContent = `${size(snap.input_size)} → ${size(snap.output_size)} (×${+snap.scale}) in ${seconds(snap.seconds)}, ${megabytes(snap.bytes)}${using}`;
  $("viewer-download").href = `/api/jobs/${snap.id}/result`;
  $("viewer-download").download = snap.download;
}

function show(id) {
  const card = cards.get(id);
  if (!card || !card.snap || card.snap.state !== "done") return;
  for (const c of cards.values()) c.el.classList.toggle("selected", c === card);
  shown = id;
  describe(card.snap);
  $("viewer").hidden = false;
  $("compare").dataset.ready = "no";
  const after = $("after-img");
  after.onload = () => { layout(); $("compare").dataset.ready = "yes"; };
  after.src = `/api/jobs/${id}/result`;
  $("before-img").src = `/api/jobs/${id}/before`;
  layout();
}

function layout() {
  const card = cards.get(shown);
  if (!card) return;
  const [w, h] = card.snap.output_size;
  const stage = $("stage");
  let k;
  if (zoom === "fit") {
    k = Math.min(stage.clientWidth / w, stage.clientHeight / h);
  } else {
    k = 1 / (window.devicePixelRatio || 1);  // one image pixel per screen pixel
  }
  stage.classList.toggle("actual", zoom !== "fit");
  $("compare").style.width = `${w * k}px`;
  $("compare").style.height = `${h * k}px`;
  $("compare").dataset.zoom = zoom;
}

function setZoom(z) {
  zoom = z;
  $("zoom-fit").classList.toggle("on", z === "fit");
  $("zoom-1").classList.toggle("on", z !== "fit");
  layout();
}

function setSplit(percent) {
  const p = Math.min(100, Math.max(0, percent));
  $("compare").style.setProperty("--split", `${p}%`);
  $("split").value = String(p);
}

function wire() {
  $("scale").onchange = () => { $("scale-other-label").hidden = $("scale").value !== "other"; };
  $("format").onchange = () => { $("quality-label").hidden = $("format").value === "png"; };
  $("settings").onsubmit = (e) => e.preventDefault();
  const drop = $("drop");
  drop.onclick = (e) => { if (e.target === drop || e.target.tagName === "P") $("files").click(); };
  drop.onkeydown = (e) => { if (e.key === "Enter" || e.key === " ") { e.preventDefault(); $("files").click(); } };
  $("files").onchange = () => { addFiles($("files").files); $("files").value = ""; };
  // A photo dropped anywhere counts; the browser must not open it in place of the page.
  window.addEventListener("dragover", (e) => { e.preventDefault(); drop.classList.add("over"); });
  window.addEventListener("dragleave", (e) => { if (!e.relatedTarget) drop.classList.remove("over"); });
  window.addEventListener("drop", (e) => {
    e.preventDefault();
    drop.classList.remove("over");
    if (e.dataTransfer && e.dataTransfer.files.length) addFiles(e.dataTransfer.files);
  });
  $("zoom-fit").onclick = () => setZoom("fit");
  $("zoom-1").onclick = () => setZoom("1:1");
  $("split").oninput = () => setSplit(+$("split").value);
  const compare = $("compare");
  const follow = (e) => {
    const r = compare.getBoundingClientRect();
    setSplit((100 * (e.clientX - r.left)) / r.width);
  };
  compare.onpointerdown = (e) => { compare.setPointerCapture(e.pointerId); follow(e); };
  compare.onpointermove = (e) => { if (compare.hasPointerCapture(e.pointerId)) follow(e); };
  window.addEventListener("resize", layout);
}

async function start() {
  wire();
  const info = await (await fetch("/api/info")).json();
  for (const [name, label] of Object.entries(info.models)) $("model").append(new Option(label, name));
  $("scale-other").max = info.max_scale;
  $("limits").textContent = `PNG, JPEG, WebP, TIFF, BMP… up to ${info.max_pixels_mp} megapixels and ${info.max_upload_mb} MB each; `
    + "results stay on this machine until you remove them or stop the server.";
  const events = new EventSource(`/api/events?client=${client}`);
  events.onmessage = (e) => { const snap = JSON.parse(e.data); render(snap.id, snap); };
  events.onerror = () => {
    $("server-state").textContent = "The server is not answering (stopped?); this page reconnects when it is back.";
    $("server-state").hidden = false;
  };
  events.onopen = () => { $("server-state").hidden = true; };
}

start();
