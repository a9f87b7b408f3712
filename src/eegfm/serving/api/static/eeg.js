// The EEG view's controls and the band under the traces: page by page (buttons, arrow keys),
// sensitivity in µV/mm, each window's most likely class, the flagged episodes and the artifact
// scores on the traces' time axis; a click on a window (band or traces) explains it.
"use strict";

(function () {
  const T = window.eegfmTraces;
  const { state, PAGE_S, RIGHT, BAND_ROWS } = T;
  const $ = (id) => document.getElementById(id);
  const ARTIFACT_RULE = "artifact"; // the rule table's name for the pipeline's artifact score

  function lastPageStart() {
    const end = Math.max(PAGE_S, ...state.windows.map((w) => w.start_s + w.duration_s));
    return Math.max(0, Math.ceil(end / PAGE_S - 1e-9) * PAGE_S - PAGE_S);
  }

  function say(text, isError) {
    $("eeg-status").textContent = text;
    $("eeg-status").className = isError ? "error" : "muted";
  }

  // Each window's class as a coloured bar, the flagged episodes, the artifact scores: this page's.
  function drawBand() {
    const canvas = $("classband");
    const height = BAND_ROWS.reduce((sum, [, h]) => sum + h, 0) + 4;
    const { ctx, width } = T.sized(canvas, height);
    const x = T.grid(ctx, width, 0, height);
    const [from, to] = [state.pageStart, state.pageStart + PAGE_S];
    const clip = (a, b) => [x(Math.max(a, from)), x(Math.min(b, to))];
    const tops = BAND_ROWS.map((_, r) => 2 + BAND_ROWS.slice(0, r).reduce((sum, [, h]) => sum + h, 0));
    ctx.font = "11px system-ui, sans-serif";
    ctx.textAlign = "center";
    state.windows.forEach((w, k) => {
      if (w.start_s >= to || w.start_s + w.duration_s <= from) return;
      const [x0, x1] = clip(w.start_s, w.start_s + w.duration_s);
      const c = state.labels.indexOf(w.predicted_class);
      ctx.fillStyle = c < 0 ? "#bbb" : state.colours[c % state.colours.length];
      ctx.fillRect(x0 + 1, tops[0] + 2, x1 - x0 - 2, BAND_ROWS[0][1] - 4);
      ctx.fillStyle = "#fff";
      const p = w.confidence == null ? "" : ` ${(100 * w.confidence).toFixed(0)}%`;
      ctx.fillText(`window ${k}: ${w.predicted_class || "-"}${p}`, (x0 + x1) / 2, tops[0] + 15);
      artifact(ctx, w, x0, x1, tops[2], BAND_ROWS[2][1]);
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
    T.labels($("band-labels"), BAND_ROWS.map(([name, h], r) => [name, tops[r] + h / 2]));
    canvas.dataset.windows = String(state.windows.filter((v) => v.start_s < to && v.start_s + v.duration_s > from).length);
  }

  // The window's artifact score as a bar's height (0-1); red where the rule table flagged it.
  function artifact(ctx, w, x0, x1, top, h) {
    const score = Math.max(0, Math.min(1, w.artifact_score || 0));
    const flagged = w.recommendation_rule === ARTIFACT_RULE;
    ctx.fillStyle = "#eef0f2";
    ctx.fillRect(x0 + 1, top + 2, x1 - x0 - 2, h - 4);
    ctx.fillStyle = flagged ? "#d7301f" : "#8c96a0";
    ctx.fillRect(x0 + 1, top + h - 2 - score * (h - 4), x1 - x0 - 2, score * (h - 4));
    ctx.fillStyle = flagged ? "#d7301f" : "#333";
    ctx.fillText(`artifact ${score.toFixed(2)}${flagged ? " (flagged)" : ""}`, (x0 + x1) / 2, top + 15);
  }

  async function draw() {
    const token = ++state.token;
    const start = state.pageStart;
    $("eeg-page").textContent = `${T.fmt(start)}-${T.fmt(start + PAGE_S)} of ${T.fmt(state.duration)}`;
    $("eeg-prev").disabled = start <= 0;
    $("eeg-next").disabled = start >= lastPageStart();
    drawBand();
    state.onPage(start, start + PAGE_S);
    say("loading the EEG ...");
    try {
      const data = await T.chunk(start);
      if (token !== state.token) return; // the user paged on meanwhile
      T.drawTraces(data);
      say("");
      if (start + PAGE_S < data.duration_s && (start + PAGE_S) % 60 === 0) T.chunk(start + PAGE_S).catch(() => {});
    } catch (err) {
      if (token === state.token) say(`EEG: ${err.message}`, true);
    }
  }

  function goTo(seconds) {
    const start = Math.min(lastPageStart(), Math.max(0, Math.floor(seconds / PAGE_S) * PAGE_S));
    if (start === state.pageStart && $("traces").dataset.drawn) return;
    state.pageStart = start;
    draw();
  }

  // The window at the clicked time (the latest one starting before it), explained.
  function clicked(event) {
    const box = event.currentTarget.getBoundingClientRect();
    const t = state.pageStart + ((event.clientX - box.left) / (box.width - RIGHT)) * PAGE_S;
    if (t >= state.pageStart + PAGE_S) return; // the calibration's margin
    let found = -1;
    state.windows.forEach((w, k) => {
      if (t >= w.start_s && t < w.start_s + w.duration_s) found = k;
    });
    if (found >= 0) state.onWindow(found);
  }

  // The lane under the pointer: its derivation, and why it is interpolated if it is.
  function hover(event) {
    const box = event.currentTarget.getBoundingClientRect();
    const y = event.clientY - box.top;
    const lane = state.lanes.find(([base]) => Math.abs(base - y) <= 17);
    const t = state.pageStart + ((event.clientX - box.left) / (box.width - RIGHT)) * PAGE_S;
    if (!lane) return void (event.currentTarget.title = "");
    const stretch = lane[1].interpolated.find((s) => t >= s.start_s && t < s.end_s);
    event.currentTarget.title = `${lane[1].name} at ${t.toFixed(1)} s${stretch ? `: interpolated, ${stretch.reason}` : ""}`;
  }

  // A new recording: its windows and episodes from /v1/predict; `file` is sent for its traces.
  function load(options) {
    Object.assign(state, options, { chunks: new Map(), pageStart: 0, selected: undefined });
    $("traces").dataset.drawn = "";
    $("eeg").hidden = false;
    draw();
  }

  function select(k) {
    state.selected = k;
    if (!state.windows || !state.windows[k]) return;
    const w = state.windows[k];
    if (w.start_s >= state.pageStart + PAGE_S || w.start_s + w.duration_s <= state.pageStart) goTo(w.start_s);
    else draw();
  }

  function keys(event) {
    if (!state.windows || $("eeg").hidden || /^(INPUT|SELECT|TEXTAREA)$/.test(event.target.tagName)) return;
    const step = { ArrowRight: 1, PageDown: 1, ArrowLeft: -1, PageUp: -1 }[event.key];
    if (step === undefined) return;
    event.preventDefault();
    goTo(state.pageStart + step * PAGE_S);
  }

  state.sensitivity = Number($("eeg-sensitivity").value);
  $("eeg-sensitivity").addEventListener("change", () => {
    state.sensitivity = Number($("eeg-sensitivity").value);
    if (state.windows) draw();
  });
  $("eeg-prev").addEventListener("click", () => goTo(state.pageStart - PAGE_S));
  $("eeg-next").addEventListener("click", () => goTo(state.pageStart + PAGE_S));
  $("traces").addEventListener("click", clicked);
  $("traces").addEventListener("mousemove", hover);
  $("classband").addEventListener("click", clicked);
  document.addEventListener("keydown", keys);
  window.eegfmEEG = { load, goTo, select };
})();
