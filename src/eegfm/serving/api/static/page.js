// eegfm-serve's page for one recording: upload it, draw /v1/predict's reading of it and the EEG
// itself (eeg.js, traces.js), and on a click the clicked window's /v1/explain heatmaps. Plain JS,
// no library: everything it loads is local.
"use strict";

const COLOURS = ["#1b9e77", "#d95f02", "#7570b3", "#e7298a", "#66a61e", "#e6ab02", "#a6761d", "#666666"];
const KEY_ITEM = "eegfm-api-key";
const $ = (id) => document.getElementById(id);
const page = { file: null, recording: null, labels: [], flagged: [] };

function headers() {
  const key = $("key").value.trim();
  return key ? { Authorization: "Bearer " + key } : {};
}

function say(text, isError) {
  $("status").textContent = text;
  $("status").className = isError ? "error" : "";
}

async function call(path, options) {
  const response = await fetch(path, { ...options, headers: headers() });
  const body = await response.json().catch(() => ({ error: response.statusText }));
  if (!response.ok) throw new Error(`${response.status}: ${body.error || response.statusText}`);
  return body;
}

function form(file) {
  const data = new FormData();
  data.append("file", file, file.name);
  return data;
}

function element(tag, text, className) {
  const node = document.createElement(tag);
  if (text !== undefined) node.textContent = text;
  if (className) node.className = className;
  return node;
}

function fmtTime(seconds) {
  const m = Math.floor(seconds / 60);
  const s = Math.round(seconds - 60 * m);
  return `${m}:${String(s).padStart(2, "0")}`;
}

// The canvas scaled to the device's pixels; its drawing context in CSS pixels.
function context(canvas) {
  const ratio = window.devicePixelRatio || 1;
  const width = canvas.clientWidth || canvas.width;
  const height = Number(canvas.getAttribute("height"));
  canvas.width = Math.round(width * ratio);
  canvas.height = Math.round(height * ratio);
  canvas.style.height = height + "px";
  const ctx = canvas.getContext("2d");
  ctx.setTransform(ratio, 0, 0, ratio, 0, 0);
  ctx.clearRect(0, 0, width, height);
  return { ctx, width, height };
}

const MARGIN = { left: 46, right: 12, top: 8, bottom: 22 };

function timeAxis(ctx, width, height, end) {
  ctx.fillStyle = "#444";
  ctx.font = "11px system-ui, sans-serif";
  ctx.textAlign = "center";
  const span = width - MARGIN.left - MARGIN.right;
  const ticks = Math.min(10, Math.max(2, Math.floor(span / 90)));
  for (let i = 0; i <= ticks; i++) {
    const t = (end * i) / ticks;
    ctx.fillText(fmtTime(t), MARGIN.left + (span * i) / ticks, height - 6);
  }
}

function valueAxis(ctx, height, labels) {
  ctx.fillStyle = "#444";
  ctx.font = "11px system-ui, sans-serif";
  ctx.textAlign = "right";
  const plot = height - MARGIN.top - MARGIN.bottom;
  labels.forEach((label, i) => ctx.fillText(label, MARGIN.left - 6, MARGIN.top + (plot * i) / (labels.length - 1) + 4));
  ctx.strokeStyle = "#ccc";
  ctx.strokeRect(MARGIN.left, MARGIN.top, ctx.canvas.clientWidth - MARGIN.left - MARGIN.right, plot);
}

// Class probabilities as stacked areas: each window a column from its start to the next window's.
function drawTimeline(windows, labels) {
  const canvas = $("timeline");
  const { ctx, width, height } = context(canvas);
  const end = Math.max(...windows.map((w) => w.start_s + w.duration_s));
  const x = (t) => MARGIN.left + ((width - MARGIN.left - MARGIN.right) * t) / end;
  const y = (p) => height - MARGIN.bottom - (height - MARGIN.top - MARGIN.bottom) * p;
  let below = windows.map(() => 0);
  labels.forEach((label, c) => {
    const above = windows.map((w, k) => below[k] + (w.class_probabilities[label] || 0));
    ctx.beginPath();
    windows.forEach((w, k) => {
      const right = k + 1 < windows.length ? windows[k + 1].start_s : w.start_s + w.duration_s;
      ctx.lineTo(x(w.start_s), y(above[k]));
      ctx.lineTo(x(right), y(above[k]));
    });
    for (let k = windows.length - 1; k >= 0; k--) {
      const w = windows[k];
      const right = k + 1 < windows.length ? windows[k + 1].start_s : w.start_s + w.duration_s;
      ctx.lineTo(x(right), y(below[k]));
      ctx.lineTo(x(w.start_s), y(below[k]));
    }
    ctx.closePath();
    ctx.fillStyle = COLOURS[c % COLOURS.length];
    ctx.fill();
    below = above;
  });
  valueAxis(ctx, height, ["1", "0.5", "0"]);
  timeAxis(ctx, width, height, end);
  if (page.eegSpan) {
    // the EEG page on view: a bar under the axis
    const [from, to] = page.eegSpan;
    ctx.fillStyle = "#222";
    ctx.fillRect(x(from), y(0) + 1, Math.max(2, x(Math.min(to, end)) - x(from)), 4);
  }
  if (page.selected !== undefined) {
    const w = windows[page.selected];
    ctx.strokeStyle = "#000";
    ctx.lineWidth = 2;
    ctx.strokeRect(x(w.start_s), MARGIN.top, x(w.start_s + w.duration_s) - x(w.start_s), y(0) - MARGIN.top);
    ctx.lineWidth = 1;
  }
  canvas.dataset.windows = String(windows.length);
  page.xToWindow = (px) => {
    const t = ((px - MARGIN.left) / (width - MARGIN.left - MARGIN.right)) * end;
    let found = -1;
    windows.forEach((w, k) => {
      if (t >= w.start_s) found = k;
    });
    return found;
  };
}

