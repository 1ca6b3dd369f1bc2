// gpugate's dashboard: plain JavaScript, no build step, no third-party code.
// Every API call carries the user's token (Authorization: Bearer), kept for this tab
// only (sessionStorage). The page itself holds no data: the daemon serves it to anyone.
"use strict";

const API = "/v1";
const POLL_MS = 2000;
let historyS = 600; // the charts' window (the #window select)
let me = null; // {uid, user, admin}
let lastJobs = [];
let logAbort = null;

const $ = (id) => document.getElementById(id);

function token() {
  return sessionStorage.getItem("gpugate-token");
}

async function api(method, path, body) {
  const response = await fetch(API + path, {
    method,
    headers: {
      Authorization: "Bearer " + token(),
      ...(body === undefined ? {} : { "Content-Type": "application/json" }),
    },
    body: body === undefined ? undefined : JSON.stringify(body),
  });
  if (response.status === 401) {
    sessionStorage.removeItem("gpugate-token");
    showSignIn("That token is not valid (any more): make a new one with `gpugate token`.");
    throw new Error("unauthorized");
  }
  const data = await response.json();
  if (!response.ok) throw new Error(data.error || "HTTP " + response.status);
  return data;
}

function showError(message) {
  $("error").textContent = message || "";
}

function showSignIn(message) {
  $("main").hidden = true;
  $("signin").hidden = false;
  showError(message);
}

// ------------------------------------------------------------------------ GPUs
function drawChart(canvas, points, value, line, color) {
  const ratio = window.devicePixelRatio || 1;
  const width = canvas.clientWidth * ratio;
  const height = canvas.clientHeight * ratio;
  canvas.width = width;
  canvas.height = height;
  const g = canvas.getContext("2d");
  g.clearRect(0, 0, width, height);
  const now = Date.now() / 1000;
  const x = (t) => width * (1 - (now - t) / historyS);
  const y = (pct) => height * (1 - Math.min(Math.max(pct, 0), 100) / 100);
  g.strokeStyle = "#b00020"; // the headroom line: admission keeps work under it
  g.setLineDash([4 * ratio, 4 * ratio]);
  g.beginPath();
  g.moveTo(0, y(line));
  g.lineTo(width, y(line));
  g.stroke();
  g.setLineDash([]);
  g.strokeStyle = color;
  g.lineWidth = 1.5 * ratio;
  g.beginPath();
  let started = false;
  for (const p of points) {
    const v = value(p);
    if (v === null) continue;
    if (started) g.lineTo(x(p[0]), y(v));
    else g.moveTo(x(p[0]), y(v));
    started = true;
  }
  g.stroke();
}

function gpuCard(series) {
  let card = document.getElementById("gpu-" + series.index);
  if (!card) {
    card = document.createElement("div");
    card.className = "gpu";
    card.id = "gpu-" + series.index;
    card.innerHTML =
      '<h3></h3><div class="legend util"></div><canvas class="util-chart"></canvas>' +
      '<div class="legend mem"></div><canvas class="mem-chart"></canvas><div class="legend users"></div>';
    $("gpus").appendChild(card);
  }
  return card;
}

async function refreshGpus() {
  const [history, gpus] = await Promise.all([
    api("GET", "/gpus/history?seconds=" + historyS),
    api("GET", "/gpus"),
  ]);
  $("backend").textContent = gpus.backend + (gpus.note ? " (" + gpus.note + ")" : "");
  for (const series of history.gpus) {
    const info = gpus.gpus.find((g) => g.uuid === series.uuid);
    const card = gpuCard(series);
    const last = series.points[series.points.length - 1] || [0, null, 0];
    const memPct = (b) => (100 * b) / series.mem_total_bytes;
    card.querySelector("h3").textContent = "GPU" + series.index + " " + (info ? info.name : "");
    card.querySelector(".util").textContent =
      "utilization " + (last[1] === null ? "n/a" : last[1].toFixed(0) + "%") +
      " (line " + series.util_headroom_pct + "%)";
    card.querySelector(".mem").textContent =
      "memory " + gib(last[2]) + " of " + gib(series.mem_total_bytes) +
      " (line " + series.mem_headroom_pct + "%)";
    card.querySelector(".users").textContent = info ? whoUses(info) : "";
    drawChart(card.querySelector(".util-chart"), series.points, (p) => p[1], series.util_headroom_pct, "#1565c0");
    drawChart(card.querySelector(".mem-chart"), series.points, (p) => memPct(p[2]), series.mem_headroom_pct, "#2e7d32");
  }
}

