// The dashboard's shared code: the API key, calls to /v1 with it, DOM helpers and formatting.
// Each page script registers DQB.start, which runs once a key is known to work.
"use strict";

const DQB = (() => {
  const KEY = "dqbart.apiKey";
  const TERMINAL = new Set(["succeeded", "failed", "cancelled", "user_error"]);
  const TASK_METRIC = { summarization: "rougeLsum", translation: "bleu" };  // compression/evaluate.py

  class ApiError extends Error {
    constructor(status, body) {
      const error = (body && body.error) || {};
      super(error.message || `HTTP ${status}`);
      this.status = status;
      this.code = error.code || "http_error";
      this.param = error.param || null;
    }
  }

  // sessionStorage unless the user asked to be remembered: a shared machine forgets it with the tab.
  function getKey() {
    return sessionStorage.getItem(KEY) || localStorage.getItem(KEY);
  }

  function setKey(key, remember) {
    forgetKey();
    (remember ? localStorage : sessionStorage).setItem(KEY, key);
  }

  function forgetKey() {
    sessionStorage.removeItem(KEY);
    localStorage.removeItem(KEY);
  }

  async function request(path, options = {}) {
    const headers = { Authorization: `Bearer ${getKey()}`, ...(options.headers || {}) };
    const response = await fetch(path, { ...options, headers });
    if (response.ok) return response;
    const body = await response.json().catch(() => null);
    const error = new ApiError(response.status, body);
    if (response.status === 401) askForKey(error.message);
    throw error;
  }

  async function api(path, options = {}) {
    return (await request(path, options)).json();
  }

  // A cursor list (newest first) read page by page up to `max` items; `more` if items remain.
  async function list(path, max = 1000) {
    const items = [];
    let after = null;
    for (;;) {
      const sep = path.includes("?") ? "&" : "?";
      const limit = Math.min(100, max - items.length);
      const page = await api(`${path}${sep}limit=${limit}${after ? `&after=${after}` : ""}`);
      items.push(...page.data);
      if (!page.has_more || !page.data.length || items.length >= max) return { items, more: page.has_more };
      after = page.data[page.data.length - 1].id;
    }
  }

  // el("td", {class: "num"}, "text", childNode): text goes in as text, never as HTML.
  function el(tag, attrs = {}, ...children) {
    const node = document.createElement(tag);
    for (const [name, value] of Object.entries(attrs)) {
      if (value === null || value === undefined || value === false) continue;
      if (name.startsWith("on")) node.addEventListener(name.slice(2), value);
      else node.setAttribute(name, value === true ? "" : value);
    }
    for (const child of children.flat()) {
      if (child === null || child === undefined || child === false) continue;
      node.append(child instanceof Node ? child : String(child));
    }
    return node;
  }

  function $(id) {
    return document.getElementById(id);
  }

  function bytes(n) {
    if (n === null || n === undefined) return "–";
    const units = ["B", "KB", "MB", "GB", "TB"];
    let i = 0;
    while (Math.abs(n) >= 1000 && i < units.length - 1) { n /= 1000; i += 1; }
    return `${n >= 100 || i === 0 ? Math.round(n) : n.toFixed(1)} ${units[i]}`;
  }

  function count(n) {
    if (n === null || n === undefined) return "–";
    if (n >= 1e9) return `${(n / 1e9).toFixed(2)} B`;
    if (n >= 1e6) return `${(n / 1e6).toFixed(1)} M`;
    if (n >= 1e3) return `${(n / 1e3).toFixed(1)} k`;
    return String(n);
  }

  function number(x, digits = 4) {
    return typeof x === "number" && Number.isFinite(x) ? x.toFixed(digits) : "–";
  }

  function duration(seconds) {
    if (seconds === null || seconds === undefined) return "";
    const s = Math.round(seconds);
    if (s < 60) return `${s}s`;
    if (s < 3600) return `${Math.floor(s / 60)}m ${s % 60}s`;
    return `${Math.floor(s / 3600)}h ${Math.floor((s % 3600) / 60)}m`;
  }

  function ago(iso) {
    if (!iso) return "–";
    const seconds = (Date.now() - new Date(iso).getTime()) / 1000;
    if (seconds < 5) return "just now";
    if (seconds < 86400) return `${duration(seconds)} ago`;
    return new Date(iso).toLocaleDateString();
  }

  function clock(iso) {
    return iso ? new Date(iso).toLocaleTimeString([], { hour12: false }) : "";
  }

  function badge(status) {
    return el("span", { class: `badge ${status}`, "data-status": status }, status.replace("_", " "));
  }

  function progressBar(job, big = false) {
    const bar = el("div", { class: "bar" });
    bar.style.width = `${Math.round(job.progress.fraction * 100)}%`;
    return el("div", { class: `progress ${job.status}${big ? " big" : ""}`, role: "progressbar",
      "aria-valuenow": Math.round(job.progress.fraction * 100), "aria-valuemin": 0, "aria-valuemax": 100 }, bar);
  }

  function progressText(job) {
    const p = job.progress;
    if (!p.total_steps) return job.status === "queued" ? "waiting for a worker" : "";
    const eta = p.eta_seconds && !TERMINAL.has(job.status) ? ` · ${duration(p.eta_seconds)} left` : "";
    return `${p.step} / ${p.total_steps} steps${eta}`;
  }

  // What a job made: "dq w2e8a8 · 1+1 layers" from its recipe.
  function describeRecipe(recipe) {
    const q = recipe.quantization || {};
    const s = recipe.student || {};
    const layers = (v) => (Array.isArray(v) ? v.length : v ?? "=");
    const bits = recipe.method === "finetune" ? "" : ` w${q.weight_bits ?? 8}e${q.embedding_bits ?? 8}a${q.activation_bits ?? 8}`;
    const student = recipe.method === "finetune" ? "" : ` · ${layers(s.encoder_layers)}+${layers(s.decoder_layers)} layers`;
    return `${recipe.method || "dq"}${bits}${student} · ${recipe.task || "summarization"}`;
  }

  function metricValue(metrics, name) {
    if (!metrics) return null;
    for (const key of [name, `eval/${name}`]) {
      if (typeof metrics[key] === "number") return metrics[key];
    }
    return null;
  }

  let toastTimer = null;
  function toast(message, bad = false) {
    const node = $("toast");
    node.textContent = message;
    node.className = `toast${bad ? " bad" : ""}`;
    node.hidden = false;
    clearTimeout(toastTimer);
    toastTimer = setTimeout(() => { node.hidden = true; }, 5000);
  }

  function explain(error) {
    return error instanceof ApiError ? `${error.message} (${error.code})` : String(error.message || error);
  }

  // Run fn now and then every `ms` (or what fn returns), skipping beats while the tab is hidden.
  function every(ms, fn) {
    let timer = null;
    const beat = async () => {
      let next = ms;
      if (!document.hidden) {
        try { next = (await fn()) || ms; } catch (error) { if (error.status !== 401) toast(explain(error), true); }
      }
      timer = setTimeout(beat, next);
    };
    beat();
    return () => clearTimeout(timer);
  }

  // A download through fetch, since a plain link cannot carry the Authorization header; the bytes
  // are checked against the X-Checksum-SHA256 header where the browser offers SubtleCrypto.
  async function download(path, onProgress) {
    const response = await request(path);
    const total = Number(response.headers.get("Content-Length")) || 0;
    const reader = response.body.getReader();
    const chunks = [];
    let received = 0;
    for (;;) {
      const { done, value } = await reader.read();
      if (done) break;
      chunks.push(value);
      received += value.length;
      onProgress(received, total);
    }
    const blob = new Blob(chunks, { type: "application/x-tar" });
    const verified = await checksumMatches(blob, response.headers.get("X-Checksum-SHA256"));
    const name = /filename="?([^";]+)"?/.exec(response.headers.get("Content-Disposition") || "");
    const link = el("a", { href: URL.createObjectURL(blob), download: name ? name[1] : "model.tar" });
    document.body.append(link);
    link.click();
    link.remove();
    setTimeout(() => URL.revokeObjectURL(link.href), 60000);
    return { bytes: received, verified };
  }

  async function checksumMatches(blob, expected) {
    if (!expected || !(window.crypto && crypto.subtle)) return null;
    const digest = new Uint8Array(await crypto.subtle.digest("SHA-256", await blob.arrayBuffer()));
    const hex = Array.from(digest, (b) => b.toString(16).padStart(2, "0")).join("");
    if (hex !== expected) throw new Error("the download does not match its SHA-256: try again");
    return true;
  }

  function showKey() {
    const key = getKey();
    $("key-label").textContent = `key …${key.slice(-6)}`;
    $("keybox").hidden = false;
    $("signin").hidden = true;
    $("main").hidden = false;
  }

  function askForKey(message) {
    forgetKey();
    $("keybox").hidden = true;
    $("main").hidden = true;
    $("signin").hidden = false;
    const error = $("signin-error");
    error.textContent = message || "";
    error.hidden = !message;
    $("key-input").focus();
  }

  let started = false;
  async function begin() {
    try {
      await api("/v1/jobs?limit=1");  // the cheapest call that proves the key
    } catch (error) {
      if (error.status !== 401) askForKey(explain(error));
      return;
    }
    showKey();
    if (!started && DQB.start) {
      started = true;
      DQB.start();
    }
  }

  function init() {
    $("signin-form").addEventListener("submit", (event) => {
      event.preventDefault();
      const key = $("key-input").value.trim();
      setKey(key, $("key-remember").checked);
      $("key-input").value = "";
      begin();
    });
    $("sign-out").addEventListener("click", () => askForKey(""));
    if (getKey()) begin(); else askForKey("");
  }

  document.addEventListener("DOMContentLoaded", init);

  return { api, request, list, el, $, bytes, count, number, duration, ago, clock, badge, progressBar,
    progressText, describeRecipe, metricValue, toast, explain, every, download, TERMINAL, TASK_METRIC, start: null };
})();
