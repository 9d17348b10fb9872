// wasmrelay dashboard charts: a small SVG chart module (lines/areas over time, a donut,
// grouped horizontal bars, stacked horizontal bars). No dependencies; every text goes in
// through textContent, never as markup.
"use strict";

const Chart = (() => {
  const NS = "http://www.w3.org/2000/svg";

  function el(name, attrs, parent) {
    const e = document.createElementNS(NS, name);
    for (const [k, v] of Object.entries(attrs || {})) e.setAttribute(k, String(v));
    if (parent) parent.appendChild(e);
    return e;
  }

  function text(parent, x, y, s, attrs) {
    const t = el("text", Object.assign({ x, y }, attrs || {}), parent);
    t.textContent = s;
    return t;
  }

  function title(parent, s) {
    el("title", {}, parent).textContent = s;
  }

  function svg(container, width, height) {
    container.replaceChildren();
    return el("svg", {
      viewBox: `0 0 ${width} ${height}`,
      width: "100%",
      role: "img",
      class: "chart",
    }, container);
  }

  // A "nice" upper bound for an axis: 1, 2, 5 × 10^n.
  function niceMax(v) {
    if (v <= 0) return 1;
    const p = Math.pow(10, Math.floor(Math.log10(v)));
    for (const m of [1, 2, 5, 10]) if (m * p >= v) return m * p;
    return 10 * p;
  }

  function fmtNumber(v) {
    if (v >= 1e6) return (v / 1e6).toFixed(1) + "M";
    if (v >= 1e4) return (v / 1e3).toFixed(0) + "k";
    if (v >= 1e3) return (v / 1e3).toFixed(1) + "k";
    return String(Math.round(v * 100) / 100);
  }

  function hhmm(unix) {
    const d = new Date(unix * 1000);
    return String(d.getHours()).padStart(2, "0") + ":" + String(d.getMinutes()).padStart(2, "0");
  }

  function legend(root, series, x, y) {
    let cx = x;
    for (const s of series) {
      el("rect", { x: cx, y: y - 9, width: 10, height: 10, rx: 2, fill: s.color }, root);
      const t = text(root, cx + 14, y, s.name, { class: "legend" });
      cx += 22 + 7 * s.name.length;
      title(t, s.name);
    }
  }

  // Time series: times (unix seconds) and series [{name, color, values, area, width,
  // opacity, dots}]. Values may be null (no sample): the line breaks there. Dots mark
  // non-zero values (every sample with `dots`). `integer` keeps the axis on whole numbers.
  function lines(container, times, series, opts) {
    const o = Object.assign({ width: 760, height: 240, yLabel: "", integer: false }, opts || {});
    const root = svg(container, o.width, o.height);
    const pad = { l: 44, r: 12, t: 22, b: 26 };
    const w = o.width - pad.l - pad.r;
    const h = o.height - pad.t - pad.b;
    let max = 0;
    for (const s of series) for (const v of s.values) if (v != null && v > max) max = v;
    max = niceMax(max);
    const n = Math.max(times.length - 1, 1);
    const X = (i) => pad.l + (w * i) / n;
    const Y = (v) => pad.t + h - (h * v) / max;
    // Whole-number ticks when asked: max is 1, 2 or 5 × 10^n.
    const steps = !o.integer ? 4 : max <= 5 ? max : max % 4 === 0 ? 4 : 5;
    for (let k = 0; k <= steps; k++) {
      const v = (max * k) / steps;
      el("line", { x1: pad.l, x2: pad.l + w, y1: Y(v), y2: Y(v), class: "grid" }, root);
      text(root, pad.l - 6, Y(v) + 4, fmtNumber(v), { class: "axis", "text-anchor": "end" });
    }
    const ticks = Math.min(6, times.length);
    for (let k = 0; k < ticks; k++) {
      const i = Math.round(((times.length - 1) * k) / Math.max(ticks - 1, 1));
      if (times[i] != null) {
        const anchor = k === 0 ? "start" : k === ticks - 1 ? "end" : "middle";
        text(root, X(i), o.height - 8, hhmm(times[i]), { class: "axis", "text-anchor": anchor });
      }
    }
    let drawn = 0;
    for (const s of series) {
      const g = el("g", { class: "series", "data-series": s.name }, root);
      let d = "";
      let area = "";
      let open = false;
      let start = 0;
      s.values.forEach((v, i) => {
        if (v == null) {
          if (open && s.area) area += `L${X(i - 1)},${Y(0)}L${X(start)},${Y(0)}Z`;
          open = false;
          return;
        }
        d += (open ? "L" : "M") + X(i) + "," + Y(v);
        if (s.area) area += (open ? "L" : "M") + X(i) + "," + Y(v);
        if (!open) start = i;
        open = true;
      });
      if (open && s.area) area += `L${X(s.values.length - 1)},${Y(0)}L${X(start)},${Y(0)}Z`;
      if (s.area && area) el("path", { d: area, fill: s.color, "fill-opacity": 0.15, stroke: "none" }, g);
      if (d) {
        el("path", {
          d, fill: "none", stroke: s.color, "stroke-width": s.width || 2,
          "stroke-opacity": s.opacity || 1, "stroke-linejoin": "round", "stroke-linecap": "round",
        }, g);
        drawn++;
      }
      // Dots where something happened, with the count on hover.
      s.values.forEach((v, i) => {
        if (v || (s.dots && v != null)) {
          const c = el("circle", { cx: X(i), cy: Y(v), r: s.dots ? 3.5 : 3, fill: s.color }, g);
          title(c, `${s.name} ${hhmm(times[i])}: ${v}`);
        }
      });
    }
    legend(root, series, pad.l, 14);
    if (o.yLabel) text(root, o.width - pad.r, 14, o.yLabel, { class: "axis", "text-anchor": "end" });
    return drawn;
  }

  // A donut of [{name, color, value}], with `center` text in the hole.
  function donut(container, items, center, opts) {
    const o = Object.assign({ width: 360, height: 240 }, opts || {});
    const root = svg(container, o.width, o.height);
    const total = items.reduce((a, b) => a + b.value, 0);
    const cx = 120, cy = o.height / 2, r = 90, inner = 58;
    let angle = -Math.PI / 2;
    let drawn = 0;
    if (total === 0) {
      el("circle", { cx, cy, r: (r + inner) / 2, fill: "none", class: "empty-ring", "stroke-width": r - inner }, root);
    }
    for (const it of items) {
      if (!it.value) continue;
      const a = (it.value / total) * Math.PI * 2;
      const end = angle + Math.min(a, Math.PI * 2 - 1e-6);
      const large = a > Math.PI ? 1 : 0;
      const p = (rad, ang) => [cx + rad * Math.cos(ang), cy + rad * Math.sin(ang)];
      const [x1, y1] = p(r, angle), [x2, y2] = p(r, end);
      const [x3, y3] = p(inner, end), [x4, y4] = p(inner, angle);
      const path = el("path", {
        d: `M${x1},${y1}A${r},${r} 0 ${large} 1 ${x2},${y2}L${x3},${y3}A${inner},${inner} 0 ${large} 0 ${x4},${y4}Z`,
        fill: it.color,
        "data-name": it.name,
        "data-value": it.value,
      }, root);
      title(path, `${it.name}: ${it.value} (${((100 * it.value) / total).toFixed(1)}%)`);
      angle += a;
      drawn++;
    }
    text(root, cx, cy - 2, center[0], { class: "donut-big", "text-anchor": "middle" });
    text(root, cx, cy + 18, center[1], { class: "axis", "text-anchor": "middle" });
    items.forEach((it, i) => {
      const y = 60 + i * 26;
      el("rect", { x: 240, y: y - 11, width: 12, height: 12, rx: 2, fill: it.color }, root);
      text(root, 258, y, `${it.name}`, { class: "legend" });
      text(root, o.width - 8, y, fmtNumber(it.value), { class: "legend strong", "text-anchor": "end" });
    });
    return drawn;
  }

  // Horizontal bars: rows [{label, values: [..], note}] against keys [{name, color}];
  // `stacked` stacks a row's values, otherwise they are grouped. `format` labels the
  // values; a row's `note` is written at the right.
  function bars(container, rows, keys, opts) {
    const o = Object.assign({ width: 760, stacked: false, max: null, format: fmtNumber }, opts || {});
    const rowH = o.stacked ? 28 : 12 * keys.length + 14;
    const notes = rows.some((r) => r.note);
    const pad = { l: 170, r: notes ? 190 : 60, t: 26, b: 8 };
    const height = pad.t + pad.b + Math.max(rows.length, 1) * rowH;
    const root = svg(container, o.width, height);
    const w = o.width - pad.l - pad.r;
    let max = o.max;
    if (max == null) {
      max = 0;
      for (const r of rows) {
        const v = o.stacked ? r.values.reduce((a, b) => a + b, 0) : Math.max(...r.values);
        if (v > max) max = v;
      }
      max = niceMax(max);
    }
    let drawn = 0;
    rows.forEach((r, i) => {
      const y0 = pad.t + i * rowH;
      const label = text(root, pad.l - 8, y0 + rowH / 2 + 4, r.label.length > 24 ? r.label.slice(0, 23) + "…" : r.label,
        { class: "legend", "text-anchor": "end" });
      title(label, r.label);
      let x = pad.l;
      r.values.forEach((v, k) => {
        const bw = max > 0 ? (w * v) / max : 0;
        const y = o.stacked ? y0 + 4 : y0 + 4 + k * 12;
        const hgt = o.stacked ? rowH - 8 : 10;
        const rect = el("rect", {
          x: o.stacked ? x : pad.l, y, width: Math.max(bw, v > 0 ? 1.5 : 0), height: hgt,
          rx: 2, fill: keys[k].color, "data-key": keys[k].name, "data-value": v,
        }, root);
        title(rect, `${r.label} · ${keys[k].name}: ${o.format(v)}`);
        if (v > 0) drawn++;
        if (!o.stacked) {
          text(root, pad.l + bw + 4, y + 9, o.format(v), { class: "axis" });
        }
        if (o.stacked) x += bw;
      });
      if (r.note) {
        text(root, o.width - 4, y0 + rowH / 2 + 4, r.note, { class: "axis", "text-anchor": "end" });
      }
    });
    legend(root, keys, pad.l, 16);
    return drawn;
  }

  return { lines, donut, bars, fmtNumber };
})();
