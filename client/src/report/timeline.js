// The run report's timeline: every operation as a bar on its process's row, the nemesis'
// faults shaded behind the rows and labelled in lanes above them, drawn on a <canvas>.
// Only what lies in the visible window is drawn (binary search on start times), so 100k+
// operations stay fluid. The data's layout is described in client/src/report/timeline.rs.
(function () {
  "use strict";

  const data = JSON.parse(document.getElementById("timeline-data").textContent);
  if (data.error) throw new Error("the timeline data could not be embedded: " + data.error);

  const section = document.getElementById("timeline");
  const canvas = document.getElementById("timeline-canvas");
  const tip = document.getElementById("timeline-tip");
  const rangeLabel = document.getElementById("timeline-range");
  const ctx = canvas.getContext("2d");
  if (!ctx) throw new Error("this browser gives no 2D canvas context");

  // Colours come from the stylesheet (the legend uses the same ones).
  const style = getComputedStyle(section);
  const color = (name) => style.getPropertyValue("--" + name).trim();
  const OUTCOME_COLORS = data.outcomes.map(color);

  const LEFT = 64; // px: process labels
  const LANE = 15; // px: one fault lane
  const AXIS = 22; // px: the time axis
  const STRIP = data.density ? 32 : 0; // px: the density strip of ops beyond the cap
  const MIN_SPAN = 10; // µs: the deepest zoom

  // Decode the columns into absolute times (µs), in start order.
  const cols = data.ops;
  const n = cols.p.length;
  const start = new Float64Array(n);
  const end = new Float64Array(n);
  const index = new Float64Array(n);
  const open = []; // never completed: drawn to the end of the axis
  let time = 0;
  let ix = 0;
  for (let i = 0; i < n; i++) {
    time += cols.s[i];
    ix += cols.i[i];
    start[i] = time;
    index[i] = ix;
    if (cols.d[i] < 0) {
      end[i] = data.end;
      open.push(i);
    } else {
      end[i] = time + cols.d[i];
    }
  }
  // maxEnd[i]: the latest end of the completed ops 0..=i. It never decreases, so the first
  // op that can reach into a window is found by binary search.
  const maxEnd = new Float64Array(n);
  for (let i = 0, m = 0; i < n; i++) {
    if (cols.d[i] >= 0 && end[i] > m) m = end[i];
    maxEnd[i] = m;
  }
  // Each row's ops (in start order), for hit testing.
  const rows = data.processes.map(() => []);
  for (let i = 0; i < n; i++) rows[cols.p[i]].push(i);

  // Layout, top to bottom: fault lanes, process rows, density strip, axis.
  const faultKinds = ["partition", "kill", "pause"].filter((k) =>
    data.faults.some((f) => f.kind === k));
  const nRows = data.processes.length;
  // Rows are 3 to 18 px high, thinner (fractional) when there are more than 1,000 of them (a
  // process that saw `info` continues under a new id), so the canvas stays under 3,000 px.
  const rowH = Math.min(Math.max(3, Math.min(18, Math.floor(540 / Math.max(1, nRows)))),
    3000 / Math.max(1, nRows));
  const rowsTop = faultKinds.length * LANE + 4;
  const rowsBottom = rowsTop + nRows * rowH;
  const stripTop = rowsBottom + (STRIP ? 4 : 0);
  const axisTop = stripTop + STRIP;
  const height = axisTop + AXIS;

  const view = { from: 0, to: data.end };
  let width = 0;
  let scale = 1; // px per µs
  const xOf = (us) => LEFT + (us - view.from) * scale;
  const timeAt = (px) => view.from + (px - LEFT) / scale;

  // First i in [0, len) with key(i) >= value, for a non-decreasing key.
  function bisect(len, key, value) {
    let lo = 0;
    let hi = len;
    while (lo < hi) {
      const mid = (lo + hi) >>> 1;
      if (key(mid) < value) lo = mid + 1;
      else hi = mid;
    }
    return lo;
  }

  const seconds = (us, digits) => (us / 1e6).toFixed(digits) + " s";

  function draw() {
    const dpr = window.devicePixelRatio || 1;
    width = Math.max(200, canvas.clientWidth);
    if (canvas.width !== Math.round(width * dpr) || canvas.height !== Math.round(height * dpr)) {
      canvas.width = Math.round(width * dpr);
      canvas.height = Math.round(height * dpr);
      canvas.style.height = height + "px";
    }
    ctx.setTransform(dpr, 0, 0, dpr, 0, 0);
    ctx.clearRect(0, 0, width, height);
    scale = (width - LEFT) / (view.to - view.from);
    ctx.font = "11px sans-serif";
    ctx.textBaseline = "middle";

    drawRowLabels();
    ctx.save();
    ctx.beginPath();
    ctx.rect(LEFT, 0, width - LEFT, height);
    ctx.clip();
    drawAxis();
    drawFaults();
    drawOps();
    if (data.density) drawDensity();
    ctx.restore();

    const span = view.to - view.from;
    const digits = Math.max(0, Math.min(6, 2 - Math.floor(Math.log10(span / 1e6))));
    rangeLabel.textContent = seconds(view.from, digits) + " to " + seconds(view.to, digits) +
      " (" + n + (data.total > n ? " of " + data.total : "") + " operations)";
  }

  function drawRowLabels() {
    // Stripes every other row (when rows are high enough), and as many labels as fit.
    const every = Math.ceil(12 / rowH);
    for (let r = 0; r < nRows; r++) {
      const y = rowsTop + r * rowH;
      if (r % 2 === 1 && rowH >= 3) {
        ctx.fillStyle = "#f6f6f6";
        ctx.fillRect(0, y, width, rowH);
      }
      if (r % every === 0) {
        ctx.fillStyle = "#444";
        ctx.fillText("p " + data.processes[r], 4, y + rowH / 2);
      }
    }
    faultKinds.forEach((kind, lane) => {
      ctx.fillStyle = color(kind);
      ctx.fillText(kind, 4, lane * LANE + LANE / 2);
    });
    if (STRIP) {
      ctx.fillStyle = "#444";
      ctx.fillText("more ops", 4, stripTop + STRIP / 2);
    }
  }

  // Seconds: a 1, 2 or 5 step giving about one tick per 100 px, with a grid over the rows.
  function drawAxis() {
    const rough = (view.to - view.from) / 1e6 / Math.max(2, (width - LEFT) / 100);
    const power = Math.pow(10, Math.floor(Math.log10(rough)));
    const step = [1, 2, 5, 10].map((m) => m * power).find((s) => s >= rough);
    const digits = Math.max(0, -Math.floor(Math.log10(step) + 1e-9));
    ctx.fillStyle = "#e4e4e4";
    ctx.fillRect(LEFT, axisTop, width - LEFT, 1);
    ctx.textAlign = "center";
    for (let k = Math.ceil(view.from / 1e6 / step); k * step * 1e6 <= view.to; k++) {
      const x = Math.round(xOf(k * step * 1e6));
      ctx.fillStyle = "#ececec";
      ctx.fillRect(x, rowsTop, 1, axisTop - rowsTop);
      ctx.fillStyle = "#444";
      ctx.fillText((k * step).toFixed(digits), x, axisTop + AXIS / 2);
    }
    ctx.textAlign = "start";
  }

  function drawFaults() {
    for (const f of data.faults) {
      const fEnd = f.e < 0 ? data.end : f.e;
      if (fEnd < view.from || f.s > view.to) continue;
      const x0 = Math.max(LEFT, xOf(f.s));
      const w = Math.max(1, Math.min(width, xOf(fEnd)) - x0);
      const laneY = faultKinds.indexOf(f.kind) * LANE;
      ctx.fillStyle = color(f.kind);
      ctx.globalAlpha = 0.13;
      ctx.fillRect(x0, rowsTop, w, rowsBottom - rowsTop);
      ctx.globalAlpha = 1;
      ctx.fillRect(x0, laneY + 1, w, LANE - 2);
      if (w > 24) {
        ctx.save();
        ctx.beginPath();
        ctx.rect(x0, laneY, w - 2, LANE);
        ctx.clip();
        ctx.fillStyle = "#fff";
        ctx.fillText(f.label, x0 + 3, laneY + LANE / 2);
        ctx.restore();
      }
    }
  }

  // One pass per outcome (one fill colour each). Bars are snapped to whole pixels and, per
  // row, a bar falling entirely on pixels already painted is skipped, so a zoomed-out view
  // costs about one rectangle per pixel rather than one per operation.
  function drawOps() {
    const lo = bisect(n, (i) => maxEnd[i], view.from);
    const hi = bisect(n, (i) => start[i], view.to);
    const barH = Math.max(1, rowH - 2);
    const paintedFrom = new Float64Array(nRows);
    const paintedTo = new Float64Array(nRows);
    function bar(i) {
      const r = cols.p[i];
      const x0 = Math.floor(Math.max(LEFT, xOf(start[i])));
      const x1 = Math.max(x0 + 1, Math.ceil(Math.min(width, xOf(end[i]))));
      const w = x1 - x0 > 3 ? x1 - x0 - 1 : x1 - x0; // a gap between long neighbours
      if (x0 >= paintedFrom[r] && x0 + w <= paintedTo[r]) return;
      ctx.fillRect(x0, rowsTop + r * rowH + 1, w, barH);
      if (x0 <= paintedTo[r]) paintedTo[r] = Math.max(paintedTo[r], x0 + w);
      else {
        paintedFrom[r] = x0;
        paintedTo[r] = x0 + w;
      }
    }
    for (let o = 0; o < OUTCOME_COLORS.length; o++) {
      ctx.fillStyle = OUTCOME_COLORS[o];
      paintedFrom.fill(-1);
      paintedTo.fill(-1);
      for (let i = lo; i < hi; i++) {
        if (cols.o[i] === o && cols.d[i] >= 0 && end[i] >= view.from) bar(i);
      }
      for (const i of open) {
        if (cols.o[i] === o && start[i] < view.to) bar(i);
      }
    }
  }

  // Operations beyond the cap: stacked counts per bucket, scaled to the busiest bucket.
  function drawDensity() {
    const d = data.density;
    const buckets = d.counts[0].length;
    let busiest = 1;
    for (let b = 0; b < buckets; b++) {
      busiest = Math.max(busiest, d.counts.reduce((sum, c) => sum + c[b], 0));
    }
    const first = Math.max(0, Math.floor((view.from - d.from) / d.bucket));
    const last = Math.min(buckets, Math.ceil((view.to - d.from) / d.bucket) + 1);
    const w = Math.max(1, d.bucket * scale);
    for (let b = first; b < last; b++) {
      const x = xOf(d.from + b * d.bucket);
      let y = stripTop + STRIP;
      for (let o = 0; o < d.counts.length; o++) {
        const h = (d.counts[o][b] / busiest) * (STRIP - 2);
        ctx.fillStyle = OUTCOME_COLORS[o];
        ctx.fillRect(x, y - h, w, h);
        y -= h;
      }
    }
  }

  let drawPending = false;
  function redraw() {
    if (drawPending) return;
    drawPending = true;
    requestAnimationFrame(() => {
      drawPending = false;
      draw();
    });
  }

  // Keeps the window inside [0, end] and at least MIN_SPAN wide.
  function setView(from, span) {
    span = Math.min(data.end, Math.max(MIN_SPAN, span));
    from = Math.max(0, Math.min(data.end - span, from));
    view.from = from;
    view.to = from + span;
    redraw();
  }
  function zoom(factor, px) {
    const t = timeAt(px);
    const span = Math.min(data.end, Math.max(MIN_SPAN, (view.to - view.from) * factor));
    setView(t - ((t - view.from) / (view.to - view.from)) * span, span);
  }
  function pan(fraction) {
    setView(view.from + (view.to - view.from) * fraction, view.to - view.from);
  }
  const middle = () => LEFT + (width - LEFT) / 2;
  const actions = {
    in: () => zoom(1 / 1.5, middle()),
    out: () => zoom(1.5, middle()),
    left: () => pan(-0.25),
    right: () => pan(0.25),
    reset: () => setView(0, data.end),
  };
  section.querySelectorAll(".tl-controls button").forEach((button) => {
    button.addEventListener("click", () => actions[button.dataset.act]());
  });
  canvas.addEventListener("keydown", (e) => {
    const act = { "+": "in", "=": "in", "-": "out", ArrowLeft: "left", ArrowRight: "right",
      "0": "reset" }[e.key];
    if (act) {
      e.preventDefault();
      actions[act]();
    }
  });
  canvas.addEventListener("wheel", (e) => {
    e.preventDefault();
    if (Math.abs(e.deltaX) > Math.abs(e.deltaY)) {
      setView(view.from + e.deltaX / scale, view.to - view.from);
    } else if (e.deltaY !== 0) {
      zoom(e.deltaY < 0 ? 1 / 1.25 : 1.25, e.offsetX);
    }
  }, { passive: false });

  // Drag to pan; hover for details.
  let drag = null;
  canvas.addEventListener("pointerdown", (e) => {
    drag = { x: e.clientX, from: view.from };
    canvas.setPointerCapture(e.pointerId);
    canvas.classList.add("dragging");
    tip.hidden = true;
  });
  canvas.addEventListener("pointermove", (e) => {
    if (drag) setView(drag.from - (e.clientX - drag.x) / scale, view.to - view.from);
    else showTip(e.offsetX, e.offsetY);
  });
  const endDrag = () => {
    drag = null;
    canvas.classList.remove("dragging");
  };
  canvas.addEventListener("pointerup", endDrag);
  canvas.addEventListener("pointercancel", endDrag);
  canvas.addEventListener("pointerleave", () => {
    tip.hidden = true;
  });
  window.addEventListener("resize", redraw);

  // The op or fault under (px, py), as tooltip text, or null.
  function describeAt(px, py) {
    if (px < LEFT) return null;
    const t = timeAt(px);
    const slack = 3 / scale; // 3 px either side
    if (py < rowsTop) {
      const kind = faultKinds[Math.floor(py / LANE)];
      const f = data.faults.find((f) => f.kind === kind && f.s - slack <= t &&
        t <= (f.e < 0 ? data.end : f.e) + slack);
      if (!f) return null;
      return [f.label, f.kind, "from " + seconds(f.s, 3) + (f.e < 0
        ? " to the end of the history"
        : " to " + seconds(f.e, 3) + " (" + seconds(f.e - f.s, 3) + ")")].join("\n");
    }
    if (py >= rowsBottom) return null;
    const row = rows[Math.floor((py - rowsTop) / rowH)];
    const k = bisect(row.length, (j) => start[row[j]], t + slack) - 1;
    const i = [row[k], row[k - 1]].find((i) => i !== undefined && end[i] + slack >= t);
    if (i === undefined) return null;
    const text = (s) => (s === "" ? "null" : s);
    return [
      "op " + index[i] + " (history index of its invoke)",
      "process   " + data.processes[cols.p[i]],
      "f         " + data.fs[cols.f[i]],
      "key       " + data.keys[cols.k[i]],
      "request   " + text(cols.q[i]),
      "response  " + (cols.d[i] < 0 ? "none" : text(cols.r[i])),
      "outcome   " + data.outcomes[cols.o[i]] + (cols.d[i] < 0 ? " (never completed)" : ""),
      "start     " + seconds(start[i], 6),
      "latency   " + (cols.d[i] < 0 ? "unknown" : (cols.d[i] / 1000).toFixed(3) + " ms"),
    ].join("\n");
  }

  function showTip(px, py) {
    const text = describeAt(px, py);
    if (text === null) {
      tip.hidden = true;
      return;
    }
    tip.textContent = text;
    tip.hidden = false;
    const left = Math.min(px + 14, canvas.clientWidth - tip.offsetWidth - 4);
    tip.style.left = Math.max(0, left) + "px";
    tip.style.top = py + 16 + "px";
  }

  draw();
  document.body.dataset.timeline = "ready";
})();
