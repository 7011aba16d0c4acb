// gmodiff serve: the page's logic. Plain browser JavaScript, no build step.
"use strict";

const $ = (id) => document.getElementById(id);
const state = { files: [], exifEv: [], job: null, poll: null, started: 0, evTimer: null };

function showError(text) {
  $("error").textContent = text || "";
  $("error").hidden = !text;
}

function setStatus(text, progress) {
  $("status-text").textContent = text;
  const bar = $("progress");
  bar.hidden = progress === null;
  if (progress === undefined) bar.removeAttribute("value");  // indeterminate
  else if (progress !== null) bar.value = progress;
}

async function jsonOrError(response) {
  let body = {};
  try { body = await response.json(); } catch (e) { /* not JSON */ }
  if (!response.ok) throw new Error(body.error || `error: the server answered ${response.status}`);
  return body;
}

function formData() {
  const form = new FormData();
  for (const f of state.files) form.append("files", f, f.name);
  return form;
}

// ---- choosing frames ----------------------------------------------------------------------

async function chooseFiles(fileList) {
  state.files = Array.from(fileList);
  showError("");
  $("run").disabled = true;
  const body = $("frames").querySelector("tbody");
  body.innerHTML = "";
  $("frames").hidden = true;
  $("ev-note").hidden = true;
  if (state.files.length < 2) {
    showError(`error: a bracket needs at least 2 frames, got ${state.files.length} — ` +
              "drop 2 or more differently exposed images of the same view");
    return;
  }
  setStatus("reading the frames' EXIF…", undefined);
  try {
    const info = await jsonOrError(await fetch("/api/inspect", { method: "POST", body: formData() }));
    state.exifEv = info.frames.map((f) => f.ev);
    info.frames.forEach((f, i) => {
      const row = body.insertRow();
      row.insertCell().textContent = state.files[i].name;
      row.insertCell().textContent = f.exposure_s ? formatTime(f.exposure_s) : "none";
      const input = document.createElement("input");
      input.className = "ev";
      input.type = "number";
      input.step = "0.1";
      input.value = f.ev === null ? "" : String(f.ev);
      input.placeholder = "e.g. -2";
      input.addEventListener("input", updateRunButton);
      row.insertCell().appendChild(input);
    });
    const missing = info.frames.some((f) => f.ev === null);
    $("ev-note").textContent = missing
      ? "Some frames have no EXIF exposure: type each frame's exposure in stops (e.g. -2, 0, 2)."
      : "Exposures read from EXIF (time, ISO and aperture); edit them if they are wrong.";
    $("ev-note").hidden = false;
    $("frames").hidden = false;
    setStatus("", null);
    updateRunButton();
  } catch (err) {
    setStatus("", null);
    showError(err.message);
  }
}

function formatTime(seconds) {
  return seconds >= 1 ? `${seconds} s` : `1/${Math.round(1 / seconds)} s`;
}

function evInputs() { return Array.from(document.querySelectorAll("input.ev")); }

function updateRunButton() {
  const inputs = evInputs();
  $("run").disabled = state.files.length < 2 || inputs.some((i) => i.value.trim() === "");
}

// ---- running a job ------------------------------------------------------------------------

async function run() {
  showError("");
  $("result").hidden = true;
  $("run").disabled = true;
  const form = formData();
  const values = evInputs().map((i) => i.value.trim());
  const edited = values.some((v, i) => state.exifEv[i] === null || Number(v) !== state.exifEv[i]);
  // EXIF exposures untouched: let the server read them itself, exactly as the CLI does.
  if (edited) form.append("ev", values.join(","));
  form.append("method", $("method").value);
  form.append("compare", $("compare").value === $("method").value ? "none" : $("compare").value);
  setStatus("uploading…", undefined);
  try {
    const job = await jsonOrError(await fetch("/api/jobs", { method: "POST", body: form }));
    state.job = job.id;
    state.started = Date.now();
    poll();
  } catch (err) {
    setStatus("", null);
    showError(err.message);
    updateRunButton();
  }
}

async function poll() {
  clearTimeout(state.poll);
  let job;
  try {
    job = await jsonOrError(await fetch(`/api/jobs/${state.job}`));
  } catch (err) {
    setStatus("", null);
    showError(err.message);
    updateRunButton();
    return;
  }
  const secs = ((Date.now() - state.started) / 1000).toFixed(0);
  if (job.state === "queued" && job.ahead === 0 && job.warming) {
    setStatus(`waiting: the model is loading (first job only, ${secs} s)`, undefined);
  } else if (job.state === "queued") {
    const n = job.ahead;
    setStatus(`waiting: ${n} job${n === 1 ? "" : "s"} ahead of yours (${secs} s)`, 0);
  } else if (job.state === "running") {
    setStatus(`${job.stage}… (${secs} s)`, job.progress);
  } else if (job.state === "failed") {
    setStatus("", null);
    showError(job.error);
    updateRunButton();
    return;
  } else if (job.state === "done") {
    setStatus(`done in ${job.seconds.toFixed(1)} s`, 1);
    showResult(job);
    updateRunButton();
    return;
  }
  state.poll = setTimeout(poll, 400);
}

