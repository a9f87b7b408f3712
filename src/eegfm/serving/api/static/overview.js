// The whole recording at a glance and its events: an overview strip (each window's class, the
// model's episodes, the file's annotations, the reviewer's marks, the page on view; a click goes
// there) and one table of those events in time order (a click on a row goes to it).
"use strict";

(function () {
  const T = window.eegfmTraces;
  const { state } = T;
  const $ = (id) => document.getElementById(id);
  const KINDS = {
    episode: ["model", "#b00020", "show-episodes"],
    annotation: ["file", "#1b7f3b", "show-annotations"],
    mark: ["reviewer", "#1f5fbf", "show-marks"],
  };

  function shown(kind) {
    return $(KINDS[kind][2]).checked;
  }

  // Every event in time order: {kind, onset_s, duration_s, text, detail, ref}.
  function events() {
    const list = [];
    if (shown("episode")) {
      state.episodes.forEach((e, i) => list.push({
        kind: "episode", onset_s: e.start_s, duration_s: e.end_s - e.start_s, ref: i,
        text: `${e.class} (${e.recommendation})`,
        detail: e.peak_probability == null ? `${e.windows} windows` : `peak p ${e.peak_probability.toFixed(2)}, ${e.windows} windows`,
      }));
    }
    if (shown("annotation")) {
      state.annotations.forEach((a, i) => list.push({ kind: "annotation", onset_s: a.onset_s, duration_s: a.duration_s, text: a.text, detail: "", ref: i }));
    }
    if (shown("mark")) {
      state.marks.forEach((m, i) => list.push({
        kind: "mark", onset_s: m.onset_s, duration_s: m.duration_s, text: m.text, detail: m.channel || "", ref: i,
      }));
    }
    return list.sort((a, b) => a.onset_s - b.onset_s || a.kind.localeCompare(b.kind));
  }

  function drawOverview() {
    const canvas = $("overview");
    const { ctx, width, height } = T.sized(canvas, 46);
    const end = Math.max(state.duration || 0, ...state.windows.map((w) => w.start_s + w.duration_s), 1);
    const x = (t) => (t / end) * width;
    ctx.fillStyle = "#f3f4f6";
    ctx.fillRect(0, 0, width, height);
    state.windows.forEach((w) => {
      ctx.fillStyle = state.colourOf(w.predicted_class);
      ctx.fillRect(x(w.start_s), 4, Math.max(1, x(w.start_s + w.duration_s) - x(w.start_s)), 16);
    });
    if (shown("episode")) {
      state.episodes.forEach((e) => {
        ctx.fillStyle = KINDS.episode[1];
        ctx.fillRect(x(e.start_s), 22, Math.max(2, x(e.end_s) - x(e.start_s)), 7);
      });
    }
    const ticks = (items, kind, top) => items.forEach((a) => {
      ctx.fillStyle = KINDS[kind][1];
      ctx.fillRect(Math.floor(x(a.onset_s)), top, 2, 9);
    });
    if (shown("annotation")) ticks(state.annotations, "annotation", 31);
    if (shown("mark")) ticks(state.marks, "mark", 31);
    const [from, to] = [state.pageStart, state.pageStart + state.pageSeconds];
    ctx.strokeStyle = "#111";
    ctx.lineWidth = 2;
    ctx.strokeRect(x(from) + 1, 1, Math.max(3, x(Math.min(to, end)) - x(from) - 2), height - 2);
    ctx.fillStyle = "#555";
    ctx.font = "10px system-ui, sans-serif";
    ctx.textAlign = "right";
    ctx.fillText(T.fmt(end), width - 3, height - 3);
    ctx.textAlign = "left";
    ctx.fillText("0:00", 3, height - 3);
    canvas.dataset.end = String(end);
  }

  function goToClicked(event) {
    const box = event.currentTarget.getBoundingClientRect();
    const end = Number(event.currentTarget.dataset.end || 0);
    window.eegfmEEG.goTo(((event.clientX - box.left) / box.width) * end);
  }

  function cell(row, text, className) {
    const c = row.insertCell();
    c.textContent = text;
    if (className) c.className = className;
    return c;
  }

  function renderEvents() {
    const table = $("events");
    table.replaceChildren();
    const head = table.createTHead().insertRow();
    ["time", state.recordedAt ? "clock" : null, "from", "what", "duration", ""].filter((h) => h !== null)
      .forEach((h) => (head.appendChild(document.createElement("th")).textContent = h));
    const body = table.createTBody();
    const list = events();
    list.forEach((e) => {
      const row = body.insertRow();
      row.dataset.kind = e.kind;
      row.dataset.onset = String(e.onset_s);
      row.tabIndex = 0;
      row.title = "go there";
      cell(row, T.fmt(e.onset_s, 1), "n");
      if (state.recordedAt) cell(row, T.clock(e.onset_s), "n");
      const kind = cell(row, KINDS[e.kind][0], `kind ${e.kind}`);
      kind.title = { episode: "the model's flagged episode", annotation: "the file's own annotation", mark: "a reviewer's mark" }[e.kind];
      cell(row, e.text, "what");
      cell(row, e.duration_s ? `${e.duration_s.toFixed(1)} s` : "", "n");
      cell(row, e.detail, "muted");
      const go = () => {
        window.eegfmEEG.goTo(e.onset_s);
        if (e.kind === "mark") window.eegfmMarks.edit(e.ref);
      };
      row.addEventListener("click", go);
      row.addEventListener("keydown", (k) => k.key === "Enter" && go());
    });
    if (!list.length) cell(body.insertRow(), "none", "muted");
    table.dataset.events = String(list.length);
  }

  function refresh() {
    drawOverview();
    renderEvents();
  }

  ["show-episodes", "show-annotations", "show-marks"].forEach((id) => $(id).addEventListener("change", () => {
    state.annotations.forEach((a) => (a.shown = shown("annotation")));
    state.marks.forEach((m) => (m.shown = shown("mark")));
    refresh();
    window.eegfmEEG.redraw();
  }));
  $("overview").addEventListener("click", goToClicked);
  window.eegfmOverview = { refresh, drawOverview };
})();
