// Models: results and uploads, datasets, uploads from the browser, and a "try it" box that calls
// summarize or translate on the chosen model. /ui/models#mdl_... preselects a model.
"use strict";

(() => {
  const { el, $ } = DQB;
  let models = [];

  function downloadButton(model) {
    const button = el("button", { type: "button", class: "small", "data-download": model.id }, "Download");
    button.addEventListener("click", async () => {
      button.disabled = true;
      try {
        const got = await DQB.download(`/v1/models/${model.id}/download`,
          (n) => { button.textContent = DQB.bytes(n); });
        DQB.toast(`${model.name}: ${DQB.bytes(got.bytes)} downloaded${got.verified ? ", SHA-256 checked" : ""}`);
      } catch (error) {
        DQB.toast(DQB.explain(error), true);
      } finally {
        button.disabled = false;
        button.textContent = "Download";
      }
    });
    return button;
  }

  function tryButton(model) {
    return el("button", { type: "button", class: "small link", onclick: () => choose(model.id, true) }, "Try it");
  }

  function nameCell(model) {
    return el("td", {}, el("div", {}, model.name), el("div", { class: "mono subtle small" }, model.id));
  }

  function layers(model) {
    return `${model.layers.encoder} + ${model.layers.decoder}`;
  }

  function resultRow(model) {
    return el("tr", { id: model.id, "data-model": model.id }, nameCell(model), el("td", {}, model.task || "–"),
      el("td", {}, layers(model)), el("td", { class: "num" }, DQB.count(model.parameters)),
      el("td", { class: "num" }, DQB.bytes(model.bytes)),
      el("td", {}, model.job_id ? el("a", { href: `/ui/jobs/${model.job_id}`, class: "mono" }, model.job_id) : "–"),
      el("td", { title: model.created_at }, DQB.ago(model.created_at)),
      el("td", {}, el("div", { class: "actions" }, tryButton(model), downloadButton(model))));
  }

  function uploadRow(model) {
    return el("tr", { id: model.id, "data-model": model.id }, nameCell(model), el("td", {}, model.architecture),
      el("td", {}, layers(model)), el("td", { class: "num" }, DQB.count(model.parameters)),
      el("td", { class: "num" }, DQB.bytes(model.bytes)), el("td", { title: model.created_at }, DQB.ago(model.created_at)),
      el("td", {}, el("div", { class: "actions" }, tryButton(model), downloadButton(model))));
  }

  function datasetRow(ds) {
    return el("tr", { "data-dataset": ds.id }, el("td", {}, ds.name), el("td", { class: "mono" }, ds.id),
      el("td", {}, ds.format), el("td", { class: "num" }, ds.rows), el("td", {}, ds.columns.join(", ")),
      el("td", { class: "num" }, DQB.bytes(ds.bytes)), el("td", { title: ds.created_at }, DQB.ago(ds.created_at)));
  }

  function fill(tableId, emptyId, rows) {
    $(tableId).querySelector("tbody").replaceChildren(...rows);
    $(tableId).hidden = !rows.length;
    $(emptyId).hidden = rows.length > 0;
  }

  function choose(modelId, scroll) {
    const model = models.find((m) => m.id === modelId);
    if (!model) return;
    $("try-model").value = model.id;
    $("try-task").value = model.task === "translation" ? "translate" : "summarize";
    if (scroll) {
      $("try-form").scrollIntoView({ behavior: "smooth" });
      $("try-text").focus();
    }
  }

  async function refresh() {
    const [modelList, datasets] = await Promise.all([DQB.list("/v1/models"), DQB.list("/v1/datasets")]);
    models = modelList.items;
    const results = models.filter((m) => m.source === "compression");
    const uploads = models.filter((m) => m.source === "upload");
    fill("results-table", "results-empty", results.map(resultRow));
    fill("uploads-table", "uploads-empty", uploads.map(uploadRow));
    fill("datasets-table", "datasets-empty", datasets.items.map(datasetRow));
    const selected = $("try-model").value;
    $("try-model").replaceChildren(...[...results, ...uploads].map((m) =>
      el("option", { value: m.id }, `${m.name} (${m.id.slice(-6)})`)));
    if (selected) $("try-model").value = selected;
  }

  async function run(event) {
    event.preventDefault();
    const button = $("try-run");
    const output = $("try-output");
    button.disabled = true;
    $("try-timing").textContent = "running…";
    try {
      const task = $("try-task").value;
      const response = await DQB.request(`/v1/models/${$("try-model").value}/${task}`, {
        method: "POST", headers: { "Content-Type": "application/json" },
        body: JSON.stringify({ inputs: [$("try-text").value] }),
      });
      const [answer] = await response.json();
      const text = answer.summary_text ?? answer.translation_text ?? "";
      output.replaceChildren(el("blockquote", { id: "try-answer" }, text || "(an empty output)"),
        text ? "" : el("p", { class: "subtle small" },
          "An untrained or tiny model often generates nothing: train it longer, or try a real teacher."));
      $("try-timing").textContent = `${response.headers.get("X-Total-Time-Ms") || "?"} ms`;
    } catch (error) {
      output.replaceChildren(el("p", { class: "error" }, DQB.explain(error)));
      $("try-timing").textContent = "";
    } finally {
      output.hidden = false;
      button.disabled = false;
    }
  }

  function uploader(formId, inputId, route) {
    $(formId).addEventListener("submit", async (event) => {
      event.preventDefault();
      const file = $(inputId).files[0];
      const body = new FormData();
      body.append("file", file, file.name);
      $("upload-status").textContent = `uploading ${file.name} (${DQB.bytes(file.size)})…`;
      try {
        const created = await DQB.api(route, { method: "POST", body });
        $("upload-status").textContent = `${file.name} is ${created.id}`;
        $(formId).reset();
        await refresh();
      } catch (error) {
        $("upload-status").textContent = DQB.explain(error);
      }
    });
  }

  DQB.start = async () => {
    $("try-form").addEventListener("submit", run);
    $("try-model").addEventListener("change", () => choose($("try-model").value, false));
    uploader("upload-model", "upload-model-file", "/v1/models");
    uploader("upload-dataset", "upload-dataset-file", "/v1/datasets");
    await refresh();
    const wanted = window.location.hash.slice(1);
    choose(wanted || $("try-model").value, false);
    if (wanted && $(wanted)) $(wanted).scrollIntoView();
  };
})();