function drawUncertainty(windows) {
  const canvas = $("uncertainty");
  const { ctx, width, height } = context(canvas);
  const end = Math.max(...windows.map((w) => w.start_s + w.duration_s));
  // entropy is at most ln(classes): the axis ends a little above it, so a maximal line shows
  const top = 1.1 * Math.max(Math.log(Math.max(2, page.labels.length)), ...windows.map((w) => w.uncertainty.entropy || 0));
  const x = (t) => MARGIN.left + ((width - MARGIN.left - MARGIN.right) * t) / end;
  const y = (v) => height - MARGIN.bottom - ((height - MARGIN.top - MARGIN.bottom) * v) / top;
  [["entropy", "#333"], ["mutual_information", "#d95f02"]].forEach(([field, colour]) => {
    const points = windows.filter((w) => typeof w.uncertainty[field] === "number");
    if (!points.length) return;
    ctx.beginPath();
    points.forEach((w) => ctx.lineTo(x(w.start_s + w.duration_s / 2), y(w.uncertainty[field])));
    ctx.strokeStyle = colour;
    ctx.lineWidth = 1.5;
    ctx.stroke();
    ctx.fillStyle = colour;
    points.forEach((w) => ctx.fillRect(x(w.start_s + w.duration_s / 2) - 2, y(w.uncertainty[field]) - 2, 4, 4));
  });
  valueAxis(ctx, height, [top.toFixed(2), (top / 2).toFixed(2), "0"]);
  timeAxis(ctx, width, height, end);
  canvas.dataset.windows = String(windows.length);
}

function renderSummary(recording) {
  const recommendations = recording.recommendations || {};
  const flagged = page.flagged.find((name) => recommendations[name]);
  const common = Object.entries(recommendations).sort((a, b) => b[1] - a[1])[0];
  const verdict = flagged || (common ? common[0] : "none");
  $("recommendation").textContent = verdict;
  $("recommendation").className = flagged ? "big flagged" : "big";
  const counts = Object.entries(recommendations).map(([name, n]) => `${name}: ${n}`).join(", ");
  $("recording").textContent = `${recording.windows} windows, ${fmtTime(recording.eeg_seconds)} of EEG; windows per recommendation: ${counts}`;
  const table = $("minutes");
  table.replaceChildren();
  page.labels.forEach((label, c) => {
    const row = classRow(table, label, c);
    const cell = row.insertCell();
    cell.textContent = (recording.minutes_by_class[label] || 0).toFixed(2);
    cell.className = "n";
  });
  const list = $("episodes");
  list.replaceChildren();
  const episodes = recording.flagged_episodes || [];
  episodes.forEach((e) =>
    list.append(element("li", `${fmtTime(e.start_s)}-${fmtTime(e.end_s)}: ${e.class} (${e.recommendation}, ${e.windows} windows)`)),
  );
  if (!episodes.length) list.append(element("li", "none", "muted"));
  $("legend").replaceChildren(
    ...page.labels.map((label, c) => {
      const item = element("span", label);
      const swatch = element("i");
      swatch.style.background = COLOURS[c % COLOURS.length];
      item.prepend(swatch);
      return item;
    }),
  );
}

// A table row naming class ``c`` by its colour swatch and label; the caller adds its cells.
function classRow(table, label, c) {
  const row = table.insertRow();
  const swatch = element("i");
  swatch.style.cssText = `display:inline-block;width:.8rem;height:.8rem;margin-right:.3rem;background:${COLOURS[c % COLOURS.length]}`;
  row.insertCell().append(swatch, label);
  return row;
}

// "task 0.91 (0.85–0.95)": a class's probability over the recording and its interval (none with one window).
function answerText(answer, label) {
  const p = answer.probabilities[label].toFixed(2);
  return answer.low ? `${p} (${answer.low[label].toFixed(2)}–${answer.high[label].toFixed(2)})` : p;
}

