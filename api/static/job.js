// A job page: progress, error, result with its report, live loss and eval curves, events,
// checkpoints and the recipe. Polls every 2 s until the job is final.
"use strict";

(() => {
  const { el, $ } = DQB;
  const jobId = $("main").dataset.jobId;
  // Loss components by family (compression/losses.py): the task, logits, hidden-state and attention
  // terms, each family in its own hue; eval metrics by name.
  const FAMILIES = [
    [/^task$/, ["#4f46e5"]], [/^logits$/, ["#0ea5e9"]], [/hidden|last/, ["#059669", "#34d399", "#065f46"]],
    [/attn|attention/, ["#d97706", "#fbbf24", "#b45309"]], [/^total$/, ["#111827"]],
    [/^rouge1$/, ["#4f46e5"]], [/^rouge2$/, ["#0ea5e9"]], [/^rougeL$/, ["#10b981"]], [/^rougeLsum$/, ["#f59e0b"]],
    [/^bleu$/, ["#db2777"]],
  ];
  const SPARE = ["#8b5cf6", "#ef4444", "#14b8a6", "#64748b", "#a16207", "#be185d"];
  const charts = {};
  let lastEvent = null;
  let eventCount = 0;
  let resultModel = null;  // its id, once the job has one and its report is shown
  let teacherMetric = null;  // {name, value}: a reference line on the eval chart once the report is in

  function family(name) {
    const i = FAMILIES.findIndex(([pattern]) => pattern.test(name));
    return i < 0 ? FAMILIES.length : i;
  }

  // The colour of a series: its family's hue, a different shade for each member (enc_, dec_, cross_).
  function color(name, names) {
    const i = family(name);
    if (i === FAMILIES.length) return SPARE[names.indexOf(name) % SPARE.length];
    const shades = FAMILIES[i][1];
    const members = names.filter((n) => family(n) === i);
    return shades[members.indexOf(name) % shades.length];
  }

  function fact(label, value) {
    return el("div", {}, el("dt", {}, label), el("dd", {}, value ?? "–"));
  }

  function renderHeader(job) {
    $("job-status").replaceChildren(DQB.badge(job.status));
    $("job-subtitle").textContent = DQB.describeRecipe(job.recipe);
    $("job-progress").replaceWith(Object.assign(DQB.progressBar(job, true), { id: "job-progress" }));
    $("job-progress-text").textContent = DQB.progressText(job) || job.status;
    $("job-cancel").hidden = DQB.TERMINAL.has(job.status);
    const ran = job.started_at && (new Date(job.finished_at || Date.now()) - new Date(job.started_at)) / 1000;
    $("job-facts").replaceChildren(
      fact("Stage", el("span", { class: "stage", id: "job-stage" }, job.stage || "–")),
      fact("Created", new Date(job.created_at).toLocaleString()),
      fact("Ran for", ran ? DQB.duration(ran) : "–"),
      fact("Attempts", job.attempts),
      fact("Teacher", job.recipe.teacher && job.recipe.teacher.model),
      fact("Dataset", job.recipe.dataset && job.recipe.dataset.dataset));
  }

  function renderError(job) {
    const box = $("job-error");
    box.hidden = !job.error;
    if (!job.error) return;
    const userError = job.status === "user_error";
    box.className = `card alert${userError ? " user" : ""}`;
    box.replaceChildren(
      el("h2", {}, userError ? "The job stopped on its input" : "The job failed"),
      el("p", {}, job.error.message),
      el("p", { class: "subtle small" }, `code ${job.error.code}${job.error.param ? ` · field ${job.error.param}` : ""}`));
  }

  function renderRecipe(recipe) {
    const t = recipe.training || {};
    const q = recipe.quantization || {};
    $("recipe-facts").replaceChildren(
      fact("Method", recipe.method || "dq"), fact("Task", recipe.task || "summarization"),
      fact("Bits (w/e/a)", `${q.weight_bits ?? 8} / ${q.embedding_bits ?? 8} / ${q.activation_bits ?? 8}`),
      fact("Steps", t.max_steps ?? `${t.epochs ?? 3} epochs`), fact("Batch", t.batch_size ?? 16),
      fact("Learning rate", t.lr ?? 3e-5));
    $("recipe-json").textContent = JSON.stringify(recipe, null, 2);
  }

  // A log axis labelled at powers of ten only, in short form (1e-3, 0.1, 10).
  function decade(value) {
    const exponent = Math.log10(value);
    if (Math.abs(exponent - Math.round(exponent)) > 1e-9) return "";
    return Math.abs(exponent) <= 2 ? String(Number(value.toPrecision(1))) : value.toExponential(0);
  }

  // Whole decades around the data, so the top and bottom lines are labelled and not cut off.
  function fitDecades(chart, datasets) {
    const ys = datasets.flatMap((d) => d.data.map((p) => p.y));
    chart.options.scales.y.min = 10 ** Math.floor(Math.log10(Math.min(...ys)));
    chart.options.scales.y.max = 10 ** Math.ceil(Math.log10(Math.max(...ys)));
  }

  function lineChart(canvasId, logScale) {
    return new Chart($(canvasId), {
      type: "line",
      data: { datasets: [] },
      options: {
        animation: false, maintainAspectRatio: false, parsing: false, normalized: true,
        interaction: { mode: "nearest", axis: "x", intersect: false },
        scales: {
          x: { type: "linear", title: { display: true, text: "step" }, ticks: { precision: 0 } },
          y: logScale ? { type: "logarithmic", ticks: { callback: decade } } : { type: "linear", beginAtZero: true },
        },
        plugins: { legend: { position: "bottom", labels: { boxWidth: 12, usePointStyle: true } } },
        elements: { point: { radius: 0, hoverRadius: 4 }, line: { borderWidth: 2, tension: 0.15 } },
      },
    });
  }

  // {name: [{x: step, y: value}]} of the points whose name starts with `prefix`, prefix removed.
  function series(points, prefix) {
    const out = {};
    for (const p of points) {
      if (!p.name.startsWith(prefix)) continue;
      (out[p.name.slice(prefix.length)] ||= []).push({ x: p.step, y: p.value });
    }
    return out;
  }

  function draw(key, canvasId, emptyId, byName, extra = []) {
    const names = Object.keys(byName).sort((a, b) => family(a) - family(b) || a.localeCompare(b));
    $(emptyId).hidden = names.length > 0;
    $(canvasId).parentElement.hidden = names.length === 0;
    if (!names.length) return;
    const positive = names.every((n) => byName[n].every((p) => p.y > 0));
    charts[key] ||= lineChart(canvasId, key === "loss" && positive);
    const datasets = names.map((name) => ({
      label: name, data: byName[name], borderColor: color(name, names), backgroundColor: color(name, names),
      borderWidth: name === "total" ? 3 : 2, pointRadius: byName[name].length < 12 ? 3 : 0,
    }));
    charts[key].data.datasets = datasets.concat(extra);
    if (charts[key].options.scales.y.type === "logarithmic") fitDecades(charts[key], datasets);
    charts[key].update("none");
  }

  function teacherLine(byName) {
    if (!teacherMetric || !byName[teacherMetric.name]) return [];
    const steps = Object.values(byName).flat().map((p) => p.x);
    const span = [Math.min(...steps), Math.max(...steps)];
    return [{ label: `teacher ${teacherMetric.name}`, data: span.map((x) => ({ x, y: teacherMetric.value })),
      borderColor: "#9ca3af", borderDash: [6, 4], borderWidth: 1.5, pointRadius: 0 }];
  }

  async function refreshMetrics() {
    const points = (await DQB.api(`/v1/jobs/${jobId}/metrics`)).data;
    draw("loss", "loss-chart", "loss-empty", series(points, "loss/"));
    const evals = series(points, "eval/");
    draw("eval", "eval-chart", "eval-empty", evals, teacherLine(evals));
  }

  function describeEvent(event) {
    if (event.type !== "metrics") return event.message;
    const metrics = (event.data && event.data.metrics) || {};
    const evals = Object.entries(metrics).filter(([name]) => name.startsWith("eval/"));
    if (!evals.length) return null;  // training losses are on the chart
    const values = evals.map(([name, v]) => `${name.slice(5)} ${DQB.number(v)}`).join(", ");
    return `evaluation at step ${event.data.step}: ${values}`;
  }

  async function refreshEvents() {
    const list = $("events");
    const atBottom = list.scrollHeight - list.scrollTop - list.clientHeight < 40;
    for (;;) {
      const page = await DQB.api(`/v1/jobs/${jobId}/events?limit=1000${lastEvent !== null ? `&after=${lastEvent}` : ""}`);
      for (const event of page.data) {
        lastEvent = event.id;
        const text = describeEvent(event);
        if (text === null) continue;
        eventCount += 1;
        list.append(el("li", { class: `event ${event.type}` }, el("time", { datetime: event.created_at },
          DQB.clock(event.created_at)), el("span", { class: "stage" }, event.stage || ""), el("span", { class: "msg" }, text)));
      }
      if (!page.has_more) break;
    }
    $("events-count").textContent = `${eventCount} events`;
    $("events-empty").hidden = eventCount > 0;
    if (atBottom) list.scrollTop = list.scrollHeight;  // follow the tail unless the user scrolled up
  }

  async function refreshCheckpoints() {
    const rows = (await DQB.api(`/v1/jobs/${jobId}/checkpoints`)).data;
    $("checkpoints").querySelector("tbody").replaceChildren(...rows.map((c) => el("tr", {},
      el("td", {}, c.step), el("td", { class: "num" }, DQB.bytes(c.bytes)), el("td", {}, DQB.ago(c.created_at)))));
    $("checkpoints").hidden = !rows.length;
    $("checkpoints-empty").hidden = rows.length > 0;
  }

  function change(name, teacher, student) {
    if (typeof teacher !== "number" || typeof student !== "number") return el("td", { class: "num" }, "–");
    const delta = student - teacher;
    const higherIsBetter = !/loss|perplexity|latency|ms/i.test(name);
    const good = higherIsBetter ? delta >= 0 : delta <= 0;
    const pct = teacher ? ` (${delta >= 0 ? "+" : ""}${((delta / Math.abs(teacher)) * 100).toFixed(1)}%)` : "";
    return el("td", { class: `num ${good ? "better" : "worse"}` }, `${delta >= 0 ? "+" : ""}${DQB.number(delta)}${pct}`);
  }

  function renderMetricsTable(report) {
    const teacher = report.teacher_metrics || {};
    const student = report.student_metrics || report.metrics || {};
    const names = [...new Set([...Object.keys(teacher), ...Object.keys(student)])]
      .filter((n) => typeof (student[n] ?? teacher[n]) === "number").sort();
    $("result-metrics").hidden = !names.length;
    $("result-metrics").querySelector("tbody").replaceChildren(...names.map((n) => el("tr", {},
      el("td", {}, n), el("td", { class: "num" }, DQB.number(teacher[n])), el("td", { class: "num" }, DQB.number(student[n])),
      change(n, teacher[n], student[n]))));
  }

  async function renderResult(job) {
    const [model, report] = await Promise.all([
      DQB.api(`/v1/models/${job.result_model}`),
      DQB.api(`/v1/models/${job.result_model}/report`).catch(() => ({})),
    ]);
    const ratio = report.compression_ratio;
    $("result-facts").replaceChildren(
      fact("Model", el("a", { href: `/ui/models#${model.id}` }, model.name)),
      fact("Id", el("span", { class: "mono" }, model.id)),
      fact("Download size", DQB.bytes(model.bytes)),
      fact("Weights", report.student_bytes ? `${DQB.bytes(report.student_bytes)} (teacher ${DQB.bytes(report.teacher_bytes)})` : null),
      fact("Smaller than the teacher", ratio ? `${ratio.toFixed(1)}×` : null),
      fact("Parameters", DQB.count(model.parameters)),
      fact("Layers", `${model.layers.encoder} encoder + ${model.layers.decoder} decoder`),
      fact("SHA-256", el("span", { class: "mono", title: model.sha256 }, `${model.sha256.slice(0, 16)}…`)));
    renderMetricsTable(report);
    const name = DQB.TASK_METRIC[job.recipe.task || "summarization"];
    const value = DQB.metricValue(report.teacher_metrics, name);
    teacherMetric = value === null ? null : { name, value };
    $("result-card").hidden = false;
    resultModel = model.id;
  }

  async function refresh() {
    const job = await DQB.api(`/v1/jobs/${jobId}`);
    renderHeader(job);
    renderError(job);
    await Promise.all([refreshEvents(), refreshCheckpoints()]);
    if (job.result_model && !resultModel) await renderResult(job);
    await refreshMetrics();
    return DQB.TERMINAL.has(job.status) ? 60000 : 2000;
  }

  async function download() {
    const button = $("download");
    const status = $("download-status");
    button.disabled = true;
    try {
      const result = await DQB.download(`/v1/models/${resultModel}/download?format=${$("download-format").value}`,
        (got, total) => { status.textContent = `downloading… ${DQB.bytes(got)}${total ? ` of ${DQB.bytes(total)}` : ""}`; });
      status.textContent = `downloaded ${DQB.bytes(result.bytes)}${result.verified ? ", SHA-256 checked" : ""}`;
    } catch (error) {
      status.textContent = DQB.explain(error);
    } finally {
      button.disabled = false;
    }
  }

  async function cancel() {
    if (!window.confirm(`Cancel ${jobId}? A running job stops within a few seconds.`)) return;
    try {
      renderHeader(await DQB.api(`/v1/jobs/${jobId}/cancel`, { method: "POST" }));
    } catch (error) {
      DQB.toast(DQB.explain(error), true);
    }
  }

  DQB.start = async () => {
    $("download").addEventListener("click", download);
    $("job-cancel").addEventListener("click", cancel);
    try {
      renderRecipe((await DQB.api(`/v1/jobs/${jobId}`)).recipe);
    } catch (error) {
      $("main").replaceChildren(el("div", { class: "card empty" }, DQB.explain(error), " · ",
        el("a", { href: "/ui/jobs" }, "all jobs")));
      return;
    }
    DQB.every(2000, refresh);
  };
})();
