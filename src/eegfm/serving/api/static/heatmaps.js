// /v1/explain's reply drawn: the verdict, its reasons, and one channel x time heatmap per class
// (integrated gradients; red adds to the class, blue takes from it, one colour scale for all).
"use strict";

(function () {
  const LEFT = 34;
  const BOTTOM = 16;
  const ROW = 13;
  const WIDTH = 500;

  function diverging(value, scale) {
    const v = Math.max(-1, Math.min(1, value / scale));
    const fade = Math.round(255 * (1 - Math.abs(v)));
    return v >= 0 ? `rgb(255,${fade},${fade})` : `rgb(${fade},${fade},255)`;
  }

  function drawMap(canvas, map, channels, reply, scale) {
    const bins = map[0].length;
    const width = canvas.width - LEFT;
    const cell = width / bins;
    const ctx = canvas.getContext("2d");
    map.forEach((row, c) =>
      row.forEach((value, b) => {
        ctx.fillStyle = diverging(value, scale);
        ctx.fillRect(LEFT + b * cell, c * ROW, Math.ceil(cell), ROW);
      }),
    );
    ctx.fillStyle = "#333";
    ctx.font = "10px system-ui, sans-serif";
    ctx.textAlign = "right";
    channels.forEach((name, c) => ctx.fillText(name, LEFT - 3, c * ROW + 10));
    ctx.textAlign = "center";
    const seconds = reply.duration_s;
    for (let t = 0; t <= seconds; t += Math.max(1, Math.round(seconds / 5))) {
      const x = LEFT + (width * t) / seconds;
      ctx.fillText(`${(reply.start_s + t).toFixed(0)} s`, Math.min(Math.max(x, LEFT + 10), canvas.width - 12), channels.length * ROW + 12);
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

  function render(reply, colours, labels) {
    const section = document.getElementById("explanation");
    section.hidden = false;
    document.getElementById("explain-title").textContent =
      `Window ${reply.window} (${reply.start_s.toFixed(1)}-${(reply.start_s + reply.duration_s).toFixed(1)} s): predicted ${reply.predicted}`;
    const verdict = document.getElementById("verdict");
    verdict.textContent = reply.explanation_reliable
      ? "Explanation reliable: the maps depend on the class and on the learned weights."
      : "Explanation NOT reliable: read these maps as the input's features, not the model's reasons.";
    verdict.className = reply.explanation_reliable ? "ok" : "bad";
    const reasons = document.getElementById("reasons");
    reasons.replaceChildren(...reply.reasons.map((text) => Object.assign(document.createElement("li"), { textContent: text })));
    const all = Object.values(reply.maps).flat(2).map(Math.abs);
    const scale = Math.max(1e-12, ...all);
    document.getElementById("checks").textContent = `${checksText(reply.checks)}; colour scale ±${scale.toPrecision(2)} (logit per channel and ${reply.resolution_s} s)`;
    const holder = document.getElementById("heatmaps");
    holder.replaceChildren();
    reply.labels.forEach((label) => {
      const figure = document.createElement("figure");
      const caption = document.createElement("figcaption");
      const colour = colours[labels.indexOf(label) % colours.length] || "#000";
      // a swatch styled through the DOM: the page's Content-Security-Policy refuses style attributes in markup
      const swatch = document.createElement("i");
      swatch.style.cssText = `display:inline-block;width:.8rem;height:.8rem;margin-right:.3rem;background:${colour}`;
      caption.append(swatch, `${label}: p = ${reply.probabilities[label].toFixed(3)}`);
      const canvas = document.createElement("canvas");
      canvas.width = WIDTH;
      canvas.height = reply.channels.length * ROW + BOTTOM;
      canvas.className = "heatmap";
      canvas.dataset.label = label;
      drawMap(canvas, reply.maps[label], reply.channels, reply, scale);
      figure.append(caption, canvas);
      holder.append(figure);
    });
    holder.dataset.maps = String(reply.labels.length);
  }

  window.eegfmHeatmaps = { render };
})();
