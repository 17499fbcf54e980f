// Sluice console, core: the token, calls to the admin API, the router,
// the sampler that keeps the last minutes of figures in memory, and the
// SVG line charts. No framework and no build step: the broker embeds
// these files as they are.
"use strict";

const POLL_MS = 2000;
const HISTORY_MS = 5 * 60 * 1000;
const TOKEN_KEY = "sluice-admin-token";

const Console = {
  pages: {},
  // key -> [{t, ...figures}], the last HISTORY_MS of samples.
  history: new Map(),
  view: null,
  views: 0,
};

// ---- text -------------------------------------------------------------

function esc(value) {
  return String(value ?? "").replace(/[&<>"']/g, (c) =>
    ({ "&": "&amp;", "<": "&lt;", ">": "&gt;", '"': "&quot;", "'": "&#39;" })[c]);
}

function num(value) {
  if (value === null || value === undefined) return "–";
  return Number(value).toLocaleString("en-US");
}

function bytes(value) {
  const units = ["B", "KiB", "MiB", "GiB", "TiB"];
  let v = Number(value) || 0, i = 0;
  while (v >= 1024 && i < units.length - 1) { v /= 1024; i++; }
  return (i === 0 ? v : v.toFixed(1)) + " " + units[i];
}

function duration(ms) {
  if (ms === null || ms === undefined || ms < 0) return "forever";
  const s = Math.floor(ms / 1000);
  if (s < 60) return s + " s";
  if (s < 3600) return Math.floor(s / 60) + " min " + (s % 60) + " s";
  if (s < 86400) return Math.floor(s / 3600) + " h " + Math.floor((s % 3600) / 60) + " min";
  return (s / 86400).toFixed(1).replace(/\.0$/, "") + " days";
}

function time(ms) {
  return ms ? new Date(ms).toISOString().replace("T", " ").replace("Z", " UTC") : "–";
}

function rate(value) {
  return (value >= 100 ? Math.round(value) : value.toFixed(1)) + "/s";
}

function stateTag(state) {
  return `<span class="state state-${esc(state)}">${esc(state)}</span>`;
}

function link(page, name) {
  return `<a href="#/${page}/${encodeURIComponent(name)}">${esc(name)}</a>`;
}

// ---- the admin API ----------------------------------------------------

class ApiError extends Error {
  constructor(status, message) { super(message); this.status = status; }
}

function token() {
  const given = location.hash.match(/^#token=([^&/]+)/);
  if (given) {
    sessionStorage.setItem(TOKEN_KEY, decodeURIComponent(given[1]));
    history.replaceState(null, "", location.pathname + "#/overview");
  }
  return sessionStorage.getItem(TOKEN_KEY);
}

// `method path` with the token; JSON in (or FormData) and out. Throws an
// ApiError carrying the API's own `error` text.
async function api(method, path, body) {
  const headers = { Authorization: "Bearer " + (sessionStorage.getItem(TOKEN_KEY) || "") };
  let payload = body;
  if (body !== undefined && !(body instanceof FormData)) {
    headers["Content-Type"] = "application/json";
    payload = JSON.stringify(body);
  }
  let response;
  try {
    response = await fetch(path, { method, headers, body: payload, cache: "no-store" });
  } catch (failure) {
    throw new ApiError(0, `the broker did not answer ${method} ${path} (${failure.message})`);
  }
  const text = await response.text();
  let json = null;
  try { json = text ? JSON.parse(text) : null; } catch (_) { json = null; }
  if (!response.ok) {
    if (response.status === 401) sessionStorage.removeItem(TOKEN_KEY);
    const message = (json && json.error) || `${method} ${path}: HTTP ${response.status} ${text.slice(0, 200)}`;
    throw new ApiError(response.status, message);
  }
  return json;
}

// ---- messages on the page ---------------------------------------------

function banner(message, ok) {
  const box = document.getElementById("banner");
  box.textContent = message;
  box.className = ok ? "banner ok" : "banner";
  box.hidden = !message;
  clearTimeout(banner.timer);
  if (ok) banner.timer = setTimeout(() => { box.hidden = true; }, 4000);
}

function failed(failure) {
  if (failure instanceof ApiError && failure.status === 401) return login(failure.message);
  banner(failure && failure.message ? failure.message : String(failure));
}

window.addEventListener("error", (event) => banner("console error: " + event.message));
// Counted for the browser test: the page must run within its own policy.
Console.violations = 0;
document.addEventListener("securitypolicyviolation", (event) => {
  Console.violations++;
  banner(`blocked by the page's security policy: ${event.violatedDirective} ${event.blockedURI}`);
});
window.addEventListener("unhandledrejection", (event) => failed(event.reason));

// `fn` on `event` of every element under `root` matching `selector`; a
// failure goes to the banner, the element is disabled while it runs.
function on(root, selector, event, fn) {
  root.querySelectorAll(selector).forEach((element) => {
    element.addEventListener(event, async (e) => {
      if (event === "submit") e.preventDefault();
      const button = event === "submit" ? element.querySelector("button[type=submit]") : element;
      if (button) button.disabled = true;
      try {
        await fn(element, e);
      } catch (failure) {
        failed(failure);
      } finally {
        if (button) button.disabled = false;
      }
    });
  });
}

// `k=v` lines (blank lines and `#` comments skipped) as [[k, v]].
function pairs(text) {
  return text.split("\n").map((l) => l.trim()).filter((l) => l && !l.startsWith("#")).map((line) => {
    const at = line.indexOf("=");
    if (at < 1) throw new Error(`${JSON.stringify(line)} is not key=value`);
    return [line.slice(0, at).trim(), line.slice(at + 1).trim()];
  });
}

// ---- history and charts -----------------------------------------------

function remember(key, sample) {
  const now = Date.now();
  const samples = Console.history.get(key) || [];
  samples.push({ t: now, ...sample });
  while (samples.length && samples[0].t < now - HISTORY_MS) samples.shift();
  Console.history.set(key, samples);
}

function series(key, field) {
  return (Console.history.get(key) || []).map((s) => [s.t, s[field]]);
}

// Per-second rate of a running total.
function rates(key, field) {
  const samples = Console.history.get(key) || [];
  const points = [];
  for (let i = 1; i < samples.length; i++) {
    const dt = samples[i].t - samples[i - 1].t;
    const dv = samples[i][field] - samples[i - 1][field];
    if (dt > 0 && dv >= 0) points.push([samples[i].t, (dv * 1000) / dt]);
  }
  return points;
}

// A round top for an axis reaching `max`: 1, 2, 2.5 or 5 times a power of
// ten, or (for bytes, `unit` 1024) times a power of 1024.
function ceiling(max, unit) {
  if (max <= 0) return 1;
  if (unit === 1024 && max >= 1024) {
    const scale = Math.pow(1024, Math.floor(Math.log(max) / Math.log(1024)));
    return ceiling(max / scale) * scale;
  }
  const step = Math.pow(10, Math.floor(Math.log10(max)));
  for (const m of [1, 2, 2.5, 5, 10]) if (m * step >= max) return m * step;
  return 10 * step;
}

// A line chart of the last HISTORY_MS: lines = [{name, points: [[t, v]]}].
function chart(title, lines, format, id, unit) {
  const W = 600, H = 170, L = 74, R = 10, T = 8, B = 20;
  const now = Date.now(), start = now - HISTORY_MS;
  const max = ceiling(Math.max(0, ...lines.flatMap((l) => l.points.map((p) => p[1]))), unit);
  const x = (t) => L + ((t - start) / HISTORY_MS) * (W - L - R);
  const y = (v) => T + (1 - v / max) * (H - T - B);
  let svg = "";
  for (const v of [0, max / 2, max]) {
    svg += `<line class="axis" x1="${L}" x2="${W - R}" y1="${y(v)}" y2="${y(v)}"/>`;
    svg += `<text x="${L - 6}" y="${y(v) + 3}" text-anchor="end">${esc(format(v))}</text>`;
  }
  for (const [t, label] of [[start, "−5 min"], [start + HISTORY_MS / 2, "−2.5 min"], [now, "now"]]) {
    svg += `<text x="${x(t)}" y="${H - 4}" text-anchor="middle">${label}</text>`;
  }
  lines.forEach((line, i) => {
    const points = line.points.filter((p) => p[0] >= start).map((p) => `${x(p[0]).toFixed(1)},${y(p[1]).toFixed(1)}`);
    if (points.length) svg += `<polyline class="c${i % 6}" points="${points.join(" ")}"/>`;
  });
  const legend = lines.map((l, i) => `<span><span class="swatch c${i % 6}"></span>${esc(l.name)}</span>`).join("");
  const empty = lines.every((l) => l.points.length < 2) ? `<span class="muted">collecting samples…</span>` : "";
  return `<div class="chart" data-chart="${esc(id || title)}"><h3>${esc(title)}</h3>` +
    `<svg viewBox="0 0 ${W} ${H}" role="img" aria-label="${esc(title)}">${svg}</svg>` +
    `<div class="legend">${legend}${empty}</div></div>`;
}

// ---- the sampler: every POLL_MS, whatever the page ---------------------

async function sample() {
  const [overview, groups, processors] = await Promise.all([
    api("GET", "/v1/overview"), api("GET", "/v1/groups"), api("GET", "/v1/processors"),
  ]);
  remember("overview", overview);
  for (const g of groups.groups) remember("group:" + g.group, { lag: g.lag });
  for (const p of processors.processors) {
    remember("processor:" + p.name, {
      records_in: p.records_in, records_out: p.records_out, lag: p.lag, errors: p.errors,
    });
  }
  document.getElementById("health").textContent =
    `v${overview.version} · up ${duration(overview.uptime_ms)} · ${overview.connections} connections`;
  return { overview, groups, processors };
}

// One sample and the current page's refresh. The timer's tick is skipped
// while the last one is still out (a slow broker gets no pile of
// requests); a new page's first tick (`fresh`) waits for it instead.
async function tick(fresh) {
  if (tick.running) {
    if (!fresh) return;
    await tick.running.catch(() => {});
  }
  const view = Console.view;
  if (!view || !sessionStorage.getItem(TOKEN_KEY)) return;
  tick.running = (async () => {
    const sampled = await sample();
    if (view === Console.view && view.refresh) await view.refresh(sampled);
  })();
  try {
    await tick.running;
  } catch (failure) {
    if (view === Console.view) failed(failure);
  } finally {
    tick.running = null;
  }
}

// ---- router -----------------------------------------------------------

function login(message) {
  Console.view = null;
  const main = document.getElementById("main");
  main.innerHTML = `<div class="login panel"><h1>Admin token</h1>
    <p>The console reads the broker through its admin API, which needs the broker's token.
    <code>sluice console</code> prints a link that carries it; or paste the output of
    <code>sluice processor token</code> (the file <code>&lt;data-dir&gt;/admin.token</code>).
    It is kept in this tab only.</p>
    ${message ? `<p class="error-box">${esc(message)}</p>` : ""}
    <form class="inline" id="login"><label>Token <input id="token-input" type="password" autocomplete="off" required></label>
    <button type="submit">Open</button></form></div>`;
  on(main, "#login", "submit", async () => {
    sessionStorage.setItem(TOKEN_KEY, document.getElementById("token-input").value.trim());
    await api("GET", "/v1/overview");
    route();
  });
}

async function route() {
  if (!token()) return login();
  const [page = "overview", ...rest] = location.hash.replace(/^#\/?/, "").split("/");
  const name = rest.length ? decodeURIComponent(rest.join("/")) : undefined;
  const render = Console.pages[page + (name === undefined ? "" : "/")];
  document.querySelectorAll("[data-nav]").forEach((a) =>
    a.classList.toggle("active", a.dataset.nav === page));
  const main = document.getElementById("main");
  const view = { page, name, id: ++Console.views, refresh: null };
  Console.view = view;
  banner("");
  if (!render) {
    main.innerHTML = `<div class="error-box">No page ${esc(location.hash)}. <a href="#/overview">Overview</a></div>`;
    return;
  }
  main.innerHTML = `<p class="muted">Loading…</p>`;
  try {
    await render(main, view, name);
    if (view === Console.view) await tick(true);
  } catch (failure) {
    if (failure instanceof ApiError && failure.status === 401) return login(failure.message);
    if (view === Console.view) {
      main.innerHTML = `<div class="error-box" id="page-error">${esc(failure.message)}</div>`;
    }
  }
}

window.addEventListener("hashchange", route);
window.addEventListener("DOMContentLoaded", () => {
  document.getElementById("logout").addEventListener("click", () => {
    sessionStorage.removeItem(TOKEN_KEY);
    login();
  });
  route();
  setInterval(() => tick(false), POLL_MS);
});
