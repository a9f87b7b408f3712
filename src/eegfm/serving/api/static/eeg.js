// The EEG view's controls: montage, display filters (LFF, HFF, notch), timebase, sensitivity and
// per-channel gain, paging (buttons, keys, a go-to box), the band under the traces (each window's
// class, the flagged episodes, the artifact scores), and clicks: a window explained, a mark added.
// /v1/traces is fetched 60 s at a time (a page of 10-30 s never straddles two) and a few kept.
"use strict";

(function () {
  const T = window.eegfmTraces;
  const { state, RIGHT, BAND_ROWS } = T;
  const $ = (id) => document.getElementById(id);
  const CHUNK_S = 60; // one request: the server's cap
  const CACHED_CHUNKS = 4;
  const ARTIFACT_RULE = "artifact"; // the rule table's name for the pipeline's artifact score
  const LFF_CHOICES = [1, 1.6, 2, 3, 5]; // Hz: a display can only narrow the pipeline's band
  const HFF_CHOICES = [50, 35, 30, 25, 15];
  const GAIN_STEP = Math.SQRT2;
  const DOUBLE_CLICK_MS = 300;
  const KEYMAP = [
    ["→ / Page Down", "next page"], ["← / Page Up", "previous page"], ["Home / End", "first / last page"],
    ["↓ / ↑", "select the next / previous channel group"], ["+ / -", "more / less gain (the selection's, else every channel's)"],
    ["0", "every channel's gain back to 1"], ["Esc", "clear the selection, close this map, cancel a mark's edit"],
    ["g", "go to a time (the box)"], ["?", "show or hide this map"],
    ["click a label", "select that channel"], ["click the traces", "explain the window there"],
    ["double-click the traces", "add a mark there (on that channel)"],
  ];

  function say(text, isError) {
    $("eeg-status").textContent = text;
    $("eeg-status").className = isError ? "error" : "muted";
  }

  function lastPageStart() {
    const end = Math.max(state.pageSeconds, state.duration || 0, ...state.windows.map((w) => w.start_s + w.duration_s));
    return Math.max(0, Math.ceil(end / state.pageSeconds - 1e-9) * state.pageSeconds - state.pageSeconds);
  }

  // The traces' query for the controls as set: montage, its derivations, display filters.
  function query() {
    const q = new URLSearchParams({ montage: $("eeg-montage").value });
    if (q.get("montage") === "custom") q.set("derivations", $("eeg-custom").value.replace(/\s+/g, ""));
    [["lff", "eeg-lff"], ["hff", "eeg-hff"]].forEach(([name, id]) => $(id).value && q.set(name, $(id).value));
    if ($("eeg-notch").value !== "off") q.set("notch", $("eeg-notch").value);
    return q;
  }

  // One reply's derivations (and other signals) as µV, NaN where no window holds the sample.
  function decode(reply) {
    const { scale_uv: scale, missing } = reply.encoding;
    const values = (b64, step) => {
      const bytes = Uint8Array.from(atob(b64), (c) => c.charCodeAt(0));
      const view = new DataView(bytes.buffer);
      const out = new Float32Array(bytes.length / 2);
      for (let i = 0; i < out.length; i++) {
        const v = view.getInt16(2 * i, true);
        out[i] = v === missing ? NaN : v * step;
      }
      return out;
    };
    const derivations = reply.derivations.map((d) => ({ ...d, values: values(d.samples, scale) }));
    const extra = (reply.extra || []).map((d) => {
      const v = values(d.samples, d.scale_uv);
      return { ...d, values: v, sensitivity: ownSensitivity(v) };
    });
    return { ...reply, derivations, extra };
  }

  // An other signal's own µV/mm: the round step that makes its 99th percentile about 4 mm.
  function ownSensitivity(values) {
    const finite = Array.from(values).filter(Number.isFinite).map(Math.abs).sort((a, b) => a - b);
    const p99 = finite.length ? finite[Math.floor(0.99 * (finite.length - 1))] : 1;
    const steps = [1, 2, 3, 5, 7, 10, 15, 20, 30, 50, 70, 100, 150, 200, 300, 500, 700, 1000, 2000, 5000, 10000];
    return steps.find((s) => p99 / s <= 4) || steps[steps.length - 1];
  }

  // The 60 s holding `start` in the montage and filters set, fetched once, a few kept.
  function chunk(start) {
    const from = Math.floor(start / CHUNK_S) * CHUNK_S;
    const q = query();
    q.set("start_s", from);
    q.set("seconds", CHUNK_S);
    const key = q.toString();
    let entry = state.chunks.get(key);
    if (entry) state.chunks.delete(key);
    else {
      entry = state.call(`/v1/traces?${key}`, { method: "POST", body: state.form(state.file) }).then(decode);
      entry.catch(() => state.chunks.delete(key)); // a failed fetch is tried again next time
    }
    state.chunks.set(key, entry);
    while (state.chunks.size > CACHED_CHUNKS) state.chunks.delete(state.chunks.keys().next().value);
    return entry;
  }

  // Each window's class, the flagged episodes, the artifact scores: this page's.
  function drawBand() {
    const canvas = $("classband");
    const height = BAND_ROWS.reduce((sum, [, h]) => sum + h, 0) + 4;
    const { ctx, width } = T.sized(canvas, height);
    const x = T.grid(ctx, width, 0, height);
    const [from, to] = [state.pageStart, state.pageStart + state.pageSeconds];
    const clip = (a, b) => [x(Math.max(a, from)), x(Math.min(b, to))];
    const tops = BAND_ROWS.map((_, r) => 2 + BAND_ROWS.slice(0, r).reduce((sum, [, h]) => sum + h, 0));
    ctx.font = "11px system-ui, sans-serif";
    ctx.textAlign = "center";
    const shown = state.windows.filter((w) => w.start_s < to && w.start_s + w.duration_s > from);
    state.windows.forEach((w, k) => {
      if (w.start_s >= to || w.start_s + w.duration_s <= from) return;
      const [x0, x1] = clip(w.start_s, w.start_s + w.duration_s);
      ctx.fillStyle = state.colourOf(w.predicted_class);
      ctx.fillRect(x0 + 1, tops[0] + 2, x1 - x0 - 2, BAND_ROWS[0][1] - 4);
      ctx.fillStyle = "#fff";
      const p = w.confidence == null ? "" : ` ${(100 * w.confidence).toFixed(0)}%`;
      ctx.fillText(`${shown.length > 3 ? "" : `window ${k}: `}${w.predicted_class || "-"}${p}`, (x0 + x1) / 2, tops[0] + 15);
      artifact(ctx, w, x0, x1, tops[2], BAND_ROWS[2][1], shown.length > 3);
    });
    state.episodes.forEach((e) => {
      if (e.start_s >= to || e.end_s <= from) return;
      const [x0, x1] = clip(e.start_s, e.end_s);
      ctx.fillStyle = "#b00020";
      ctx.fillRect(x0 + 1, tops[1] + 2, x1 - x0 - 2, BAND_ROWS[1][1] - 4);
      ctx.fillStyle = "#fff";
      ctx.fillText(`${e.recommendation}: ${e.class}`, (x0 + x1) / 2, tops[1] + 12);
    });
    const w = state.windows[state.selected];
    if (w && w.start_s < to && w.start_s + w.duration_s > from) {
      const [x0, x1] = clip(w.start_s, w.start_s + w.duration_s);
      ctx.strokeStyle = "#000";
      ctx.lineWidth = 2;
      ctx.strokeRect(x0 + 1, 1, x1 - x0 - 2, height - 2);
    }
    T.bandLabels($("band-labels"), tops);
    canvas.dataset.windows = String(shown.length);
  }

  // The window's artifact score as a bar's height (0-1); red where the rule table flagged it.
  function artifact(ctx, w, x0, x1, top, h, brief) {
    const score = Math.max(0, Math.min(1, w.artifact_score || 0));
    const flagged = w.recommendation_rule === ARTIFACT_RULE;
    ctx.fillStyle = "#eef0f2";
    ctx.fillRect(x0 + 1, top + 2, x1 - x0 - 2, h - 4);
    ctx.fillStyle = flagged ? "#d7301f" : "#8c96a0";
    ctx.fillRect(x0 + 1, top + h - 2 - score * (h - 4), x1 - x0 - 2, score * (h - 4));
    ctx.fillStyle = flagged ? "#d7301f" : "#333";
    ctx.fillText(`${brief ? "" : "artifact "}${score.toFixed(2)}${flagged ? " (flagged)" : ""}`, (x0 + x1) / 2, top + 15);
  }

  // The display filters' menus from the first reply: the pipeline's values first, then narrower ones.
  function filterMenus(filters) {
    if (!filters || $("eeg-lff").dataset.ready) return;
    const menu = (id, pipelineHz, choices, keep) => {
      const options = [[" ", pipelineHz == null ? "none (pipeline)" : `${pipelineHz} Hz (pipeline)`]];
      choices.filter(keep).forEach((hz) => options.push([String(hz), `${hz} Hz`]));
      $(id).replaceChildren(...options.map(([v, text]) => Object.assign(document.createElement("option"), { value: v.trim(), textContent: text })));
    };
    const p = filters.pipeline || {};
    menu("eeg-lff", p.lff_hz, LFF_CHOICES, (hz) => p.lff_hz == null || hz > p.lff_hz);
    menu("eeg-hff", p.hff_hz, HFF_CHOICES, (hz) => p.hff_hz == null || hz < p.hff_hz);
    $("eeg-lff").dataset.ready = "1";
  }

  function filtersNote(data) {
    const f = data.filters;
    if (!f) return "Display: the pipeline's filters, as the model saw the EEG.";
    const hz = (v) => (v == null ? "off" : `${v} Hz`);
    const p = f.pipeline || {};
    const shown = `LFF ${hz(f.lff_hz ?? p.lff_hz)} · HFF ${hz(f.hff_hz ?? p.hff_hz)} · notch ${hz(f.notch_hz ?? p.notch_hz)}`;
    const model = data.is_model_montage ? "the model's own montage" : `the model reads ${data.model_montage || "referential"}`;
    return `${data.montage}, ${model}. Display: ${shown}. The model's input is unchanged: the pipeline's ` +
      `${hz(p.lff_hz)}-${hz(p.hff_hz)} band-pass, notch ${hz(p.notch_hz)}.`;
  }

  async function draw() {
    const token = ++state.token;
    const start = state.pageStart;
    $("eeg-page").textContent = `${T.fmt(start)}-${T.fmt(start + state.pageSeconds)} of ${T.fmt(state.duration)}`;
    $("eeg-prev").disabled = start <= 0;
    $("eeg-next").disabled = start >= lastPageStart();
    drawBand();
    state.onPage(start, start + state.pageSeconds);
    say("loading the EEG ...");
    try {
      const data = await chunk(start);
      if (token !== state.token) return; // the user paged on meanwhile
      state.data = data;
      filterMenus(data.filters);
      state.onTraces(data);
      state.overlay = state.overlayFor ? state.overlayFor(data.derivations) : null;
      const mmPerS = T.drawTraces(data);
      $("eeg-speed").textContent = `${state.pageSeconds} s page, ${mmPerS.toFixed(0)} mm/s`;
      $("eeg-filters").textContent = filtersNote(data);
      say("");
      const next = start + state.pageSeconds;
      if (next < data.duration_s && next % CHUNK_S === 0) chunk(next).catch(() => {});
    } catch (err) {
      if (token === state.token) say(`EEG: ${err.message}`, true);
    }
  }

  function goTo(seconds) {
    const page = state.pageSeconds;
    const start = Math.min(lastPageStart(), Math.max(0, Math.floor(seconds / page + 1e-9) * page));
    if (start === state.pageStart && $("traces").dataset.drawn) return;
    state.pageStart = start;
    draw();
  }

  // The time under a pointer event on the traces or the band (undefined in the calibration margin).
  function timeAt(event) {
    const box = event.currentTarget.getBoundingClientRect();
    const { width } = T.pageWidth(box.width);
    const px = event.clientX - box.left;
    return px > width ? undefined : state.pageStart + (px / width) * state.pageSeconds;
  }

  // The window at the clicked time (the latest one starting before it), explained; on the traces
  // only once no second click makes it a double click (a mark).
  function clicked(event) {
    const t = timeAt(event);
    clearTimeout(state.pendingClick);
    if (t === undefined || event.detail > 1) return;
    let found = -1;
    state.windows.forEach((w, k) => {
      if (t >= w.start_s && t < w.start_s + w.duration_s) found = k;
    });
    if (found < 0) return;
    if (event.currentTarget.id !== "traces") return state.onWindow(found);
    state.pendingClick = setTimeout(() => state.onWindow(found), DOUBLE_CLICK_MS);
  }

  function laneAt(event) {
    const y = event.clientY - event.currentTarget.getBoundingClientRect().top;
    return state.lanes.find((l) => Math.abs(l.y - y) <= l.height / 2);
  }

  // A double click on the traces: a new mark there, on the lane under the pointer.
  function doubleClicked(event) {
    const t = timeAt(event);
    if (t === undefined) return;
    const lane = laneAt(event);
    window.eegfmMarks.begin(t, lane ? lane.derivation.name : "");
  }

  // The lane under the pointer: its name, the time, and why it is interpolated if it is.
  function hover(event) {
    const t = timeAt(event);
    const lane = laneAt(event);
    if (!lane || t === undefined) return void (event.currentTarget.title = "");
    const stretch = (lane.derivation.interpolated || []).find((s) => t >= s.start_s && t < s.end_s);
    const clock = T.clock(t);
    event.currentTarget.title = `${lane.derivation.name} at ${T.fmt(t, 1)}${clock ? ` (${clock})` : ""}` +
      `${stretch ? `: interpolated, ${stretch.reason}` : ""}`;
  }

  // A new recording: its windows and episodes from /v1/predict; `file` is sent for its traces.
  function load(options) {
    Object.assign(state, options, { chunks: new Map(), pageStart: 0, selected: undefined, overlayFor: null, selection: null });
    state.gains = new Map();
    $("traces").dataset.drawn = "";
    $("eeg").hidden = false;
    draw();
  }

  function select(k) {
    state.selected = k;
    if (!state.windows || !state.windows[k]) return;
    const w = state.windows[k];
    if (w.start_s >= state.pageStart + state.pageSeconds || w.start_s + w.duration_s <= state.pageStart) goTo(w.start_s);
    else draw();
  }

  // +/-: the selection's gain, else the page's sensitivity one step on.
  function gain(up) {
    const lanes = state.lanes.filter((l) => T.isSelected(l));
    if (lanes.length) {
      lanes.forEach((l) => state.gains.set(l.derivation.name, (state.gains.get(l.derivation.name) || 1) * (up ? GAIN_STEP : 1 / GAIN_STEP)));
      return redraw();
    }
    const menu = $("eeg-sensitivity");
    const next = menu.selectedIndex + (up ? -1 : 1); // smaller µV/mm: bigger traces
    if (next < 0 || next >= menu.options.length) return;
    menu.selectedIndex = next;
    menu.dispatchEvent(new Event("change"));
  }

  // Up/Down: the next or previous channel group selected (none before the first, after the last).
  function group(step) {
    const groups = [...new Set(state.lanes.filter((l) => l.kind === "eeg").map((l) => l.derivation.group || ""))];
    const at = state.selection && state.selection.group !== undefined ? groups.indexOf(state.selection.group) : -1;
    const next = at < 0 ? (step > 0 ? 0 : groups.length - 1) : at + step;
    state.selection = next >= 0 && next < groups.length ? { group: groups[next] } : null;
    redraw();
  }

  function redraw() {
    if (state.data) T.drawTraces(state.data);
  }

  function keys(event) {
    if (!state.windows.length || $("eeg").hidden || /^(INPUT|SELECT|TEXTAREA)$/.test(event.target.tagName)) return;
    const page = state.pageSeconds;
    const actions = {
      ArrowRight: () => goTo(state.pageStart + page), PageDown: () => goTo(state.pageStart + page),
      ArrowLeft: () => goTo(state.pageStart - page), PageUp: () => goTo(state.pageStart - page),
      Home: () => goTo(0), End: () => goTo(lastPageStart()),
      ArrowDown: () => group(1), ArrowUp: () => group(-1),
      "+": () => gain(true), "=": () => gain(true), "-": () => gain(false), _: () => gain(false),
      0: () => { state.gains = new Map(); redraw(); },
      Escape: () => { state.selection = null; $("eeg-keymap").hidden = true; window.eegfmMarks.cancel(); redraw(); },
      g: () => $("eeg-jump").focus(), "?": () => toggleKeymap(),
    };
    const action = actions[event.key];
    if (!action || event.ctrlKey || event.metaKey || event.altKey) return;
    event.preventDefault();
    action();
  }

  function toggleKeymap() {
    const map = $("eeg-keymap");
    if (!map.childElementCount) {
      const table = document.createElement("table");
      KEYMAP.forEach(([key, what]) => {
        const row = table.insertRow();
        row.insertCell().append(Object.assign(document.createElement("kbd"), { textContent: key }));
        row.insertCell().textContent = what;
      });
      map.append(table);
    }
    map.hidden = !map.hidden;
  }

  function labelClicked(event) {
    const name = event.target.dataset && event.target.dataset.name;
    if (!name) return;
    state.selection = state.selection && state.selection.channel === name ? null : { channel: name };
    redraw();
  }

  function jump(event) {
    if (event.key !== "Enter") return;
    const t = T.parseTime($("eeg-jump").value);
    if (!Number.isFinite(t) || t < 0 || t >= (state.duration || Infinity)) {
      return say(`go to: expected a time from 0:00 to ${T.fmt(state.duration || 0)} (seconds, m:ss or h:mm:ss)`, true);
    }
    $("eeg-jump").blur();
    goTo(t);
  }

  function refetch() {
    state.chunks = new Map();
    $("eeg-custom").hidden = $("eeg-montage").value !== "custom";
    if ($("eeg-montage").value === "custom" && !$("eeg-custom").value.trim()) return $("eeg-custom").focus();
    if (state.windows.length) draw();
  }

  state.sensitivity = Number($("eeg-sensitivity").value);
  $("eeg-sensitivity").addEventListener("change", () => {
    state.sensitivity = Number($("eeg-sensitivity").value);
    if (state.windows.length) draw();
  });
  $("eeg-timebase").addEventListener("change", () => {
    state.pageSeconds = Number($("eeg-timebase").value);
    const t = state.pageStart;
    state.pageStart = -1; // redrawn whatever the new page's start
    if (state.windows.length) goTo(t);
  });
  ["eeg-montage", "eeg-lff", "eeg-hff", "eeg-notch"].forEach((id) => $(id).addEventListener("change", refetch));
  $("eeg-custom").addEventListener("change", refetch);
  $("eeg-prev").addEventListener("click", () => goTo(state.pageStart - state.pageSeconds));
  $("eeg-next").addEventListener("click", () => goTo(state.pageStart + state.pageSeconds));
  $("eeg-jump").addEventListener("keydown", jump);
  $("eeg-keys").addEventListener("click", toggleKeymap);
  $("eeg-labels").addEventListener("click", labelClicked);
  $("traces").addEventListener("click", clicked);
  $("traces").addEventListener("dblclick", doubleClicked);
  $("traces").addEventListener("mousemove", hover);
  $("classband").addEventListener("click", clicked);
  document.addEventListener("keydown", keys);
  window.addEventListener("resize", () => state.windows.length && draw());
  window.eegfmEEG = { load, goTo, select, draw, redraw, KEYMAP };
})();
