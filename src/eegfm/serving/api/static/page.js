// eegfm-serve's review page for one recording: upload it, show the recording's answer, its EEG
// (eeg.js, traces.js) with its events (overview.js) and the reviewer's marks (marks.js), the class
// probabilities over time, and on a click the window's /v1/explain maps (heatmaps.js) on the traces.
// Plain JS, no library: everything it loads is local.
"use strict";

const KEY_ITEM = "eegfm-api-key";
const $ = (id) => document.getElementById(id);
const page = { file: null, recording: null, labels: [], flagged: [], colours: {}, explained: null };
const T = window.eegfmTraces;

function headers(contentType) {
  const key = $("key").value.trim();
  return { ...(key ? { Authorization: "Bearer " + key } : {}), ...(contentType ? { "Content-Type": contentType } : {}) };
}

function say(text, isError) {
  $("status").textContent = text;
  $("status").className = isError ? "error" : "";
}

// The API's reason for a refusal: its error, and for an upload nothing in could be scored, each
// recording's stage and reason and what else the upload held.
function reasonOf(status, body) {
  const why = [body.error || `HTTP ${status}`];
  const recordings = body.recordings || [];
  recordings.filter((r) => r.status !== "processed").forEach((r) => why.push(`${r.stage || "quarantined"}: ${r.reason || "no reason given"}`));
  (body.ignored || []).forEach((entry) => why.push(`ignored ${entry.input}: ${entry.reason}`));
  let text = `${status}: ${why.join("; ")}`;
  // The server names a file by a keyed token; one file sent is the one the user chose: named so here only.
  if (recordings.length === 1 && recordings[0].input && page.file) text = text.split(recordings[0].input).join(page.file.name);
  return text;
}

// One request with the key; the JSON reply (or text with `text: true`), or an Error with the API's reason.
async function call(path, options) {
  const { contentType, text, ...rest } = options;
  const response = await fetch(path, { ...rest, headers: headers(contentType) });
  if (response.ok) return text ? response.text() : response.json();
  const body = await response.json().catch(() => ({ error: response.statusText }));
  throw new Error(reasonOf(response.status, body));
}