// The recording's answer, above its timeline: the most likely class, then each class's
// probability with its interval as a number and a bar (a regression head has none: hidden).
function renderAnswer(recording) {
  const answer = recording.recording;
  $("answer").hidden = !answer;
  if (!answer) return;
  $("answer").dataset.predicted = answer.predicted;
  const windows = `${answer.n_windows} window${answer.n_windows === 1 ? "" : "s"}`;
  $("answer-predicted").textContent = `${answer.predicted} ${answerText(answer, answer.predicted)}, ${windows}`;
  const table = $("answer-classes");
  table.replaceChildren();
  page.labels.forEach((label, c) => {
    const row = classRow(table, label, c);
    const cell = row.insertCell();
    cell.textContent = answerText(answer, label);
    cell.className = "n";
    const bar = element("span", undefined, "bar");
    const fill = element("span", undefined, "fill");
    fill.style.width = `${100 * answer.probabilities[label]}%`;
    fill.style.background = COLOURS[c % COLOURS.length];
    bar.append(fill);
    if (answer.low) {
      const interval = element("span", undefined, "interval");
      interval.style.left = `${100 * answer.low[label]}%`;
      interval.style.width = `${Math.max(0.5, 100 * (answer.high[label] - answer.low[label]))}%`;
      bar.append(interval);
    }
    row.insertCell().append(bar);
  });
  $("answer-windows").textContent = answer.low
    ? `${Math.round(100 * answer.level)} % intervals`
    : "one window: too few for an interval";
}

function render(reply) {
  const recording = reply.recordings.find((r) => r.status === "processed");
  if (!recording) {
    const first = reply.recordings[0] || {};
    throw new Error(`not scored: ${first.stage || ""} ${first.reason || ""}`);
  }
  page.recording = recording;
  page.labels = recording.labels;
  page.flagged = (reply.model.recommendation || {}).flagged || [];
  page.selected = undefined;
  const model = reply.model;
  $("model").textContent = `model ${model.model_version}: ${model.labels.join(", ")}; ${model.window_seconds} s windows`;
  $("result").hidden = false;
  $("explanation").hidden = true;
  renderSummary(recording);
  renderAnswer(recording);
  page.eegSpan = undefined;
  drawTimeline(recording.window_predictions, page.labels);
  drawUncertainty(recording.window_predictions);
  window.eegfmEEG.load({
    file: page.file,
    windows: recording.window_predictions,
    episodes: recording.flagged_episodes || [],
    labels: page.labels,
    colours: COLOURS,
    duration: recording.eeg_seconds,
    call,
    form,
    onWindow: explainWindow,
    onPage: (from, to) => {
      page.eegSpan = [from, to];
      drawTimeline(recording.window_predictions, page.labels);
    },
  });
  document.body.dataset.state = "rendered";
}

async function score(event) {
  event.preventDefault();
  sessionStorage.setItem(KEY_ITEM, $("key").value.trim());
  page.file = $("file").files[0];
  if (!page.file) return say("choose a recording file first", true);
  say("scoring ...");
  document.body.dataset.state = "scoring";
  try {
    render(await call("/v1/predict", { method: "POST", body: form(page.file) }));
    say(`scored by model ${page.recording.model_version}`);
  } catch (err) {
    document.body.dataset.state = "error";
    say(err.message, true);
  }
}

// A click on the timeline: the window under it explained, and shown in the EEG.
function explain(event) {
  if (!page.recording || !page.xToWindow) return;
  const bounds = event.target.getBoundingClientRect();
  const k = page.xToWindow(event.clientX - bounds.left);
  if (k >= 0) explainWindow(k);
}

async function explainWindow(k) {
  const token = (page.explaining = (page.explaining || 0) + 1); // only the last click's reply is drawn
  page.selected = k;
  drawTimeline(page.recording.window_predictions, page.labels);
  window.eegfmEEG.select(k);
  say(`explaining window ${k} ...`);
  document.body.dataset.state = "explaining";
  try {
    const reply = await call(`/v1/explain?window=${k}`, { method: "POST", body: form(page.file) });
    if (token !== page.explaining) return;
    window.eegfmHeatmaps.render(reply, COLOURS, page.labels);
    document.body.dataset.state = "explained";
    say(`window ${k} explained`);
  } catch (err) {
    if (token !== page.explaining) return;
    document.body.dataset.state = "error";
    say(err.message, true);
  }
}

// The model's description once a key is given (a request without one would log a 401).
async function describeModel() {
  if (!$("key").value.trim()) return;
  try {
    const model = await call("/v1/model", { method: "GET" });
    $("model").textContent = `model ${model.model_version}: ${model.labels.join(", ")}; ${model.window_seconds} s windows`;
  } catch (err) {
    $("model").textContent = "model: " + err.message;
  }
}

$("key").value = sessionStorage.getItem(KEY_ITEM) || "";
$("key").addEventListener("change", () => {
  sessionStorage.setItem(KEY_ITEM, $("key").value.trim());
  describeModel();
});
$("upload").addEventListener("submit", score);
$("file").addEventListener("change", () => $("file").files.length && $("upload").requestSubmit());
$("timeline").addEventListener("click", explain);
describeModel();
