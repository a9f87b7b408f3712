// The EEG itself, as a clinical reviewer reads it: /v1/traces' double-banana derivations of the
// recording (the samples the model saw), 10 s a page, sensitivity in µV/mm, negative up, a 1 s
// grid; under them each window's class, the flagged episodes and the artifact scores. A click on a
// window explains it. Plain JS, no library; pages are fetched 60 s at a time and a few kept.
"use strict";

(function () {
  const PAGE_S = 10;
  const CHUNK_S = 60; // one request: six pages, the server's cap
  const CACHED_CHUNKS = 4;
  const PX_PER_MM = 96 / 25.4; // CSS pixels: 96 to the inch
  const LANE = 34; // baseline to baseline, CSS px (9 mm)
  const CHAIN_GAP = 10; // between the double banana's chains
  const CHAIN_ENDS = [4, 8, 12, 16]; // a gap before these derivations (LL | RL | LP | RP | midline)
  const TOP = 6;
  const AXIS = 20;
  const RIGHT = 64; // right of the page: the calibration mark, off the traces
  const BAND_ROWS = [["class", 22], ["flagged", 16], ["artifact", 22]];
  const $ = (id) => document.getElementById(id);
  const state = { chunks: new Map(), pageStart: 0, token: 0, lanes: [] };

  function fmt(seconds) {
    const m = Math.floor(seconds / 60);
    return `${m}:${String(Math.round(seconds - 60 * m)).padStart(2, "0")}`;
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

  function laneY(i) {
    return TOP + LANE / 2 + i * LANE + CHAIN_GAP * CHAIN_ENDS.filter((end) => i >= end).length;
  }

  // One reply's derivations as µV (NaN where no window holds the sample).
  function decode(reply) {
    const { scale_uv: scale, missing } = reply.encoding;
    const derivations = reply.derivations.map((d) => {
      const bytes = Uint8Array.from(atob(d.samples), (c) => c.charCodeAt(0));
      const view = new DataView(bytes.buffer);
      const values = new Float32Array(bytes.length / 2);
      for (let i = 0; i < values.length; i++) {
        const step = view.getInt16(2 * i, true);
        values[i] = step === missing ? NaN : step * scale;
      }
      return { name: d.name, values, interpolated: d.interpolated };
    });
    return { ...reply, derivations };
  }

  // The 60 s holding `start`, fetched once and kept among the last few used.
  function chunk(start) {
    const key = Math.floor(start / CHUNK_S) * CHUNK_S;
    let entry = state.chunks.get(key);
    if (entry) state.chunks.delete(key);
    else {
      const body = state.form(state.file);
      entry = state.call(`/v1/traces?start_s=${key}&seconds=${CHUNK_S}`, { method: "POST", body }).then(decode);
      entry.catch(() => state.chunks.delete(key)); // a failed fetch is tried again next time
    }
    state.chunks.set(key, entry);
    while (state.chunks.size > CACHED_CHUNKS) state.chunks.delete(state.chunks.keys().next().value);
    return entry;
  }

  // The 1 s grid over the page's width (the canvas less RIGHT); the page's time-to-x function.
  function grid(ctx, canvasWidth, top, bottom) {
    const width = canvasWidth - RIGHT;
    const x = (t) => ((t - state.pageStart) / PAGE_S) * width;
    ctx.lineWidth = 1;
    for (let s = 0; s <= PAGE_S; s++) {
      ctx.strokeStyle = s % 5 === 0 ? "#c9ced6" : "#e4e7eb";
      ctx.beginPath();
      ctx.moveTo(Math.round(x(state.pageStart + s)) + 0.5, top);
      ctx.lineTo(Math.round(x(state.pageStart + s)) + 0.5, bottom);
      ctx.stroke();
    }
    return x;
  }

  // Stretches where no window holds the EEG: shaded and said why (a rejected window's rules).
  function drawGaps(ctx, data, x, bottom) {
    const values = data.derivations[0].values;
    const first = Math.round((state.pageStart - data.start_s) * data.sfreq);
    const n = PAGE_S * data.sfreq;
    let k = 0;
    while (k < n) {
      if (!(first + k >= values.length || Number.isNaN(values[first + k]))) { k++; continue; }
      const from = k;
      while (k < n && (first + k >= values.length || Number.isNaN(values[first + k]))) k++;
      const [t0, t1] = [state.pageStart + from / data.sfreq, state.pageStart + k / data.sfreq];
      const end = Math.min(t1, data.duration_s);
      const rejected = data.rejected.find((r) => r.start_s < t1 && r.end_s > t0);
      const why = t0 >= data.duration_s ? "after the recording's end"
        : rejected ? `no window: rejected (${rejected.rules.join(", ") || "quality"})` : "no window here";
      ctx.fillStyle = "#f1f2f4";
      ctx.fillRect(x(t0), TOP, x(t1) - x(t0), bottom - TOP);
      ctx.fillStyle = "#777";
      ctx.textAlign = "center";
      ctx.fillText(why, (x(t0) + x(Math.max(end, t0 + 0.5))) / 2, TOP + 14);
    }
  }

  // The derivation's samples of this page, solid where measured, grey dashed where interpolated.
  function drawTrace(ctx, derivation, i, data, x, pxPerUv) {
    const first = Math.round((state.pageStart - data.start_s) * data.sfreq);
    const n = Math.min(PAGE_S * data.sfreq, derivation.values.length - first);
    const base = laneY(i);
    const isInterpolated = (t) => derivation.interpolated.some((s) => t >= s.start_s && t < s.end_s);
    [false, true].forEach((interpolated) => {
      ctx.beginPath();
      let pen = false;
      for (let k = 0; k < n; k++) {
        const v = derivation.values[first + k];
        const t = state.pageStart + k / data.sfreq;
        if (Number.isNaN(v) || isInterpolated(t) !== interpolated) { pen = false; continue; }
        const px = x(t);
        const py = base + v * pxPerUv; // negative up: the clinical convention
        pen ? ctx.lineTo(px, py) : ctx.moveTo(px, py);
        pen = true;
      }
      ctx.strokeStyle = interpolated ? "#9aa0a6" : "#111";
      ctx.setLineDash(interpolated ? [4, 3] : []);
      ctx.lineWidth = interpolated ? 1 : 0.9;
      ctx.stroke();
    });
    ctx.setLineDash([]);
  }

  // A calibration mark: a vertical bar of a round µV value and a horizontal 1 s, with their labels.
  // A calibration mark right of the traces: a vertical bar of a round µV value at this sensitivity.
  function calibration(ctx, width, bottom, pxPerUv) {
    const uv = [10, 20, 50, 100, 200, 500, 1000, 2000].filter((v) => v <= state.sensitivity * 8).pop() || 10;
    const h = uv * pxPerUv;
    const [x0, y0] = [width - RIGHT + 14, bottom - 10];
    ctx.strokeStyle = "#b00020";
    ctx.lineWidth = 1.5;
    ctx.beginPath();
    ctx.moveTo(x0 - 4, y0 - h);
    ctx.lineTo(x0, y0 - h);
    ctx.lineTo(x0, y0);
    ctx.lineTo(x0 - 4, y0);
    ctx.stroke();
    ctx.fillStyle = "#b00020";
    ctx.textAlign = "left";
    ctx.fillText(`${uv} µV`, x0 + 4, y0 - h / 2 + 4);
    ctx.fillStyle = "#666";
    ctx.fillText(`${state.sensitivity} µV/mm`, width - RIGHT + 6, TOP + 10);
  }

  function timeLabels(ctx, x, y) {
    ctx.fillStyle = "#444";
    ctx.textAlign = "center";
    for (let s = 0; s <= PAGE_S; s++) {
      const t = state.pageStart + s;
      const px = Math.max(x(t), 14);
      ctx.fillText(fmt(t), px, y);
    }
  }

  // The explained window: a bar along the top and its edges, the traces left unshaded.
  function highlight(ctx, x, top, bottom) {
    const w = state.windows[state.selected];
    if (!w) return;
    const x0 = x(Math.max(w.start_s, state.pageStart));
    const x1 = x(Math.min(w.start_s + w.duration_s, state.pageStart + PAGE_S));
    if (x1 <= x0) return;
    ctx.fillStyle = "#f2b600";
    ctx.fillRect(x0, 0, x1 - x0, 4);
    ctx.strokeStyle = "#f2b600";
    [w.start_s, w.start_s + w.duration_s].forEach((t) => {
      if (t <= state.pageStart || t >= state.pageStart + PAGE_S) return;
      ctx.beginPath();
      ctx.moveTo(x(t), top);
      ctx.lineTo(x(t), bottom);
      ctx.stroke();
    });
  }

  function drawTraces(data) {
    const canvas = $("traces");
    const count = data.derivations.length;
    const bottom = laneY(count - 1) + LANE / 2;
    const { ctx, width } = sized(canvas, bottom + AXIS);
    ctx.font = "11px system-ui, sans-serif";
    const x = grid(ctx, width, TOP, bottom);
    highlight(ctx, x, TOP, bottom);
    drawGaps(ctx, data, x, bottom);
    const pxPerUv = PX_PER_MM / state.sensitivity;
    ctx.save();
    ctx.beginPath();
    ctx.rect(0, 0, width - RIGHT, bottom);
    ctx.clip(); // a large deflection may cross its neighbours, never the time axis
    data.derivations.forEach((d, i) => drawTrace(ctx, d, i, data, x, pxPerUv));
    ctx.restore();
    ctx.strokeStyle = "#888";
    ctx.beginPath();
    ctx.moveTo(0, bottom + 0.5);
    ctx.lineTo(width, bottom + 0.5);
    ctx.stroke();
    calibration(ctx, width, bottom, pxPerUv);
    timeLabels(ctx, x, bottom + 14);
    labels($("eeg-labels"), data.derivations.map((d, i) => [d.name, laneY(i), d.interpolated]));
    state.lanes = data.derivations.map((d, i) => [laneY(i), d]);
    canvas.dataset.start = String(state.pageStart);
    canvas.dataset.sensitivity = String(state.sensitivity);
    canvas.dataset.drawn = `${state.pageStart}@${state.sensitivity}`;
  }

  function why(stretches) {
    return stretches.map((s) => `${fmt(s.start_s)}-${fmt(s.end_s)} ${s.reason}`).join("\n");
  }

  // The derivations' (or rows') names beside the canvas, at their baselines; why where interpolated.
  function labels(holder, rows) {
    holder.replaceChildren(
      ...rows.map(([name, y, stretches]) => {
        const label = document.createElement("span");
        label.textContent = name;
        label.style.top = `${y - 8}px`;
        const shown = (stretches || []).filter((s) => s.end_s > state.pageStart && s.start_s < state.pageStart + PAGE_S);
        if (shown.length) {
          label.className = "interpolated";
          label.title = `${name}: interpolated electrode\n${why(shown)}`;
        }
        return label;
      }),
    );
    const interpolated = rows.filter(([, , s]) => (s || []).length);
    if (holder.id === "eeg-labels") {
      $("eeg-interpolated").hidden = !interpolated.length;
      $("eeg-interpolated").title = interpolated.map(([name, , s]) => `${name}: ${why(s)}`).join("\n");
    }
  }

  window.eegfmTraces = { state, PAGE_S, RIGHT, BAND_ROWS, fmt, sized, grid, labels, chunk, drawTraces };
})();
