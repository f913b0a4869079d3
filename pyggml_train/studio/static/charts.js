// Curves (Chart.js). Curves: the shown run's train and validation loss, learning rate and
// tokens/s per step, live; points are keyed by step: a step at or before the last one drawn
// (a resumed run recomputing steps after its checkpoint) replaces the points from there on.
// CompareChart: several runs' train and validation loss against step, tokens or wall time.
/* global Chart */

const GRID = "#3a3e46";
const TICKS = "#8d939c";
export const RUN_COLORS = ["#4f9cf5", "#f5a524", "#46a758", "#e5484d", "#b0689f", "#2ec4b6",
  "#d9d36b", "#9b8cf2", "#f28c6b", "#8fdc9c"];

// An axis tick as people write numbers: 3 significant digits, "1.05e-5" for the tiny,
// "12.5k" / "3.2M" for the large (Chart.js prints a lone 1.05e-5 as "1.0500000E-5").
export function readable(value) {
  const v = Number(value);
  const a = Math.abs(v);
  if (a === 0) return "0";
  if (a < 1e-3) return v.toExponential(2).replace(/\.?0+e/, "e");
  if (a >= 1e6) return `${Number((v / 1e6).toPrecision(3))}M`;
  if (a >= 1e4) return `${Number((v / 1e3).toPrecision(3))}k`;
  return String(Number(v.toPrecision(3)));
}

function lineChart(canvas, datasets, scales) {
  return new Chart(canvas, {
    type: "line",
    data: { datasets },
    options: {
      animation: false,
      maintainAspectRatio: false,
      parsing: false,
      normalized: true,
      interaction: { mode: "nearest", intersect: false },
      plugins: { legend: { labels: { color: TICKS, boxWidth: 12 } } },
      scales: {
        x: { type: "linear", title: { display: true, text: "step", color: TICKS }, ...axis() },
        ...scales,
      },
    },
  });
}

function axis() {
  return { grid: { color: GRID }, ticks: { color: TICKS, callback: readable } };
}

export class Curves {
  constructor(lossCanvas, rateCanvas) {
    this.frame = null; // a redraw waiting for the next animation frame
    this.loss = lineChart(
      lossCanvas,
      [
        { label: "train loss", data: [], borderColor: "#4f9cf5", pointRadius: 2, borderWidth: 1.5 },
        { label: "val loss", data: [], borderColor: "#f5a524", pointRadius: 4, borderWidth: 1.5 },
      ],
      { y: { title: { display: true, text: "nats/token", color: TICKS }, ...axis() } },
    );
    this.rate = lineChart(
      rateCanvas,
      [
        { label: "lr", data: [], borderColor: "#46a758", pointRadius: 0, yAxisID: "y" },
        { label: "tokens/s", data: [], borderColor: "#b0689f", pointRadius: 0, yAxisID: "y1" },
      ],
      {
        y: { position: "left", ...axis() },
        y1: { position: "right", ...axis(), grid: { drawOnChartArea: false } },
      },
    );
  }

  clear() {
    for (const chart of [this.loss, this.rate]) {
      for (const ds of chart.data.datasets) ds.data = [];
      chart.update();
    }
  }

  // one metrics event (runs.py); several in a row may pass update=false and update once
  add(e, update = true) {
    const put = (ds, y) => {
      const data = ds.data;
      while (data.length && data[data.length - 1].x >= e.step) data.pop();
      if (y !== null && y !== undefined) data.push({ x: e.step, y });
    };
    const [train, val] = this.loss.data.datasets;
    const [lr, rate] = this.rate.data.datasets;
    put(train, e.train_loss);
    put(val, e.val_loss);
    put(lr, e.lr);
    put(rate, e.tokens_per_s);
    if (update) this.updateSoon();
  }

  update() {
    if (this.frame) cancelAnimationFrame(this.frame);
    this.frame = null;
    this.loss.update();
    this.rate.update();
  }

  // a tiny model sends hundreds of steps a second: draw them once a frame, not once each
  updateSoon() {
    if (!this.frame) this.frame = requestAnimationFrame(() => this.update());
  }

  // the train-loss points as drawn: [{step, loss, px, py}] (what the browser test reads)
  drawnLoss() {
    if (this.frame) this.update(); // what is drawn includes every point added
    const meta = this.loss.getDatasetMeta(0);
    return this.loss.data.datasets[0].data.map((p, i) => ({
      step: p.x,
      loss: p.y,
      px: meta.data[i] ? meta.data[i].x : null,
      py: meta.data[i] ? meta.data[i].y : null,
    }));
  }
}

const X_TITLES = { step: "step", tokens: "tokens", elapsed_s: "wall time (s)" };

export class CompareChart {
  constructor(canvas) {
    this.chart = lineChart(canvas, [], {
      y: { title: { display: true, text: "nats/token", color: TICKS }, ...axis() },
    });
    // one legend entry per run (its train line); the key below the chart explains the dashes
    this.chart.options.plugins.legend.labels.filter = (item, data) =>
      data.datasets[item.datasetIndex].series === "train";
  }

  // rows of GET /api/compare; x: "step", "tokens" or "elapsed_s"
  show(rows, x) {
    const points = (row, key) =>
      row.curves[x]
        .map((xv, i) => ({ x: xv, y: row.curves[key][i] }))
        .filter((p) => p.x !== null && p.y !== null);
    this.chart.data.datasets = rows.flatMap((row, k) => {
      const color = RUN_COLORS[k % RUN_COLORS.length];
      return [
        { label: row.label || row.name, data: points(row, "train_loss"), borderColor: color, backgroundColor: color,
          pointRadius: 0, borderWidth: 1.2, runId: row.id, series: "train" },
        { label: `${row.label || row.name} val`, data: points(row, "val_loss"), borderColor: color, backgroundColor: color,
          pointRadius: 3, borderDash: [5, 3], borderWidth: 1.5, runId: row.id, series: "val" },
      ];
    });
    this.chart.options.scales.x.title.text = X_TITLES[x];
    this.chart.update();
  }

  // what is drawn, per dataset: {run, series, points: [{x, y, px, py}]} (the browser test reads it)
  drawn() {
    return this.chart.data.datasets.map((ds, i) => {
      const meta = this.chart.getDatasetMeta(i);
      return {
        run: ds.runId,
        series: ds.series,
        points: ds.data.map((p, j) => ({ ...p, px: meta.data[j]?.x ?? null, py: meta.data[j]?.y ?? null })),
      };
    });
  }
}