function whoUses(info) {
  // each gpugate job and each outside process, with the memory it holds
  const parts = info.processes.map((p) =>
    (p.job_id === null ? "pid " + p.pid + " " + p.name + " (not gpugate's)" : "job #" + p.job_id) +
    (p.mem_bytes === null ? "" : " " + gib(p.mem_bytes)),
  );
  const seen = new Set(info.processes.map((p) => p.job_id));
  for (const j of info.jobs) if (!seen.has(j)) parts.push("job #" + j + " (starting)");
  return "using it: " + (parts.join(", ") || "nobody");
}

function gib(bytes) {
  return (bytes / 2 ** 30).toFixed(1) + " GiB";
}

// ------------------------------------------------------------------------ jobs
function mayControl(job) {
  return me && (me.admin || job.owner_uid === me.uid);
}

const ACTIONS = {
  queued: ["hold", "cancel"],
  held: ["release", "cancel"],
  starting: ["cancel"],
  running: ["suspend", "checkpoint", "cancel"],
  suspended: ["resume", "cancel"],
};

function jobRow(job) {
  const row = document.createElement("tr");
  row.dataset.job = job.id;
  const where = ["running", "starting", "suspended"].includes(job.state)
    ? job.gpu_indices.map((i) => "GPU" + i).join(",")
    : job.reason;
  const cells = [
    ["id", '<a href="#job/' + job.id + '">' + job.id + "</a>"],
    ["user", escapeHtml(job.owner_name || String(job.owner_uid))],
    ["state state-" + job.state, job.state],
    ["prio", String(job.priority)],
    ["gpus", String(job.gpus)],
    ["command", escapeHtml(job.command)],
    ["reason", escapeHtml(where || "")],
  ];
  for (const [cls, html] of cells) {
    const td = document.createElement("td");
    td.className = cls;
    td.innerHTML = html;
    row.appendChild(td);
  }
  const actions = document.createElement("td");
  actions.className = "actions";
  if (mayControl(job)) {
    for (const action of ACTIONS[job.state] || []) {
      if (action === "checkpoint" && job.preempt !== "checkpoint") continue;
      const button = document.createElement("button");
      button.textContent = action;
      button.dataset.action = action;
      button.onclick = () => act(job.id, action);
      actions.appendChild(button);
    }
  }
  row.appendChild(actions);
  return row;
}

function escapeHtml(text) {
  const div = document.createElement("div");
  div.textContent = text;
  return div.innerHTML;
}

async function act(jobId, action) {
  try {
    await api("POST", "/jobs/" + jobId + "/" + action);
    showError("");
    await refreshJobs();
  } catch (error) {
    showError("job " + jobId + ": " + error.message);
  }
}

function fillFilter(select, values) {
  const chosen = select.value;
  const have = new Set([...select.options].map((o) => o.value));
  for (const value of values) {
    if (!have.has(value)) select.add(new Option(value, value));
  }
  select.value = chosen;
}

async function refreshJobs() {
  const listing = await api("GET", "/jobs?recent=20&queued=200");
  lastJobs = listing.jobs;
  fillFilter($("filter-state"), [...new Set(lastJobs.map((j) => j.state))]);
  fillFilter($("filter-user"), [...new Set(lastJobs.map((j) => j.owner_name || String(j.owner_uid)))]);
  renderJobs();
}

function renderJobs() {
  const state = $("filter-state").value;
  const user = $("filter-user").value;
  const body = $("jobs").querySelector("tbody");
  body.replaceChildren(
    ...lastJobs
      .filter((j) => !state || j.state === state)
      .filter((j) => !user || (j.owner_name || String(j.owner_uid)) === user)
      .map(jobRow),
  );
}

// ------------------------------------------------------------------------ one job
async function showJob(jobId) {
  const detail = await api("GET", "/jobs/" + jobId);
  const job = detail.job;
  const section = $("job");
  section.hidden = false;
  section.innerHTML =
    "<h2>Job " + job.id + ' <a href="#">close</a></h2>' +
    "<p><code>" + escapeHtml(job.command) + "</code> in <code>" + escapeHtml(detail.cwd) + "</code></p>" +
    "<p>" + job.state + ", priority " + job.priority + ", " + job.gpus + " GPU(s)" +
    (job.mem_bytes ? ", expects " + gib(job.mem_bytes) : "") + "</p>" +
    '<h3>GPU use</h3><div class="legend" id="job-use"></div>' +
    '<canvas id="job-util" class="job-chart"></canvas><canvas id="job-mem" class="job-chart"></canvas>' +
    '<h3>History</h3><ol class="history"></ol><h3>Log</h3><pre id="log"></pre>';
  const list = section.querySelector(".history");
  for (const t of detail.history) {
    const item = document.createElement("li");
    item.textContent =
      new Date(t.at * 1000).toLocaleTimeString() + "  " + (t.from_state || "-") + " → " + t.to_state + ": " + t.reason;
    list.appendChild(item);
  }
  await drawJobUse(job);
  followLog(job.id);
}

