// /v1/explain's reply drawn in the montage being read: the verdict, its reasons, and one
// derivation x time heatmap per class (integrated gradients; red adds to the class, blue takes from
// it, one colour scale for all). The model reads electrodes: a derivation's attribution is the mean
// of its electrodes' (A-B: of A's and B's; A-avg or A: A's), so the maps sit under the traces read.
"use strict";

(function () {
  const LEFT = 52;
  const BOTTOM = 16;
  const ROW = 13;
  const WIDTH = 500;

  function diverging(value, scale) {
    const v = Math.max(-1, Math.min(1, value / scale));
    const fade = Math.round(255 * (1 - Math.abs(v)));
    return v >= 0 ? `rgb(255,${fade},${fade})` : `rgb(${fade},${fade},255)`;
  }

  // The class's map as rows by derivation name: each the mean of its electrodes' rows.
  function mapRows(reply, label, derivations) {
    const rows = new Map();
    const map = reply.maps[label];
    derivations.forEach((d) => {
      const electrodes = (d.electrodes || []).map((e) => reply.channels.indexOf(e)).filter((c) => c >= 0);
      if (!electrodes.length) return;
      rows.set(d.name, map[0].map((_, b) => electrodes.reduce((sum, c) => sum + map[c][b], 0) / electrodes.length));
    });
    return rows;
  }

  function largest(rows) {
    let most = 1e-12;
    rows.forEach((row) => row.forEach((v) => (most = Math.max(most, Math.abs(v)))));
    return most;
  }

  function scaleOf(reply, derivations) {
    return Math.max(...reply.labels.map((label) => largest(mapRows(reply, label, derivations))));
  }

  // What eeg.js draws behind the traces: `label`'s rows over the explained window, on its own
  // colour scale (the heatmaps share one, to compare classes; the traces show one class).
  function overlay(reply, label, derivations) {
    const rows = mapRows(reply, label, derivations);
    return { rows, scale: largest(rows), start_s: reply.start_s, resolution_s: reply.resolution_s };
  }

  function drawMap(canvas, rows, reply, scale) {
    const names = [...rows.keys()];
    const bins = names.length ? rows.get(names[0]).length : 1;
    const width = canvas.width - LEFT;
    const cell = width / bins;
    const ctx = canvas.getContext("2d");
    names.forEach((name, r) =>
      rows.get(name).forEach((value, b) => {
        ctx.fillStyle = diverging(value, scale);
        ctx.fillRect(LEFT + b * cell, r * ROW, Math.ceil(cell), ROW);
      }),
    );
    ctx.fillStyle = "#333";
    ctx.font = "10px system-ui, sans-serif";
    ctx.textAlign = "right";
    names.forEach((name, r) => ctx.fillText(name, LEFT - 3, r * ROW + 10));
    ctx.textAlign = "center";
    const seconds = reply.duration_s;
    for (let t = 0; t <= seconds; t += Math.max(1, Math.round(seconds / 5))) {
      const x = LEFT + (width * t) / seconds;
      ctx.fillText(`${(reply.start_s + t).toFixed(0)} s`, Math.min(Math.max(x, LEFT + 10), canvas.width - 12), names.length * ROW + 12);
    }
  }

  function checksText(checks) {
    const specificity = checks.class_specificity;
    const random = checks.model_randomisation;
    const first = specificity.applicable
      ? `class specificity: ${specificity.statistic} |rank correlation| ${specificity.value.toFixed(2)} (at most ${specificity.threshold})`
      : "class specificity: not applicable (one output)";
    return `${first}; model randomisation: |rank correlation| ${random.correlation.toFixed(2)} (at most ${random.threshold})`;
  }

  // A short verdict for beside the traces: whether the maps are the model's reasons.
  function verdictText(reply) {
    return reply.explanation_reliable
      ? "Explanation reliable: the maps depend on the class and on the learned weights."
      : "Explanation NOT reliable: read these maps as the input's features, not the model's reasons.";
  }

  function render(reply, colourOf, derivations) {
    const section = document.getElementById("explanation");
    section.hidden = false;
    document.getElementById("explain-title").textContent =
      `Window ${reply.window} (${reply.start_s.toFixed(1)}-${(reply.start_s + reply.duration_s).toFixed(1)} s): predicted ${reply.predicted}`;
    const verdict = document.getElementById("verdict");
    verdict.textContent = verdictText(reply);
    verdict.className = reply.explanation_reliable ? "ok" : "bad";
    const reasons = document.getElementById("reasons");
    reasons.replaceChildren(...reply.reasons.map((text) => Object.assign(document.createElement("li"), { textContent: text })));
    const scale = scaleOf(reply, derivations);
    document.getElementById("checks").textContent = `${checksText(reply.checks)}; colour scale ±${scale.toPrecision(2)} (logit per derivation and ${reply.resolution_s} s)`;
    const holder = document.getElementById("heatmaps");
    holder.replaceChildren();
    reply.labels.forEach((label) => {
      const rows = mapRows(reply, label, derivations);
      const figure = document.createElement("figure");
      const caption = document.createElement("figcaption");
      // a swatch styled through the DOM: the page's Content-Security-Policy refuses style attributes in markup
      const swatch = document.createElement("i");
      swatch.className = "swatch";
      swatch.style.background = colourOf(label);
      caption.append(swatch, `${label}: p = ${reply.probabilities[label].toFixed(3)}`);
      const canvas = document.createElement("canvas");
      canvas.width = WIDTH;
      canvas.height = rows.size * ROW + BOTTOM;
      canvas.className = "heatmap";
      canvas.dataset.label = label;
      canvas.dataset.rows = [...rows.keys()].join(",");
      drawMap(canvas, rows, reply, scale);
      figure.append(caption, canvas);
      holder.append(figure);
    });
    holder.dataset.maps = String(reply.labels.length);
  }

  window.eegfmHeatmaps = { render, overlay, verdictText };
})();