// ---- the result ---------------------------------------------------------------------------

function previewUrl(view) {
  const ev = Number($("ev-slider").value).toFixed(1);
  return `/api/jobs/${state.job}/preview?view=${view}&ev=${ev}`;
}

function loadInto(img, view) {
  const ev = Number($("ev-slider").value).toFixed(1);
  img.onload = () => { img.dataset.loadedEv = ev; };
  img.src = previewUrl(view);
}

function refreshPreviews() {
  loadInto($("preview"), "main");
  const compare = state.current.compare;
  if (compare !== "none" && compare !== "reference") loadInto($("compare-img"), "compare");
}

function showResult(job) {
  state.current = job;
  $("result").hidden = false;
  $("ev-slider").value = "0";
  $("ev-value").textContent = "+0.0 EV";
  const labels = { auto: "Default model", refine: "Default model + one-step refiner", deghost: "Deghost" };
  $("caption-main").textContent = `${labels[job.method]} (${job.methods.main})`;
  const viewer = $("viewer");
  $("view-modes").hidden = job.compare === "none";
  if (job.compare === "none") {
    viewer.className = "single";
  } else {
    viewer.className = document.querySelector("input[name=mode]:checked").value;
    if (job.compare === "reference") {
      $("compare-img").src = `/api/jobs/${job.id}/preview?view=reference`;
      $("caption-compare").textContent = "reference frame, as shot";
    } else {
      $("caption-compare").textContent = `${labels[job.compare]} (${job.methods.compare})`;
    }
  }
  $("legend").textContent = job.compare === "none" ? "" : "swipe: " +
    `${$("caption-main").textContent} left of the handle, ${$("caption-compare").textContent} right of it`;
  applySwipe();
  refreshPreviews();
  for (const kind of ["gain", "mask"]) {
    const button = $(`show-${kind}`);
    button.classList.remove("on");
    button.disabled = !job.maps.includes(`main.${kind === "gain" ? "gain_map" : "mask"}.png`);
    button.title = button.disabled ? "classical methods have no gain map or mask" : "";
  }
  $("map-pane").hidden = true;
  $("notes").textContent = job.messages.join("\n");
  for (const fmt of ["jpg", "exr", "hdr"]) $(`dl-${fmt}`).href = job.downloads[fmt];
}

function applySwipe() {
  // Swipe: the result left of the handle, the comparison right of it.
  const at = Number($("swipe").value);
  $("pane-compare").style.clipPath = $("viewer").className === "swipe" ? `inset(0 0 0 ${at}%)` : "none";
}

function toggleMap(kind) {
  const button = $(`show-${kind}`);
  const other = $(`show-${kind === "gain" ? "mask" : "gain"}`);
  const on = !button.classList.contains("on");
  button.classList.toggle("on", on);
  other.classList.remove("on");
  $("map-pane").hidden = !on;
  if (on) {
    const name = kind === "gain" ? "gain_map" : "mask";
    $("map-img").src = `/api/jobs/${state.job}/map/${name}?view=main`;
    $("map-caption").textContent = kind === "gain" ? "gain map (the network's output, μ-law)"
      : "DA mask (where the network trusts the long/short frames less)";
  }
}

// ---- wiring -------------------------------------------------------------------------------

const drop = $("dropzone");
drop.addEventListener("dragover", (e) => { e.preventDefault(); drop.classList.add("over"); });
drop.addEventListener("dragleave", () => drop.classList.remove("over"));
drop.addEventListener("drop", (e) => {
  e.preventDefault();
  drop.classList.remove("over");
  chooseFiles(e.dataTransfer.files);
});
$("files").addEventListener("change", (e) => {
  const files = Array.from(e.target.files);
  e.target.value = "";  // so that choosing the same files again is a change too
  chooseFiles(files);
});
$("run").addEventListener("click", run);
$("ev-slider").addEventListener("input", () => {
  const v = Number($("ev-slider").value);
  $("ev-value").textContent = `${v >= 0 ? "+" : ""}${v.toFixed(1)} EV`;
  clearTimeout(state.evTimer);  // re-render once the slider rests for a moment
  state.evTimer = setTimeout(refreshPreviews, 60);
});
$("swipe").addEventListener("input", applySwipe);
for (const radio of document.querySelectorAll("input[name=mode]")) {
  radio.addEventListener("change", () => {
    $("viewer").className = radio.value;
    $("legend").hidden = radio.value !== "swipe";
    applySwipe();
  });
}
$("show-gain").addEventListener("click", () => toggleMap("gain"));
$("show-mask").addEventListener("click", () => toggleMap("mask"));
