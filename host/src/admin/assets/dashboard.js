// wasmrelay dashboard: polls /api/stats and draws it with chart.js. With an admin token
// configured, asks for it once (kept for this tab in sessionStorage) and sends it as a
// bearer header. Each chart's container carries what it drew in data-* attributes.
"use strict";

(() => {
  const COLORS = {
    received: "#4e79a7", delivered: "#59a14f", deferred: "#f28e2b", bounced: "#e15759",
    rejected: "#9c755f", opens: "#76b7b2", clicks: "#b07aa1",
    continue: "#bab0ac", accept: "#59a14f", reject: "#e15759", tempfail: "#f28e2b",
    disconnect: "#9c755f", error: "#7b1fa2",
  };
  const REFRESH_MS = 10000;
  const $ = (id) => document.getElementById(id);
  let renders = 0;
  let last = null;

  function token() { return sessionStorage.getItem("wasmrelay-admin-token"); }

  async function load() {
    const headers = {};
    if (token()) headers.Authorization = "Bearer " + token();
    const r = await fetch("api/stats", { headers, cache: "no-store" });
    if (r.status === 401) {
      showLogin(token() ? "That token was refused." : "");
      return null;
    }
    if (!r.ok) throw new Error(`/api/stats: HTTP ${r.status}`);
    return r.json();
  }

  function showLogin(message) {
    $("dashboard").hidden = true;
    $("login").hidden = false;
    $("login-error").textContent = message;
    $("token").focus();
  }

  function pct(n, d) { return d > 0 ? (100 * n) / d : 0; }
  function fmtPct(v) { return v.toFixed(v > 0 && v < 10 ? 1 : 0) + "%"; }
  function setText(id, s) { $(id).textContent = s; }
  function empty(container, message) {
    const p = document.createElement("p");
    p.className = "empty";
    p.textContent = message;
    container.replaceChildren(p);
  }
  function age(secs) {
    if (secs == null) return "";
    if (secs < 120) return `oldest ${secs}s`;
    if (secs < 7200) return `oldest ${Math.round(secs / 60)}m`;
    return `oldest ${Math.round(secs / 3600)}h`;
  }

  // One slot per minute of the window, ending at the current minute.
  function timeline(stats, minutes) {
    const end = stats.now - (stats.now % 60);
    const byT = new Map(stats.minutes.map((m) => [m.t, m]));
    const times = [], rows = [];
    for (let t = end - (minutes - 1) * 60; t <= end; t += 60) {
      times.push(t);
      rows.push(byT.get(t) || null);
    }
    return { times, rows };
  }

  // "since start": from the first minute with traffic (at least 15 minutes, at most 24 h).
  function windowMinutes(stats) {
    const chosen = $("window").value;
    if (chosen !== "auto") return Number(chosen);
    const first = stats.minutes.length ? stats.minutes[0].t : stats.now;
    return Math.min(1440, Math.max(15, Math.ceil((stats.now - first) / 60) + 2));
  }

  function render(stats) {
    const minutes = windowMinutes(stats);
    const t = stats.totals;
    const done = t.delivered + t.bounced;
    setText("t-received", Chart.fmtNumber(t.received));
    setText("t-delivered", Chart.fmtNumber(t.delivered));
    setText("t-deferred", Chart.fmtNumber(t.deferred));
    setText("t-bounced", Chart.fmtNumber(t.bounced));
    setText("t-bounce-rate", fmtPct(pct(t.bounced, done)));
    setText("t-rejected", Chart.fmtNumber(t.rejected));
    setText("t-queue", Chart.fmtNumber(stats.queue.messages));
    setText("t-queue-sub", [`${stats.queue.held} held`, age(stats.queue.oldest_age_secs)]
      .filter((s) => s).join(" · "));
    setText("t-engagement", `${fmtPct(pct(t.opens, t.delivered))} / ${fmtPct(pct(t.clicks, t.delivered))}`);

    // Volume per minute.
    const { times, rows } = timeline(stats, minutes);
    const keys = ["received", "delivered", "deferred", "bounced"];
    const volume = $("volume");
    // Received is a wide pale band beneath the outcomes, which mostly follow it.
    const series = keys.map((k) => ({
      name: k, color: COLORS[k], area: k === "received",
      width: k === "received" ? 7 : 2, opacity: k === "received" ? 0.35 : 1,
      values: rows.map((r) => (r ? r[k] : 0)),
    }));
    Chart.lines(volume, times, series, { yLabel: "per minute", integer: true });
    for (const s of series) volume.dataset[s.name] = s.values.reduce((a, b) => a + b, 0);

    // Outcomes since start.
    const outcomes = $("outcomes");
    const slices = ["delivered", "deferred", "bounced"].map((k) => ({ name: k, color: COLORS[k], value: t[k] }));
    const drawn = Chart.donut(outcomes, slices, [fmtPct(pct(t.bounced, done)), "bounce rate"]);
    outcomes.dataset.slices = drawn;
    outcomes.dataset.bounceRate = pct(t.bounced, done).toFixed(1);

    // Queue depth samples.
    const queue = $("queue");
    const depth = rows.map((r) => (r && r.queue_depth != null ? r.queue_depth : null));
    Chart.lines(queue, times, [{ name: "queued", color: COLORS.received, area: true, dots: true, values: depth }],
      { width: 380, height: 240, integer: true });
    queue.dataset.depth = stats.queue.messages;

    // Sender domains: open, click and bounce rates.
    const domains = $("domains");
    const top = stats.domains.filter((d) => d.received > 0 || d.delivered > 0 || d.opens > 0).slice(0, 12);
    if (top.length === 0) {
      empty(domains, "No mail yet.");
    } else {
      Chart.bars(domains, top.map((d) => ({
        label: d.domain === "<>" ? "<> (bounce notices)" : d.domain,
        note: `${d.received} sent · ${d.delivered} delivered · ${d.bounced} bounced`,
        values: [pct(d.opens, d.delivered), pct(d.clicks, d.delivered), pct(d.bounced, d.delivered + d.bounced)],
      })), [
        { name: "open rate", color: COLORS.opens },
        { name: "click rate", color: COLORS.clicks },
        { name: "bounce rate", color: COLORS.bounced },
      ], { max: 100, format: fmtPct });
    }
    domains.dataset.domains = top.map((d) => d.domain).join(",");

    // Plugins: verdicts, stacked; errors in the label.
    const plugins = $("plugins");
    const verdicts = ["continue", "accept", "reject", "tempfail", "disconnect", "error"];
    if (stats.plugins.length === 0) {
      empty(plugins, "No plugins loaded.");
    } else {
      Chart.bars(plugins, stats.plugins.map((p) => ({
        label: p.name,
        note: `${Chart.fmtNumber(p.calls)} calls · ${p.errors} errors`,
        values: verdicts.map((v) => p.verdicts[v] || 0),
      })), verdicts.map((v) => ({ name: v, color: COLORS[v] })), { stacked: true });
    }
    plugins.dataset.calls = stats.plugins.map((p) => `${p.name}:${p.calls}`).join(",");

    const main = $("dashboard");
    main.dataset.received = t.received;
    main.dataset.delivered = t.delivered;
    main.dataset.deferred = t.deferred;
    main.dataset.bounced = t.bounced;
    main.dataset.rendered = ++renders;
    setText("updated", "updated " + new Date().toLocaleTimeString());
  }

  async function refresh() {
    try {
      const stats = await load();
      if (!stats) return;
      last = stats;
      $("login").hidden = true;
      $("dashboard").hidden = false;
      render(stats);
    } catch (e) {
      setText("updated", String(e.message || e));
    }
  }

  $("login").addEventListener("submit", (ev) => {
    ev.preventDefault();
    sessionStorage.setItem("wasmrelay-admin-token", $("token").value.trim());
    refresh();
  });
  $("window").addEventListener("change", () => { if (last) render(last); });
  refresh();
  setInterval(refresh, REFRESH_MS);
})();
