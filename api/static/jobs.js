// Jobs: a live list of the tenant's jobs, refreshed every 2 s while any is active.
"use strict";

(() => {
  const { el, $ } = DQB;
  let shown = 50;  // rows asked for; "Load more" asks for 50 more

  function row(job) {
    const result = job.result_model
      ? el("a", { href: `/ui/models#${job.result_model}`, class: "mono" }, job.result_model)
      : el("span", { class: "subtle" }, "–");
    return el("tr", { "data-job": job.id },
      el("td", {}, el("a", { href: `/ui/jobs/${job.id}`, class: "mono" }, job.id),
        el("div", { class: "subtle small" }, DQB.describeRecipe(job.recipe))),
      el("td", {}, DQB.badge(job.status)),
      el("td", {}, el("span", { class: "stage" }, job.stage || "–")),
      el("td", {}, el("div", { class: "progress-cell" }, DQB.progressBar(job),
        el("span", { class: "subtle small progress-text" }, DQB.progressText(job)))),
      el("td", {}, result),
      el("td", { title: job.created_at }, DQB.ago(job.created_at)));
  }

  async function refresh() {
    const { items: jobs, more } = await DQB.list("/v1/jobs", shown);
    const active = jobs.filter((j) => !DQB.TERMINAL.has(j.status)).length;
    $("jobs-body").replaceChildren(...jobs.map(row));
    $("jobs-empty").hidden = jobs.length > 0;
    $("jobs-table").hidden = jobs.length === 0;
    $("jobs-more").hidden = !more;
    $("jobs-summary").textContent = jobs.length ? `${jobs.length}${more ? "+" : ""} jobs · ${active} active` : "";
    return active ? 2000 : 10000;
  }

  DQB.start = () => {
    $("jobs-more").addEventListener("click", () => { shown += 50; refresh(); });
    DQB.every(2000, refresh);
  };
})();
