// Live curves (Chart.js): train and validation loss, learning rate and tokens/s per step.
// Points are keyed by step: a step at or before the last one drawn (a resumed run
// recomputing steps after its checkpoint) replaces the points from there on.
/* global Chart */

const GRID = "#3a3e46";
const TICKS = "#8d939c";

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
  return { grid: { color: GRID }, ticks: { color: TICKS } };
}

export class Curves {
  constructor(lossCanvas, rateCanvas) {
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
    if (update) this.update();
  }

  update() {
    this.loss.update();
    this.rate.update();
  }

  // the train-loss points as drawn: [{step, loss, px, py}] (what the browser test reads)
  drawnLoss() {
    const meta = this.loss.getDatasetMeta(0);
    return this.loss.data.datasets[0].data.map((p, i) => ({
      step: p.x,
      loss: p.y,
      px: meta.data[i] ? meta.data[i].x : null,
      py: meta.data[i] ? meta.data[i].y : null,
    }));
  }
}
