// Compare: finished jobs as points of weights on disk (log scale) against the task metric, the
// teacher as a dashed reference line, and the Pareto front (no other model smaller and better) joined.
// With a sweep chosen (?sweep=ID), only its children, and its recommended model marked.
"use strict";

(() => {
  const { el, $ } = DQB;
  const reports = new Map();  // model id -> report (or {} where it has none)
  let jobs = [];
  let sweep = null;  // the chosen sweep object, or null for every finished job
  let chart = null;

  const recommended = (p) => Boolean(sweep && sweep.recommended && sweep.recommended.model_id === p.job.result_model);

  async function report(modelId) {
    if (!reports.has(modelId)) {
      reports.set(modelId, await DQB.api(`/v1/models/${modelId}/report`).catch(() => ({})));
    }
    return reports.get(modelId);
  }

  function bits(recipe) {
    const q = recipe.quantization || {};
    return recipe.method === "distill_only" ? "32 / 32 / 32"
      : `${q.weight_bits ?? 8} / ${q.embedding_bits ?? 8} / ${q.activation_bits ?? 8}`;
  }

  // One point per job: what the chart and the table need.
  function point(job, rep) {
    const metric = DQB.TASK_METRIC[job.recipe.task || "summarization"];
    return {
      job, metric, x: rep.student_bytes, y: DQB.metricValue(rep.student_metrics, metric),
      teacher: { model: job.recipe.teacher.model, x: rep.teacher_bytes, y: DQB.metricValue(rep.teacher_metrics, metric) },
      ratio: rep.compression_ratio, layers: rep.layer_map,
    };
  }

  // Sorted by size, a point is on the front when it beats every smaller point's metric.
  function paretoFront(points) {
    const sorted = [...points].sort((a, b) => a.x - b.x || b.y - a.y);
    const front = [];
    for (const p of sorted) {
      if (!front.length || p.y > front[front.length - 1].y) front.push(p);
    }
    return new Set(front);
  }

  function teachers(points) {
    const byKey = new Map();
    for (const p of points) {
      if (p.teacher.y === null) continue;
      byKey.set(`${p.teacher.model}:${p.teacher.y}`, p.teacher);
    }
    return [...byKey.values()];
  }

  function datasets(points, front) {
    const xs = points.flatMap((p) => [p.x, p.teacher.x]).filter(Boolean);
    const span = [Math.min(...xs) / 1.6, Math.max(...xs) * 1.6];
    const frontPoints = points.filter((p) => front.has(p)).sort((a, b) => a.x - b.x);
    const refs = teachers(points).flatMap((t, i) => [
      { label: i ? `teacher ${t.model}` : "teacher", type: "line", data: span.map((x) => ({ x, y: t.y })),
        borderColor: "#9ca3af", borderDash: [6, 5], borderWidth: 1.5, pointRadius: 0 },
      { label: "teacher (fp32)", data: [{ x: t.x, y: t.y, name: `teacher ${t.model}` }], pointStyle: "rectRot",
        pointRadius: 8, backgroundColor: "#6b7280", borderColor: "#374151" },
    ]);
    const best = points.filter(recommended);
    return [
      ...(best.length ? [{ label: "recommended", data: best, pointStyle: "star", pointRadius: 14,
        borderColor: "#b45309", backgroundColor: "#f59e0b", borderWidth: 2 }] : []),
      { label: "Pareto front", data: frontPoints, showLine: true, stepped: "after", borderColor: "#4f46e5",
        backgroundColor: "#4f46e5", pointRadius: 7, pointHoverRadius: 9, borderWidth: 2 },
      { label: "other jobs", data: points.filter((p) => !front.has(p)), backgroundColor: "rgba(148,163,184,.35)",
        borderColor: "#64748b", pointRadius: 6, pointHoverRadius: 8 },
      ...refs,
    ];
  }

  function label(ctx) {
    const p = ctx.raw;
    if (p.name) return `${p.name}: ${DQB.bytes(p.x)}, ${DQB.number(p.y)}`;
    return p.job ? `${p.job.id} · ${DQB.describeRecipe(p.job.recipe)}: ${DQB.bytes(p.x)}, ${p.metric} ${DQB.number(p.y)}`
      : `${DQB.number(p.y)}`;
  }

  function drawChart(points, front, metric) {
    const data = { datasets: datasets(points, front) };
    if (chart) {
      chart.data = data;
      chart.options.scales.y.title.text = metric;
      chart.update("none");
      return;
    }
    chart = new Chart($("compare-chart"), {
      type: "scatter", data,
      options: {
        animation: false, maintainAspectRatio: false,
        scales: {
          x: { type: "logarithmic", title: { display: true, text: "weights on disk (log scale)" },
            ticks: { callback: (v) => DQB.bytes(v), maxTicksLimit: 8 } },
          y: { beginAtZero: true, title: { display: true, text: metric } },
        },
        plugins: { legend: { position: "bottom", labels: { usePointStyle: true } },
          tooltip: { callbacks: { label } } },
      },
    });
  }

  function tableRow(p, front) {
    const delta = p.y !== null && p.teacher.y !== null ? p.y - p.teacher.y : null;
    return el("tr", { "data-job": p.job.id },
      el("td", {}, el("a", { href: `/ui/jobs/${p.job.id}`, class: "mono" }, p.job.id)),
      el("td", {}, p.job.recipe.method || "dq"), el("td", {}, bits(p.job.recipe)),
      el("td", {}, p.job.recipe.student ? `${p.job.recipe.student.encoder_layers ?? "="} + ${p.job.recipe.student.decoder_layers ?? "="}` : "–"),
      el("td", { class: "num" }, DQB.bytes(p.x)), el("td", { class: "num" }, p.ratio ? `${p.ratio.toFixed(1)}×` : "–"),
      el("td", { class: "num" }, DQB.number(p.y)),
      el("td", { class: `num ${delta === null ? "" : delta >= 0 ? "better" : "worse"}` },
        delta === null ? "–" : `${delta >= 0 ? "+" : ""}${DQB.number(delta)}`),
      el("td", {}, front.has(p) ? el("span", { class: "badge front" }, "on the front") : "",
        recommended(p) ? el("span", { class: "badge recommended" }, "recommended") : ""));
  }

  async function render() {
    const chosen = jobs.filter((j) => $(`pick-${j.id}`).checked);
    const points = (await Promise.all(chosen.map(async (j) => point(j, await report(j.result_model)))))
      .filter((p) => typeof p.x === "number" && p.y !== null);
    const metric = points.length ? points[0].metric : "task metric";
    const shown = points.filter((p) => p.metric === metric);  // one task's metric on one axis
    const front = paretoFront(shown);
    $("metric-head").textContent = metric;
    const verdict = !sweep ? "" : sweep.recommended ? ` · recommended: ${sweep.recommended.model_id}`
      : ` · ${sweep.reason}`;
    $("chart-note").textContent = `${shown.length} of ${jobs.length} jobs · ${front.size} on the front${verdict}`;
    $("compare-table").querySelector("tbody").replaceChildren(
      ...[...shown].sort((a, b) => a.x - b.x).map((p) => tableRow(p, front)));
    drawChart(shown, front, metric);
  }

  function pickerItem(job) {
    return el("li", {}, el("label", {},
      el("input", { type: "checkbox", id: `pick-${job.id}`, checked: true, onchange: render }),
      el("span", { class: "what" }, el("span", { class: "mono small" }, job.id),
        el("span", { class: "subtle small" }, DQB.describeRecipe(job.recipe)))));
  }

  function selectAll(checked) {
    for (const job of jobs) $(`pick-${job.id}`).checked = checked;
    render();
  }

  async function choose(sweepId) {
    sweep = sweepId ? await DQB.api(`/v1/sweeps/${sweepId}`) : null;
    const url = new URL(window.location.href);
    if (sweepId) url.searchParams.set("sweep", sweepId); else url.searchParams.delete("sweep");
    window.history.replaceState(null, "", url);
    $("picker-title").textContent = sweep ? `Sweep ${sweep.id} (${sweep.status})` : "Finished jobs";
    const finished = (await DQB.list("/v1/jobs", 500)).items
      .filter((j) => j.status === "succeeded" && j.result_model && j.recipe.method !== "finetune");
    jobs = sweep ? finished.filter((j) => j.sweep === sweep.id) : finished;
    $("picker").replaceChildren(...jobs.map(pickerItem));
    $("picker-empty").hidden = jobs.length > 0;
    await render();
  }

  DQB.start = async () => {
    const sweeps = (await DQB.list("/v1/sweeps", 100)).items;
    $("source").append(...sweeps.map((s) => el("option", { value: s.id },
      `sweep ${s.id} · ${s.status} · ${s.points.length} points`)));
    const wanted = new URL(window.location.href).searchParams.get("sweep");
    $("source").value = sweeps.some((s) => s.id === wanted) ? wanted : "";
    $("source").addEventListener("change", () => choose($("source").value));
    $("select-all").addEventListener("click", () => selectAll(true));
    $("select-none").addEventListener("click", () => selectAll(false));
    await choose($("source").value);
  };
})();
