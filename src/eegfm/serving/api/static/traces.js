// The EEG itself, drawn as a clinical reviewer reads it: /v1/traces' derivations in the montage
// chosen (negative up, µV/mm, a 1 s grid, a calibration bar), channel groups apart, the recording's
// other signals (ECG, EOG ...) below with their own scale, the file's annotations and the
// reviewer's marks as lines, and an explanation's attributions behind the traces it explains.
// Plain JS, no library. The controls, fetching and keys are eeg.js'.
"use strict";

(function () {
  const PX_PER_MM = 96 / 25.4; // CSS pixels: 96 to the inch
  const PAPER_MM_S = 30; // the clinical paper speed; narrower screens draw slower, and say so
  const GROUP_GAP = 8; // between channel groups (chains)
  const EXTRA_GAP = 14; // between the EEG and the other signals
  const TOP = 16; // room for the annotations' labels
  const AXIS = 30; // elapsed time, then clock time
  const RIGHT = 70; // right of the page: the calibration mark, off the traces
  const BAND_ROWS = [["class", 22], ["flagged", 16], ["artifact", 22]];
  const MARK_COLOURS = { annotation: "#1b7f3b", mark: "#1f5fbf" };
  const $ = (id) => document.getElementById(id);
  const state = {
    pageStart: 0, pageSeconds: 10, sensitivity: 7, gains: new Map(), selection: null, token: 0, chunks: new Map(),
    lanes: [], windows: [], episodes: [], annotations: [], marks: [], overlay: null, recordedAt: null,
  };

  function pad(n, width = 2) {
    return String(n).padStart(width, "0");
  }

  // Elapsed time as m:ss (h:mm:ss past an hour); `decimals` places of seconds where asked.
  function fmt(seconds, decimals = 0) {
    const sign = seconds < 0 ? "-" : "";
    const total = Math.abs(seconds);
    const h = Math.floor(total / 3600);
    const m = Math.floor((total - 3600 * h) / 60);
    const s = total - 3600 * h - 60 * m;
    const sec = decimals ? s.toFixed(decimals).padStart(3 + decimals, "0") : pad(Math.floor(s + 1e-6));
    return h ? `${sign}${h}:${pad(m)}:${sec}` : `${sign}${m}:${sec}`;
  }

  // Clock time of an elapsed second, from the file's start ("2009-08-12T16:15:00"), or "".
  function clock(seconds) {
    if (!state.recordedAt) return "";
    const [hh, mm, ss] = state.recordedAt.slice(11, 19).split(":").map(Number);
    if ([hh, mm, ss].some(Number.isNaN)) return "";
    const t = Math.floor(hh * 3600 + mm * 60 + ss + seconds) % 86400;
    return `${pad(Math.floor(t / 3600))}:${pad(Math.floor((t % 3600) / 60))}:${pad(t % 60)}`;
  }

  // "12:05" or "1:02:03" or seconds: elapsed seconds, or NaN.
  function parseTime(text) {
    const parts = String(text).trim().split(":");
    if (!parts.length || parts.some((p) => !/^\d+(\.\d*)?$/.test(p)) || parts.length > 3) return NaN;
    return parts.reduce((sum, p) => sum * 60 + Number(p), 0);
  }

  // The canvas sized to its box and the device's pixels; its context in CSS pixels, cleared.
  function sized(canvas, height) {
    const ratio = window.devicePixelRatio || 1;
    const width = canvas.clientWidth || 1000;
    canvas.width = Math.round(width * ratio);
    canvas.height = Math.round(height * ratio);
    canvas.style.height = height + "px";
    const ctx = canvas.getContext("2d");
    ctx.setTransform(ratio, 0, 0, ratio, 0, 0);
    ctx.fillStyle = "#fff";
    ctx.fillRect(0, 0, width, height);
    return { ctx, width, height };
  }

  // The page's width in pixels at the paper speed, or the screen's if narrower; its mm/s.
  function pageWidth(canvasWidth) {
    const wanted = state.pageSeconds * PAPER_MM_S * PX_PER_MM;
    const width = Math.min(canvasWidth - RIGHT, wanted);
    return { width, mmPerS: width / PX_PER_MM / state.pageSeconds };
  }

  // The 1 s grid over the page; the page's time-to-x function.
  function grid(ctx, canvasWidth, top, bottom) {
    const { width } = pageWidth(canvasWidth);
    const x = (t) => ((t - state.pageStart) / state.pageSeconds) * width;
    ctx.lineWidth = 1;
    for (let s = 0; s <= state.pageSeconds; s++) {
      ctx.strokeStyle = s % 5 === 0 ? "#c9ced6" : "#e4e7eb";
      ctx.beginPath();
      ctx.moveTo(Math.round(x(state.pageStart + s)) + 0.5, top);
      ctx.lineTo(Math.round(x(state.pageStart + s)) + 0.5, bottom);
      ctx.stroke();
    }
    return x;
  }

  // Each lane's baseline: derivations by group with a gap between groups, then the other signals.
  function layout(data, laneHeight) {
    const lanes = [];
    let y = TOP + laneHeight / 2;
    data.derivations.forEach((d, i) => {
      if (i > 0 && (d.group || "") !== (data.derivations[i - 1].group || "")) y += GROUP_GAP;
      lanes.push({ y, derivation: d, kind: "eeg" });
      y += laneHeight;
    });
    (data.extra || []).forEach((d, i) => {
      if (i === 0) y += EXTRA_GAP;
      lanes.push({ y, derivation: d, kind: "extra" });
      y += laneHeight;
    });
    return { lanes, bottom: y - laneHeight / 2 };
  }

  // µV/mm of a lane: the page's sensitivity times its own gain (an extra signal: its own scale).
  function lanePxPerUv(lane) {
    const gain = state.gains.get(lane.derivation.name) || 1;
    const sensitivity = lane.kind === "extra" ? lane.derivation.sensitivity : state.sensitivity;
    return (PX_PER_MM / sensitivity) * gain;
  }

  // Stretches where no window holds the EEG: shaded and said why (a rejected window's rules).
  function drawGaps(ctx, data, x, bottom) {
    if (!data.derivations.length) return;
    const values = data.derivations[0].values;
    const first = Math.round((state.pageStart - data.start_s) * data.sfreq);
    const n = state.pageSeconds * data.sfreq;
    const missing = (k) => first + k >= values.length || Number.isNaN(values[first + k]);
    let k = 0;
    while (k < n) {
      if (!missing(k)) { k++; continue; }
      const from = k;
      while (k < n && missing(k)) k++;
      const [t0, t1] = [state.pageStart + from / data.sfreq, state.pageStart + k / data.sfreq];
      const rejected = (data.rejected || []).find((r) => r.start_s < t1 && r.end_s > t0);
      const why = t0 >= data.duration_s ? "after the recording's end"
        : rejected ? `no window: rejected (${rejected.rules.join(", ") || "quality"})` : "no window here";
      ctx.fillStyle = "#f1f2f4";
      ctx.fillRect(x(t0), TOP, x(t1) - x(t0), bottom - TOP);
      ctx.fillStyle = "#777";
      ctx.textAlign = "center";
      ctx.fillText(why, (x(t0) + x(Math.max(Math.min(t1, data.duration_s), t0 + 0.5))) / 2, TOP + 14);
    }
  }

  // An explanation's attributions behind each lane it covers: red adds to the class, blue takes.
  function drawOverlay(ctx, x) {
    const o = state.overlay;
    if (!o) return;
    state.lanes.forEach((lane) => {
      const row = lane.kind === "eeg" ? o.rows.get(lane.derivation.name) : undefined;
      if (!row) return;
      row.forEach((value, b) => {
        const t0 = o.start_s + b * o.resolution_s;
        const t1 = t0 + o.resolution_s;
        if (t1 <= state.pageStart || t0 >= state.pageStart + state.pageSeconds) return;
        const v = Math.max(-1, Math.min(1, value / o.scale));
        ctx.fillStyle = v >= 0 ? `rgba(215,48,31,${0.45 * v})` : `rgba(33,102,172,${-0.45 * v})`;
        ctx.fillRect(x(t0), lane.y - lane.height / 2, x(t1) - x(t0) + 0.5, lane.height);
      });
    });
  }

  // The lane's samples of this page, solid where measured, grey dashed where interpolated.
  function drawTrace(ctx, lane, data, x) {
    const d = lane.derivation;
    const first = Math.round((state.pageStart - data.start_s) * data.sfreq);
    const n = Math.min(state.pageSeconds * data.sfreq, d.values.length - first);
    const pxPerUv = lanePxPerUv(lane);
    const stretches = d.interpolated || [];
    const isInterpolated = (t) => stretches.some((s) => t >= s.start_s && t < s.end_s);
    [false, true].forEach((interpolated) => {
      if (interpolated && !stretches.length) return;
      ctx.beginPath();
      let pen = false;
      for (let k = 0; k < n; k++) {
        const v = d.values[first + k];
        const t = state.pageStart + k / data.sfreq;
        if (Number.isNaN(v) || isInterpolated(t) !== interpolated) { pen = false; continue; }
        const py = lane.y + v * pxPerUv; // negative up: the clinical convention
        pen ? ctx.lineTo(x(t), py) : ctx.moveTo(x(t), py);
        pen = true;
      }
      ctx.strokeStyle = interpolated ? "#9aa0a6" : lane.kind === "extra" ? "#6b3d9a" : "#111";
      ctx.setLineDash(interpolated ? [4, 3] : []);
      ctx.lineWidth = interpolated ? 1 : 0.9;
      ctx.stroke();
    });
    ctx.setLineDash([]);
  }

  // The file's annotations and the reviewer's marks on this page: a line at the onset (a band
  // over its duration), over one lane when the mark names a channel, its text above.
  function drawNotes(ctx, x, bottom) {
    const notes = [
      ...state.annotations.map((a) => ({ ...a, kind: "annotation" })),
      ...state.marks.map((m) => ({ ...m, kind: "mark" })),
    ].filter((n) => n.shown !== false && n.onset_s < state.pageStart + state.pageSeconds
      && n.onset_s + (n.duration_s || 0) >= state.pageStart);
    ctx.font = "11px system-ui, sans-serif";
    ctx.textAlign = "left";
    notes.forEach((note) => {
      const lane = note.channel ? state.lanes.find((l) => l.derivation.name === note.channel) : null;
      const [top, low] = lane ? [lane.y - lane.height / 2, lane.y + lane.height / 2] : [TOP, bottom];
      const colour = MARK_COLOURS[note.kind];
      const x0 = x(Math.max(note.onset_s, state.pageStart));
      const x1 = x(Math.min(note.onset_s + (note.duration_s || 0), state.pageStart + state.pageSeconds));
      ctx.fillStyle = colour + "14"; // a light band: annotations may tile the whole recording
      if (x1 > x0 + 1) ctx.fillRect(x0, top, x1 - x0, low - top);
      ctx.strokeStyle = colour;
      ctx.setLineDash([3, 2]);
      ctx.beginPath();
      ctx.moveTo(Math.round(x0) + 0.5, top);
      ctx.lineTo(Math.round(x0) + 0.5, low);
      ctx.stroke();
      ctx.setLineDash([]);
      const text = note.text.slice(0, 40);
      const y = (lane ? top : 0) + 11;
      ctx.fillStyle = "rgba(255,255,255,0.85)"; // readable over the traces it sits on
      ctx.fillRect(x0 + 2, y - 10, ctx.measureText(text).width + 3, 13);
      ctx.fillStyle = colour;
      ctx.fillText(text, x0 + 3, y);
    });
  }

  // Calibration marks right of the traces: a vertical bar of a round µV value at this
  // sensitivity, and one for each other signal at its own scale.
  function calibration(ctx, width, lanes) {
    const bar = (x0, y0, uv, pxPerUv, colour) => {
      const h = uv * pxPerUv;
      ctx.strokeStyle = colour;
      ctx.lineWidth = 1.5;
      ctx.beginPath();
      ctx.moveTo(x0 - 4, y0 - h / 2);
      ctx.lineTo(x0, y0 - h / 2);
      ctx.lineTo(x0, y0 + h / 2);
      ctx.lineTo(x0 - 4, y0 + h / 2);
      ctx.stroke();
      ctx.fillStyle = colour;
      ctx.textAlign = "left";
      ctx.fillText(`${uv} µV`, x0 + 4, y0 + 4);
    };
    const round = (most) => [1, 2, 5, 10, 20, 50, 100, 200, 500, 1000, 2000, 5000].filter((v) => v <= most).pop() || 1;
    const eeg = lanes.filter((l) => l.kind === "eeg");
    if (eeg.length) {
      const last = eeg[eeg.length - 1];
      bar(width - RIGHT + 14, last.y - last.height, round(state.sensitivity * 8), PX_PER_MM / state.sensitivity, "#b00020");
      ctx.fillStyle = "#666";
      ctx.fillText(`${state.sensitivity} µV/mm`, width - RIGHT + 6, TOP + 4);
    }
    lanes.filter((l) => l.kind === "extra").forEach((l) => {
      const pxPerUv = lanePxPerUv(l);
      bar(width - RIGHT + 14, l.y, round(0.8 * l.height / pxPerUv), pxPerUv, "#6b3d9a");
    });
  }

  function timeLabels(ctx, x, y) {
    ctx.fillStyle = "#444";
    ctx.textAlign = "center";
    const step = state.pageSeconds > 15 ? 5 : state.pageSeconds > 10 ? 2 : 1;
    for (let s = 0; s <= state.pageSeconds; s += step) {
      const t = state.pageStart + s;
      const px = Math.max(x(t), 16);
      ctx.fillText(fmt(t), px, y);
      if (state.recordedAt) {
        ctx.fillStyle = "#888";
        ctx.fillText(clock(t), px, y + 12);
        ctx.fillStyle = "#444";
      }
    }
  }

  // The explained window: a bar along the top and its edges.
  function highlight(ctx, x, top, bottom) {
    const w = state.windows[state.selected];
    if (!w) return;
    const end = state.pageStart + state.pageSeconds;
    const x0 = x(Math.max(w.start_s, state.pageStart));
    const x1 = x(Math.min(w.start_s + w.duration_s, end));
    if (x1 <= x0) return;
    ctx.fillStyle = "#f2b600";
    ctx.fillRect(x0, 0, x1 - x0, 3);
    ctx.strokeStyle = "#f2b600";
    [w.start_s, w.start_s + w.duration_s].forEach((t) => {
      if (t <= state.pageStart || t >= end) return;
      ctx.beginPath();
      ctx.moveTo(x(t), top);
      ctx.lineTo(x(t), bottom);
      ctx.stroke();
    });
  }

  // The lane height that fits every lane on the screen below the canvas' top, within 14-34 px.
  function laneHeight(canvas, count) {
    const top = canvas.getBoundingClientRect().top + window.scrollY;
    const room = window.innerHeight - Math.min(top, window.innerHeight * 0.5) - AXIS - 70;
    return Math.max(14, Math.min(34, Math.floor(room / Math.max(1, count))));
  }

  function drawTraces(data) {
    const canvas = $("traces");
    const count = data.derivations.length + (data.extra || []).length;
    const height = laneHeight(canvas, count);
    const { lanes, bottom } = layout(data, height);
    lanes.forEach((l) => (l.height = height));
    state.lanes = lanes;
    const { ctx, width } = sized(canvas, bottom + AXIS);
    ctx.font = "11px system-ui, sans-serif";
    const x = grid(ctx, width, TOP, bottom);
    highlight(ctx, x, TOP, bottom);
    drawOverlay(ctx, x);
    drawGaps(ctx, data, x, bottom);
    ctx.save();
    ctx.beginPath();
    ctx.rect(0, TOP, pageWidth(width).width, bottom - TOP);
    ctx.clip(); // a large deflection may cross its neighbours, never the time axis
    lanes.forEach((lane) => drawTrace(ctx, lane, data, x));
    ctx.restore();
    drawNotes(ctx, x, bottom);
    ctx.strokeStyle = "#888";
    ctx.beginPath();
    ctx.moveTo(0, bottom + 0.5);
    ctx.lineTo(width, bottom + 0.5);
    ctx.stroke();
    calibration(ctx, width, lanes);
    timeLabels(ctx, x, bottom + 13);
    labels($("eeg-labels"), lanes);
    canvas.dataset.start = String(state.pageStart);
    canvas.dataset.sensitivity = String(state.sensitivity);
    canvas.dataset.lanes = lanes.map((l) => l.derivation.name).join(",");
    canvas.dataset.drawn = `${state.pageStart}@${state.sensitivity}`;
    return pageWidth(width).mmPerS;
  }

  function why(stretches) {
    return stretches.map((s) => `${fmt(s.start_s)}-${fmt(s.end_s)} ${s.reason}`).join("\n");
  }

  // The lanes' names beside the canvas at their baselines: the selected ones bold, a gain other
  // than 1 shown, interpolated ones grey with why.
  function labels(holder, lanes) {
    const end = state.pageStart + state.pageSeconds;
    holder.replaceChildren(
      ...lanes.map((lane) => {
        const d = lane.derivation;
        const label = document.createElement("span");
        const gain = state.gains.get(d.name);
        label.textContent = gain && gain !== 1 ? `${d.name} ×${+gain.toFixed(2)}` : d.name;
        label.style.top = `${lane.y - 8}px`;
        label.dataset.name = d.name;
        const classes = [lane.kind === "extra" ? "extra" : ""];
        if (isSelected(lane)) classes.push("selected");
        const shown = (d.interpolated || []).filter((s) => s.end_s > state.pageStart && s.start_s < end);
        if (shown.length) {
          classes.push("interpolated");
          label.title = `${d.name}: interpolated electrode\n${why(shown)}`;
        } else {
          label.title = lane.kind === "extra" ? `${d.name}: ${d.sensitivity} µV/mm, its own scale` : `${d.name}: click to select, + / - for its gain`;
        }
        label.className = classes.filter(Boolean).join(" ");
        return label;
      }),
    );
    const interpolated = lanes.filter((l) => (l.derivation.interpolated || []).length);
    $("eeg-interpolated").hidden = !interpolated.length;
    $("eeg-interpolated").title = interpolated.map((l) => `${l.derivation.name}: ${why(l.derivation.interpolated)}`).join("\n");
  }

  function isSelected(lane) {
    const s = state.selection;
    if (!s) return false;
    return s.channel ? s.channel === lane.derivation.name : lane.kind === "eeg" && (lane.derivation.group || "") === s.group;
  }

  // The band rows' names beside the band canvas.
  function bandLabels(holder, tops) {
    holder.replaceChildren(
      ...BAND_ROWS.map(([name, h], r) => {
        const label = document.createElement("span");
        label.textContent = name;
        label.style.top = `${tops[r] + h / 2 - 8}px`;
        return label;
      }),
    );
  }

  window.eegfmTraces = {
    state, RIGHT, BAND_ROWS, PX_PER_MM, fmt, clock, parseTime, sized, grid, pageWidth, drawTraces,
    bandLabels, isSelected,
  };
})();