// /v1/predict with the upload's progress said (fetch cannot report an upload's progress).
function predict(file) {
  return new Promise((resolve, reject) => {
    const request = new XMLHttpRequest();
    request.open("POST", "/v1/predict");
    Object.entries(headers()).forEach(([name, value]) => request.setRequestHeader(name, value));
    request.upload.onprogress = (e) => e.lengthComputable && say(`uploading ${Math.round((100 * e.loaded) / e.total)} % ...`);
    request.upload.onload = () => say("scoring: reading, cleaning and windowing the EEG, then the model ...");
    request.onerror = () => reject(new Error("the server could not be reached"));
    request.onload = () => {
      let body;
      try {
        body = JSON.parse(request.responseText);
      } catch {
        body = { error: request.statusText };
      }
      return request.status === 200 ? resolve(body) : reject(new Error(reasonOf(request.status, body)));
    };
    request.send(form(file));
  });
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

// The classes' one palette (core/palette.py), as the model's description gives it; grey for none.
function colourOf(label) {
  return page.colours[label] || "#bbb";
}

function swatch(label) {
  const i = element("i", undefined, "swatch");
  i.style.background = colourOf(label); // through the DOM: the page's policy refuses style attributes
  return i;
}

// The canvas scaled to the device's pixels; its drawing context in CSS pixels.
function context(canvas) {
  return T.sized(canvas, Number(canvas.getAttribute("height")));
}

const MARGIN = { left: 46, right: 12, top: 8, bottom: 22 };

function axes(ctx, width, height, end, labels) {
  ctx.fillStyle = "#444";
  ctx.font = "11px system-ui, sans-serif";
  ctx.textAlign = "center";
  const span = width - MARGIN.left - MARGIN.right;
  const ticks = Math.min(10, Math.max(2, Math.floor(span / 90)));
  for (let i = 0; i <= ticks; i++) ctx.fillText(T.fmt((end * i) / ticks), MARGIN.left + (span * i) / ticks, height - 6);
  ctx.textAlign = "right";
  const plot = height - MARGIN.top - MARGIN.bottom;
  labels.forEach((label, i) => ctx.fillText(label, MARGIN.left - 6, MARGIN.top + (plot * i) / (labels.length - 1) + 4));
  ctx.strokeStyle = "#ccc";
  ctx.strokeRect(MARGIN.left, MARGIN.top, span, plot);
}

// Class probabilities as stacked areas: each window a column from its start to the next window's.
function drawTimeline(windows, labels) {
  const canvas = $("timeline");
  const { ctx, width, height } = context(canvas);
  const end = Math.max(...windows.map((w) => w.start_s + w.duration_s));
  const x = (t) => MARGIN.left + ((width - MARGIN.left - MARGIN.right) * t) / end;
  const y = (p) => height - MARGIN.bottom - (height - MARGIN.top - MARGIN.bottom) * p;
  const right = (k) => (k + 1 < windows.length ? windows[k + 1].start_s : windows[k].start_s + windows[k].duration_s);
  let below = windows.map(() => 0);
  labels.forEach((label) => {
    const above = windows.map((w, k) => below[k] + (w.class_probabilities[label] || 0));
    ctx.beginPath();
    windows.forEach((w, k) => {
      ctx.lineTo(x(w.start_s), y(above[k]));
      ctx.lineTo(x(right(k)), y(above[k]));
    });
    for (let k = windows.length - 1; k >= 0; k--) {
      ctx.lineTo(x(right(k)), y(below[k]));
      ctx.lineTo(x(windows[k].start_s), y(below[k]));
    }
    ctx.closePath();
    ctx.fillStyle = colourOf(label);
    ctx.fill();
    below = above;
  });
  axes(ctx, width, height, end, ["1", "0.5", "0"]);
  if (page.eegSpan) {
    const [from, to] = page.eegSpan; // the EEG page on view: a bar under the axis
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
    windows.forEach((w, k) => t >= w.start_s && (found = k));
    return found;
  };
}

function drawUncertainty(windows) {
  const { ctx, width, height } = context($("uncertainty"));
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
  axes(ctx, width, height, end, [top.toFixed(2), (top / 2).toFixed(2), "0"]);
  $("uncertainty").dataset.windows = String(windows.length);
}

// The recommendation for the whole recording: the first flagged one any window has, else the commonest.
function verdictOf(recording) {
  const recommendations = recording.recommendations || {};
  const flagged = page.flagged.find((name) => recommendations[name]);
  const common = Object.entries(recommendations).sort((a, b) => b[1] - a[1])[0];
  return { verdict: flagged || (common ? common[0] : "none"), flagged: Boolean(flagged) };
}

function renderSummary(recording) {
  const table = $("minutes");
  table.replaceChildren();
  page.labels.forEach((label) => {
    const row = table.insertRow();
    row.insertCell().append(swatch(label), label);
    const cell = row.insertCell();
    cell.textContent = T.fmt(60 * (recording.minutes_by_class[label] || 0));
    cell.className = "n";
  });
  const counts = Object.entries(recording.recommendations || {}).map(([name, n]) => `${name}: ${n}`).join(", ");
  $("windows-summary").textContent = `${recording.windows} windows of ${page.windowSeconds} s scored, ` +
    `${recording.rejected_windows || 0} rejected; windows per recommendation: ${counts}`;
  $("legend").replaceChildren(...page.labels.map((label) => {
    const item = element("span", label);
    item.prepend(swatch(label));
    return item;
  }));
}

// "task 0.91 (0.85–0.95)": a class's probability over the recording and its interval (none with one window).
function answerText(answer, label) {
  const p = answer.probabilities[label].toFixed(2);
  return answer.low ? `${p} (${answer.low[label].toFixed(2)}–${answer.high[label].toFixed(2)})` : p;
}

// The recording's answer at the top: the most likely class with its interval, the recommendation,
// and each class's probability as a number and a bar (a regression head has none: hidden).
function renderAnswer(recording) {
  const answer = recording.recording;
  $("answer").hidden = !answer;
  if (!answer) return;
  $("answer").dataset.predicted = answer.predicted;
  const windows = `${answer.n_windows} window${answer.n_windows === 1 ? "" : "s"}`;
  $("answer-predicted").replaceChildren(swatch(answer.predicted), `${answer.predicted} ${answerText(answer, answer.predicted)}, ${windows}`);
  const { verdict, flagged } = verdictOf(recording);
  $("answer-recommendation").textContent = `Recommendation: ${verdict}`;
  $("answer-recommendation").className = flagged ? "flagged" : "";
  const table = $("answer-classes");
  table.replaceChildren();
  page.labels.forEach((label) => {
    const row = table.insertRow();
    row.insertCell().append(swatch(label), label);
    const cell = row.insertCell();
    cell.textContent = answerText(answer, label);
    cell.className = "n";
    const bar = element("span", undefined, "bar");
    const fill = element("span", undefined, "fill");
    fill.style.width = `${100 * answer.probabilities[label]}%`;
    fill.style.background = colourOf(label);
    bar.append(fill);
    if (answer.low) {
      const interval = element("span", undefined, "interval");
      interval.style.left = `${100 * answer.low[label]}%`;
      interval.style.width = `${Math.max(0.5, 100 * (answer.high[label] - answer.low[label]))}%`;
      bar.append(interval);
    }
    row.insertCell().append(bar);
  });
  $("answer-windows").textContent = answer.low ? `${Math.round(100 * answer.level)} % intervals (a moving-block bootstrap over the windows)` : "one window: too few for an interval";
}

// The file as uploaded, and from the first traces: its start date and clock time (shown here, to
// the person who uploaded it; the server writes them nowhere).
function renderIdentity(recording, traces) {
  $("file-name").textContent = page.file.name;
  const parts = [];
  if (traces && traces.recorded_at) parts.push(`recorded ${traces.recorded_at.replace("T", " ")}`);
  parts.push(`${T.fmt(recording.eeg_seconds)} of EEG`, `sampled at ${recording.sfreq_in} Hz`);
  if ((recording.interpolated || []).length) parts.push(`interpolated: ${recording.interpolated.join(", ")}`);
  $("recording").textContent = parts.join(" · ");
}

function describe(model) {
  page.colours = model.class_colours || {};
  page.windowSeconds = model.window_seconds;
  $("model").textContent = `model ${model.model_version}: ${model.labels.join(", ")}; ${model.window_seconds} s windows`;
}

// The first traces of a recording: its annotations, start time, marks and the montage's channels.
function tracesArrived(recording, data) {
  const first = !T.state.recordingId;
  T.state.recordingId = data.recording_id;
  T.state.recordedAt = data.recorded_at || null;
  if (first) {
    T.state.annotations = (data.annotations || []).map((a) => ({ ...a, shown: $("show-annotations").checked }));
    renderIdentity(recording, data);
    window.eegfmOverview.refresh();
    if (data.recording_id) window.eegfmMarks.open(data.recording_id);
  }
  window.eegfmMarks.channels(data.derivations.map((d) => d.name));
  if (page.explained && page.montage !== data.montage) window.eegfmHeatmaps.render(page.explained, colourOf, data.derivations);
  page.montage = data.montage;
}

function render(reply) {
  const recording = reply.recordings.find((r) => r.status === "processed");
  if (!recording) throw new Error(reasonOf(422, reply));
  Object.assign(page, { recording, labels: recording.labels, selected: undefined, explained: null, eegSpan: undefined });
  page.flagged = (reply.model.recommendation || {}).flagged || [];
  describe(reply.model);
  $("result").hidden = false;
  $("explanation").hidden = true;
  Object.assign(T.state, { recordingId: null, recordedAt: null, annotations: [], marks: [] });
  window.eegfmMarks.reset();
  renderIdentity(recording, null);
  renderAnswer(recording);
  renderSummary(recording);
  drawTimeline(recording.window_predictions, page.labels);
  drawUncertainty(recording.window_predictions);
  window.eegfmEEG.load({
    file: page.file, windows: recording.window_predictions, episodes: recording.flagged_episodes || [],
    labels: page.labels, colourOf, duration: recording.eeg_seconds, call, form,
    onWindow: explainWindow,
    onTraces: (data) => tracesArrived(recording, data),
    onPage: (from, to) => {
      page.eegSpan = [from, to];
      drawTimeline(recording.window_predictions, page.labels);
      window.eegfmOverview.drawOverview();
    },
  });
  window.eegfmOverview.refresh();
  document.body.dataset.state = "rendered";
}

async function score(event) {
  event.preventDefault();
  sessionStorage.setItem(KEY_ITEM, $("key").value.trim());
  page.file = $("file").files[0];
  if (!page.file) return say("choose a recording file first", true);
  say("uploading ...");
  document.body.dataset.state = "scoring";
  try {
    render(await predict(page.file));
    say(`scored by model ${page.recording.model_version}`);
  } catch (err) {
    document.body.dataset.state = "error";
    say(err.message, true);
  }
}

// A click on the timeline: the window under it explained, and shown in the EEG.
function explain(event) {
  if (!page.recording || !page.xToWindow) return;
  const k = page.xToWindow(event.clientX - event.target.getBoundingClientRect().left);
  if (k >= 0) explainWindow(k);
}

// The explanation's chosen class drawn behind the traces, in the montage on view.
function showOnTraces() {
  const reply = page.explained;
  T.state.overlayFor = reply ? (derivations) => window.eegfmHeatmaps.overlay(reply, $("explain-class").value, derivations) : null;
  if (T.state.data) T.state.overlay = T.state.overlayFor ? T.state.overlayFor(T.state.data.derivations) : null;
  if (reply && T.state.data) window.eegfmHeatmaps.render(reply, colourOf, T.state.data.derivations);
  const note = $("eeg-explained");
  note.hidden = !reply;
  if (reply) {
    const end = (reply.start_s + reply.duration_s).toFixed(1);
    note.textContent = `On the traces: window ${reply.window} (${reply.start_s.toFixed(1)}-${end} s), ` +
      `attributions to ${$("explain-class").value} (red adds, blue takes). ${window.eegfmHeatmaps.verdictText(reply)}`;
    note.className = `explained ${reply.explanation_reliable ? "ok" : "bad"}`;
  }
  window.eegfmEEG.redraw();
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
    page.explained = reply;
    $("explain-class").replaceChildren(...reply.labels.map((label) => Object.assign(element("option", label), { value: label })));
    $("explain-class").value = reply.predicted;
    showOnTraces();
    document.body.dataset.state = "explained";
    say(`window ${k} explained (${reply.predicted}): ${window.eegfmHeatmaps.verdictText(reply)}`);
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
    describe(await call("/v1/model", { method: "GET" }));
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
$("explain-class").addEventListener("change", showOnTraces);
describeModel();
