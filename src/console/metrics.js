// The console's live panel: scrape GET /metrics (Prometheus text) once a second and draw GET
// and PUT rate and p50/p99 latency from the difference between two scrapes.
//
// Read: bale_requests_total{op,status} (counter) and bale_request_duration_seconds_bucket
// {op,le} (histogram). A rate is the counter's delta over the time between scrapes; a
// percentile is interpolated inside the histogram bucket where it falls (as Prometheus's
// histogram_quantile does), from the bucket deltas of that interval only.
"use strict";

const BaleMetrics = (() => {
  const OPS = { get: "GetObject", put: "PutObject" };
  const HISTORY_POINTS = 120; // two minutes at one scrape a second
  const CHART_WIDTH = 520, CHART_HEIGHT = 160; // the canvases' aspect (index.html)

  /** Parses one `name{a="b",...} value` line; null for comments and other text. */
  function parseLine(line) {
    const m = /^([a-zA-Z_:][a-zA-Z0-9_:]*)(\{(.*)\})?\s+(\S+)/.exec(line);
    if (!m) return null;
    const labels = {};
    const re = /([a-zA-Z_][a-zA-Z0-9_]*)="((?:[^"\\]|\\.)*)"/g;
    let l;
    while ((l = re.exec(m[3] || "")) !== null) labels[l[1]] = l[2].replace(/\\(.)/g, (_, c) => (c === "n" ? "\n" : c));
    const value = m[4] === "+Inf" ? Infinity : Number(m[4]);
    return Number.isNaN(value) ? null : { name: m[1], labels, value };
  }

  /** What one scrape says about each op: request count and cumulative latency buckets. */
  function snapshot(text, atMs) {
    const ops = {};
    const opOf = (name) => (ops[name] ||= { requests: 0, seen: false, buckets: new Map(), count: 0 });
    for (const line of text.split("\n")) {
      if (line.startsWith("#")) continue;
      const s = parseLine(line);
      if (!s || !s.labels.op) continue;
      const o = opOf(s.labels.op);
      if (s.name === "bale_requests_total") {
        o.requests += s.value;
        o.seen = true;
      } else if (s.name === "bale_request_duration_seconds_bucket" && s.labels.le !== undefined) {
        const le = s.labels.le === "+Inf" ? Infinity : Number(s.labels.le);
        o.buckets.set(le, (o.buckets.get(le) || 0) + s.value);
      } else if (s.name === "bale_request_duration_seconds_count") {
        o.count += s.value;
      }
    }
    return { atMs, ops };
  }

  /** The q-quantile (0..1) of a [[le, cumulative count], ...] list sorted by le; null if empty. */
  function quantile(q, buckets) {
    if (buckets.length === 0) return null;
    const total = buckets[buckets.length - 1][1];
    if (!(total > 0)) return null;
    const rank = q * total;
    for (let i = 0; i < buckets.length; i++) {
      const [le, cum] = buckets[i];
      if (cum < rank) continue;
      if (le === Infinity) return i > 0 ? buckets[i - 1][0] : null;
      const lower = i > 0 ? buckets[i - 1][0] : 0;
      const below = i > 0 ? buckets[i - 1][1] : 0;
      return cum === below ? le : lower + ((le - lower) * (rank - below)) / (cum - below);
    }
    return buckets[buckets.length - 1][0];
  }

  /** Rate (req/s) and p50/p99 (ms) of one op between two snapshots. */
  function opDelta(prev, cur, op, seconds) {
    const a = prev.ops[op], b = cur.ops[op];
    if (!b) return { rate: 0, p50: null, p99: null };
    const before = a || { requests: 0, buckets: new Map(), count: 0 };
    const reqs = b.seen ? b.requests - before.requests : b.count - before.count;
    const les = [...b.buckets.keys()].sort((x, y) => x - y);
    const deltas = les.map((le) => [le, Math.max(0, b.buckets.get(le) - (before.buckets.get(le) || 0))]);
    const ms = (s) => (s === null ? null : s * 1000);
    return {
      rate: Math.max(0, reqs) / seconds,
      p50: ms(quantile(0.5, deltas)),
      p99: ms(quantile(0.99, deltas)),
    };
  }

  function delta(prev, cur) {
    const seconds = Math.max(0.001, (cur.atMs - prev.atMs) / 1000);
    return { get: opDelta(prev, cur, OPS.get, seconds), put: opDelta(prev, cur, OPS.put, seconds) };
  }

  /** A line chart of named series on a canvas, newest point at the right. */
  class Chart {
    constructor(canvas, series) {
      this.canvas = canvas;
      this.series = series; // [{key, color, dash}]
      this.points = [];
    }
    push(values) {
      this.points.push(values);
      if (this.points.length > HISTORY_POINTS) this.points.shift();
      this.draw();
    }
    draw() {
      const c = this.canvas, ctx = c.getContext("2d");
      // Draw at the canvas's displayed size in device pixels (crisp on any screen).
      const ratio = window.devicePixelRatio || 1;
      const cssW = c.clientWidth || c.width, cssH = Math.round((cssW * CHART_HEIGHT) / CHART_WIDTH);
      if (c.width !== Math.round(cssW * ratio)) {
        c.width = Math.round(cssW * ratio);
        c.height = Math.round(cssH * ratio);
      }
      ctx.setTransform(ratio, 0, 0, ratio, 0, 0);
      const w = cssW, h = cssH, padL = 44, padB = 6, padT = 8;
      ctx.clearRect(0, 0, w, h);
      let max = 0;
      for (const p of this.points) for (const s of this.series) if (p[s.key] > max) max = p[s.key];
      max = niceMax(max);
      ctx.font = "11px system-ui, sans-serif";
      ctx.fillStyle = "#6b7480";
      ctx.strokeStyle = "#e2e5e9";
      ctx.lineWidth = 1;
      for (let i = 0; i <= 4; i++) {
        const y = padT + ((h - padT - padB) * i) / 4;
        ctx.beginPath(); ctx.moveTo(padL, y); ctx.lineTo(w, y); ctx.stroke();
        ctx.fillText(fmt(max * (1 - i / 4)), 4, y + 4);
      }
      // Until the history is full the points spread over the whole width; then it scrolls.
      const span = Math.max(this.points.length - 1, 1);
      const x = (i) => padL + ((w - padL) * i) / span;
      const y = (v) => padT + (h - padT - padB) * (1 - v / max);
      for (const s of this.series) {
        ctx.strokeStyle = s.color;
        ctx.lineWidth = 2;
        ctx.setLineDash(s.dash ? [5, 4] : []);
        ctx.beginPath();
        let pen = false;
        this.points.forEach((p, i) => {
          const v = p[s.key];
          if (v === null || v === undefined) { pen = false; return; }
          if (pen) ctx.lineTo(x(i), y(v)); else ctx.moveTo(x(i), y(v));
          pen = true;
        });
        ctx.stroke();
      }
      ctx.setLineDash([]);
    }
  }

  function niceMax(v) {
    if (!(v > 0)) return 1;
    const p = Math.pow(10, Math.floor(Math.log10(v)));
    for (const m of [1, 2, 2.5, 5, 10]) if (v <= m * p) return m * p;
    return 10 * p;
  }

  function fmt(v) {
    if (v === null || v === undefined) return "–";
    if (v >= 100) return v.toFixed(0);
    if (v >= 10) return v.toFixed(1);
    if (v >= 1 || v === 0) return v.toFixed(2);
    return v.toPrecision(2);
  }

  /**
   * Polls `scrape()` (a promise of the metrics text) every `everyMs` and feeds the charts and
   * the numbers; `onState(text, isError)` reports the panel's state. Returns a stop function.
   */
  function start(scrape, view, onState, everyMs) {
    const rate = new Chart(view.rateCanvas, [
      { key: "getRate", color: "#1f6feb" }, { key: "putRate", color: "#e8590c" },
    ]);
    const latency = new Chart(view.latencyCanvas, [
      { key: "getP50", color: "#1f6feb" }, { key: "getP99", color: "#1f6feb", dash: true },
      { key: "putP50", color: "#e8590c" }, { key: "putP99", color: "#e8590c", dash: true },
    ]);
    rate.draw();
    latency.draw();
    let prev = null, timer = null, stopped = false;
    async function tick() {
      if (stopped) return;
      try {
        const text = await scrape();
        const cur = snapshot(text, performance.now());
        if (prev) {
          const d = delta(prev, cur);
          rate.push({ getRate: d.get.rate, putRate: d.put.rate });
          latency.push({ getP50: d.get.p50, getP99: d.get.p99, putP50: d.put.p50, putP99: d.put.p99 });
          for (const [id, v] of Object.entries({
            getRate: d.get.rate, getP50: d.get.p50, getP99: d.get.p99,
            putRate: d.put.rate, putP50: d.put.p50, putP99: d.put.p99,
          })) view.numbers[id].textContent = fmt(v);
        }
        prev = cur;
        onState("live · " + new Date().toLocaleTimeString(), false);
      } catch (e) {
        prev = null;
        onState("metrics unavailable: " + (e.code ? e.code + ": " : "") + e.message, true);
      }
      if (!stopped) timer = setTimeout(tick, everyMs);
    }
    tick();
    return () => { stopped = true; clearTimeout(timer); };
  }

  return { parseLine, snapshot, quantile, delta, start, fmt };
})();
