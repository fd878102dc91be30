// herd dashboard: the pages are rendered by herdd; this keeps them live. Regions marked
// data-fragment are fetched again when an event they listen to (data-on) arrives; charts
// (svg[data-series]) grow from telemetry; feeds (ol[data-feed]) get new events on top;
// buttons with data-action ask for confirmation and the token, then POST.
"use strict";
(function () {
  const body = document.body;
  const live = document.getElementById("live");
  const regions = Array.from(document.querySelectorAll("[data-fragment]"));
  const SPAN_MS = 5 * 60 * 1000;

  // At most one fetch in flight per region, one more queued, and none sooner than the region's
  // data-min-ms after the last (the fleet's table, which every heartbeat would refresh).
  function refresh(region) {
    if (region.busy) { region.again = true; return; }
    const wait = (region.last || 0) + Number(region.dataset.minMs || 0) - Date.now();
    if (wait > 0) {
      if (!region.timer) region.timer = setTimeout(() => { region.timer = null; refresh(region); }, wait);
      return;
    }
    region.busy = true;
    region.last = Date.now();
    fetch(region.dataset.fragment, { headers: { Accept: "text/html" } })
      .then((r) => (r.ok ? r.text() : Promise.reject(r.status)))
      .then((html) => { region.innerHTML = html; })
      .catch(() => {})
      .finally(() => {
        region.busy = false;
        if (region.again) { region.again = false; refresh(region); }
      });
  }
  const refreshAll = () => regions.forEach(refresh);
  // Regions that change without an event the page hears of are fetched on a timer until their
  // content says it has settled.
  regions.filter((r) => Number(r.dataset.pollMs) > 0).forEach((r) => {
    const timer = setInterval(() => {
      if (r.querySelector('[data-settled="true"]')) { clearInterval(timer); return; }
      refresh(r);
    }, Number(r.dataset.pollMs));
  });

  function ago(ts) {
    const s = Math.max(0, Math.floor((Date.now() - ts) / 1000));
    if (s < 60) return s + " s ago";
    if (s < 3600) return Math.floor(s / 60) + " min ago";
    return Math.floor(s / 3600) + " h ago";
  }
  setInterval(() => {
    document.querySelectorAll("time[data-ts]").forEach((t) => { t.textContent = ago(Number(t.dataset.ts)); });
  }, 1000);

  // Charts: a polyline over the last SPAN_MS, the y axis from 0 to the largest value.
  const charts = Array.from(document.querySelectorAll("svg[data-series]"));
  charts.forEach((svg) => {
    try { svg.points = JSON.parse(svg.dataset.points || "[]"); } catch (e) { svg.points = []; }
    draw(svg);
  });
  function draw(svg) {
    const now = Date.now();
    svg.points = svg.points.filter((p) => p[0] >= now - SPAN_MS);
    const max = Math.max(svg.dataset.series === "memory" ? 1 : 100, ...svg.points.map((p) => p[1])) * 1.1;
    const xy = svg.points.map((p) => {
      const x = 300 - ((now - p[0]) / SPAN_MS) * 300;
      const y = 80 - (p[1] / max) * 80;
      return x.toFixed(1) + "," + y.toFixed(1);
    });
    let line = svg.querySelector("polyline");
    if (!line) {
      line = document.createElementNS("http://www.w3.org/2000/svg", "polyline");
      svg.appendChild(line);
    }
    line.setAttribute("points", xy.join(" "));
    const last = svg.points.length ? svg.points[svg.points.length - 1][1] : null;
    svg.dataset.last = last === null ? "" : last.toFixed(1);
    const label = svg.parentElement.querySelector(".last");
    if (label) label.textContent = last === null ? "" : last.toFixed(1) + " " + svg.dataset.unit;
  }
  function addPoint(key, series, ts, value) {
    if (value === null || value === undefined) return;
    charts.forEach((svg) => {
      if (svg.dataset.key !== key || svg.dataset.series !== series) return;
      const prev = svg.points[svg.points.length - 1];
      if (prev && prev[0] >= ts) return;
      svg.points.push([ts, value]);
      draw(svg);
    });
  }

  function feedItem(kinds, text, ts) {
    document.querySelectorAll("ol[data-feed]").forEach((ol) => {
      if (!ol.dataset.feed.split(" ").includes(kinds)) return;
      const li = document.createElement("li");
      const t = document.createElement("time");
      t.dataset.ts = ts;
      t.textContent = ago(ts);
      li.appendChild(t);
      li.appendChild(document.createTextNode(" " + text));
      ol.insertBefore(li, ol.firstChild);
      while (ol.children.length > 200) ol.removeChild(ol.lastChild);
    });
  }

  function on(kind, data) {
    regions.forEach((r) => {
      if ((r.dataset.on || "").split(" ").includes(kind)) refresh(r);
    });
    if (kind === "workload") {
      // The row changes at once; the region's refresh brings the rest.
      document.querySelectorAll('tr[data-workload="' + CSS.escape(data.workload) + '"]').forEach((tr) => {
        tr.dataset.state = data.state;
      });
      feedItem("workload", data.workload + " on " + data.node + " " + data.state +
        (data.exit_code !== null && data.exit_code !== undefined ? " (exit " + data.exit_code + ")" : "") +
        (data.reason ? ": " + data.reason : ""), data.ts);
    } else if (kind === "hb") {
      addPoint("node", "cpu", data.ts, data.cpu_percent);
      addPoint("node", "memory", data.ts, data.memory_used / 1048576);
    } else if (kind === "telemetry") {
      data.samples.forEach((s) => {
        addPoint(s.workload, "cpu", data.ts, s.cpu);
        addPoint(s.workload, "memory", data.ts, s.memory / 1048576);
        addPoint(s.workload, "gpu", data.ts, s.gpu);
        const cpu = document.querySelector('[data-cpu="' + CSS.escape(s.workload) + '"]');
        if (cpu && s.cpu !== null) cpu.textContent = s.cpu.toFixed(1);
        const mem = document.querySelector('[data-memory="' + CSS.escape(s.workload) + '"]');
        if (mem) mem.textContent = (s.memory / 1048576).toFixed(1) + " MiB";
      });
    } else if (kind === "cluster") {
      feedItem("cluster", data.kind + (data.node ? " " + data.node : "") + (data.run ? " " + data.run : "") +
        (data.message ? ": " + data.message : ""), data.ts);
    } else if (kind === "node") {
      feedItem("node", "node " + data.node + " " + data.kind + (data.message ? ": " + data.message : ""), data.ts);
    }
  }

  const topics = body.dataset.topics;
  if (!topics) live.textContent = "";
  if (topics && window.EventSource) {
    let lost = false;
    const es = new EventSource("/sse?topics=" + encodeURIComponent(topics));
    es.onopen = () => {
      live.textContent = "live";
      live.className = "live on";
      // Back after a break: what changed meanwhile is in the regions.
      if (lost) { lost = false; refreshAll(); }
    };
    es.onerror = () => {
      lost = true;
      live.textContent = "reconnecting…";
      live.className = "live off";
    };
    ["hb", "workload", "cluster", "node", "telemetry", "log", "results"].forEach((kind) => {
      es.addEventListener(kind, (e) => {
        let data;
        try { data = JSON.parse(e.data); } catch (err) { return; }
        on(kind, data);
      });
    });
    es.addEventListener("dropped", refreshAll);
  }

  // Actions: confirmation, then the token (kept for this tab only), then POST.
  document.addEventListener("click", (e) => {
    const b = e.target.closest("button[data-action]");
    if (!b) return;
    const what = { "stop-workload": "Stop workload " + b.dataset.workload + " on " + b.dataset.node,
      "stop-run": "Stop run " + b.dataset.run,
      "drain": (b.dataset.undo === "true" ? "Undrain" : "Drain") + " node " + b.dataset.node }[b.dataset.action];
    if (!window.confirm(what + "?")) return;
    let token = sessionStorage.getItem("herd-token");
    if (!token) {
      token = window.prompt("The dashboard's token (dashboard.token_file):") || "";
      if (!token) return;
    }
    const q = new URLSearchParams();
    ["node", "workload", "run", "undo"].forEach((k) => { if (b.dataset[k]) q.set(k, b.dataset[k]); });
    fetch("/action/" + b.dataset.action + "?" + q, { method: "POST", headers: { "X-Herd-Token": token } })
      .then((r) => r.text().then((t) => {
        if (r.ok) sessionStorage.setItem("herd-token", token);
        else if (r.status === 401 || r.status === 403) sessionStorage.removeItem("herd-token");
        flash(r.ok, t);
        refreshAll();
      }));
  });
  function flash(ok, text) {
    const p = document.createElement("p");
    p.className = ok ? "flash ok" : "flash error";
    p.textContent = text;
    document.querySelector("main").prepend(p);
    setTimeout(() => p.remove(), 8000);
  }
})();