async function drawJobUse(job) {
  if (!job.gpus) {
    $("job-use").textContent = "CPU-only job";
    return;
  }
  const usage = await api("GET", "/jobs/" + job.id + "/usage");
  const points = usage.usage.points;
  const last = points[points.length - 1];
  // memory on a scale a quarter above the most it expected or held, so both lines show
  const memTotal = 1.25 * Math.max(job.mem_bytes || 0, ...points.map((p) => p[2]), 1);
  $("job-use").textContent = last
    ? "now " + (last[1] === null ? "n/a" : last[1].toFixed(0) + "%") + " utilization (summed over its GPUs), " +
      gib(last[2]) + " memory (" + (job.mem_bytes ? "expected " + gib(job.mem_bytes) + ", dashed" : "no expectation") + ")"
    : "not seen on a GPU yet";
  const span = points.length ? Math.max(60, Date.now() / 1000 - points[0][0]) : 60;
  const saved = historyS;
  historyS = span; // the chart's window: the whole of what was sampled
  drawChart($("job-util"), points, (p) => p[1], 100 * job.gpus, "#1565c0");
  drawChart($("job-mem"), points, (p) => (100 * p[2]) / memTotal, job.mem_bytes ? (100 * job.mem_bytes) / memTotal : 100, "#2e7d32");
  historyS = saved;
}

async function followLog(jobId) {
  if (logAbort) logAbort.abort();
  logAbort = new AbortController();
  const response = await fetch(API + "/jobs/" + jobId + "/logs?follow=1", {
    headers: { Authorization: "Bearer " + token() },
    signal: logAbort.signal,
  });
  if (!response.ok) {
    $("log").textContent = "(" + ((await response.json()).error || "no log") + ")";
    return;
  }
  const reader = response.body.getReader();
  const decoder = new TextDecoder();
  for (;;) {
    const { value, done } = await reader.read();
    if (done) break;
    const log = $("log");
    const atEnd = log.scrollTop + log.clientHeight >= log.scrollHeight - 4;
    log.textContent += decoder.decode(value, { stream: true });
    if (atEnd) log.scrollTop = log.scrollHeight; // a tail, unless the reader scrolled up
  }
}

function route() {
  const match = location.hash.match(/^#job\/(\d+)$/);
  if (match) {
    showJob(Number(match[1])).catch((e) => showError(e.message));
  } else {
    if (logAbort) logAbort.abort();
    $("job").hidden = true;
  }
}

// ------------------------------------------------------------------------ start
async function start() {
  $("signin").hidden = true;
  $("main").hidden = false;
  me = await api("GET", "/whoami");
  $("who").textContent = "signed in as " + me.user + (me.admin ? " (admin)" : "");
  const tick = async () => {
    try {
      await Promise.all([refreshGpus(), refreshJobs()]);
    } catch (error) {
      if (error.message !== "unauthorized") showError(error.message);
    }
  };
  await tick();
  setInterval(tick, POLL_MS);
  route();
}

window.addEventListener("hashchange", route);
$("filter-state").onchange = renderJobs;
$("window").onchange = () => {
  historyS = Number($("window").value);
  refreshGpus().catch((e) => showError(e.message));
};
$("filter-user").onchange = renderJobs;
$("token-form").onsubmit = (event) => {
  event.preventDefault();
  sessionStorage.setItem("gpugate-token", $("token").value.trim());
  start().catch((e) => showError(e.message));
};
// `gpugate dashboard` opens the page with the token in the fragment, which the
// browser never sends to a server; it is moved to sessionStorage and erased from the URL
const fragment = location.hash.match(/^#token=(.+)$/);
if (fragment) {
  sessionStorage.setItem("gpugate-token", decodeURIComponent(fragment[1]));
  history.replaceState(null, "", location.pathname);
}
if (token()) start().catch((e) => showError(e.message));
else showSignIn("");
