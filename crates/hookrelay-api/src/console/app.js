// The hookrelay console: a small single-page app over the server's own API. Every value from
// the server is put in the page as text (never as HTML): event payloads and receivers' answers
// are other people's data.
"use strict";

const REFRESH_MS = 2000;
const $ = (selector) => document.querySelector(selector);

/** Builds an element: h("td", {class: "x", "data-label": "State"}, "text", child, ...). */
function h(tag, attrs, ...children) {
  const el = document.createElement(tag);
  for (const [k, v] of Object.entries(attrs || {})) {
    if (v === undefined || v === null || v === false) continue;
    if (k.startsWith("on")) el.addEventListener(k.slice(2), v);
    else el.setAttribute(k, v === true ? "" : String(v));
  }
  for (const child of children.flat()) {
    if (child === undefined || child === null || child === false) continue;
    el.append(child instanceof Node ? child : document.createTextNode(String(child)));
  }
  return el;
}

class SignedOut extends Error {}

/** Calls the API with the session cookie and the console header (which makes the cookie count). */
async function api(method, path, body) {
  const headers = { "X-Hookrelay-Console": "1" };
  if (body !== undefined) headers["Content-Type"] = "application/json";
  const response = await fetch(path, {
    method, headers, credentials: "same-origin",
    body: body === undefined ? undefined : JSON.stringify(body),
  });
  const data = await response.json().catch(() => ({}));
  if (response.status === 401 && path !== "/console/session") throw new SignedOut();
  if (!response.ok) throw new Error(data.message || `${response.status} ${response.statusText}`);
  return data;
}

function toast(text) {
  const t = $("#toast");
  t.textContent = text;
  t.classList.add("shown");
  clearTimeout(toast.timer);
  toast.timer = setTimeout(() => t.classList.remove("shown"), 2500);
}

const stateBadge = (state) => h("span", { class: `state ${state}` }, state.replace(/_/g, " "));
const time = (iso) => (iso ? new Date(iso).toLocaleString() : "—");

function target(hook) {
  return hook.webhook_url || hook.sqs_queue_url || hook.sns_topic_arn || "";
}

/** Deliveries (green) and failures (red) per minute over the last hour, as SVG bars. */
function chart(perMinute) {
  const ns = "http://www.w3.org/2000/svg";
  const svg = document.createElementNS(ns, "svg");
  svg.setAttribute("class", "chart");
  svg.setAttribute("viewBox", "0 0 120 30");
  svg.setAttribute("preserveAspectRatio", "none");
  const minutes = perMinute || [];
  const max = Math.max(1, ...minutes.map((m) => m.delivered + m.failed));
  const delivered = minutes.reduce((n, m) => n + m.delivered, 0);
  const failed = minutes.reduce((n, m) => n + m.failed, 0);
  svg.setAttribute("role", "img");
  svg.setAttribute("aria-label", `last hour: ${delivered} delivered, ${failed} failed`);
  minutes.forEach((m, i) => {
    let y = 30;
    for (const [n, color] of [[m.delivered, "#2f9e5b"], [m.failed, "#d03b3b"]]) {
      if (!n) continue;
      const height = Math.max(1, (n / max) * 30);
      y -= height;
      const bar = document.createElementNS(ns, "rect");
      bar.setAttribute("x", i * 2);
      bar.setAttribute("y", y);
      bar.setAttribute("width", 1.6);
      bar.setAttribute("height", height);
      bar.setAttribute("fill", color);
      svg.append(bar);
    }
  });
  const title = document.createElementNS(ns, "title");
  title.textContent = `last hour: ${delivered} delivered, ${failed} failed`;
  svg.append(title);
  return svg;
}

function table(id, headings, rows, empty) {
  if (!rows.length) return h("p", { id, class: "muted" }, empty);
  return h("table", { id },
    h("thead", {}, h("tr", {}, headings.map((x) => h("th", { scope: "col" }, x)))),
    h("tbody", {}, rows));
}

function cell(label, ...content) {
  return h("td", { "data-label": label }, ...content);
}

// --- views -------------------------------------------------------------------------------------

async function hooksView() {
  const [{ hooks }, { app }] = await Promise.all([api("GET", "/v1/hooks"), api("GET", "/app")]);
  const specs = Object.fromEntries((app.event_hooks || []).map((x) => [x.id, x]));
  const rows = hooks.map((s) => h("tr", { "data-hook-id": s.id },
    cell("Hook", h("a", { href: `#/hooks/${encodeURIComponent(s.id)}` }, s.id)),
    cell("Type", s.hook_type),
    h("td", { class: "target", "data-label": "Target" }, target(specs[s.id] || {})),
    cell("State", stateBadge(s.state)),
    cell("Lag", `${s.lag.events} events`),
    cell("Last hour", chart(s.per_minute)),
    h("td", { class: "response", "data-label": "Last error" },
      s.last_error ? `${s.last_error.code}: ${s.last_error.message}` : "—"),
  ));
  return [
    h("h1", {}, "Hooks"),
    table("hooks-table", ["Hook", "Type", "Target", "State", "Lag", "Last hour", "Last error"], rows,
      "This app has no hooks yet: add one with PATCH /app (event_hooks)."),
  ];
}

function attemptRows(attempts) {
  return attempts.map((a) => h("tr", { "data-attempt-id": a.id },
    cell("Time", time(a.at)),
    cell("Outcome", stateBadge(a.outcome)),
    cell("Events", a.events.length === 1 ? `${a.events[0].event_id} (attempt ${a.events[0].attempt})`
      : `${a.events.length} events: ${a.events.slice(0, 3).map((e) => e.event_id).join(", ")}${a.events.length > 3 ? ", …" : ""}`),
    cell("Answer", a.http_status ? `HTTP ${a.http_status}` : (a.code || "—")),
    cell("Duration", `${a.duration_ms} ms`),
    h("td", { class: "response", "data-label": "Response" }, a.response || ""),
  ));
}

async function hookView(id) {
  const path = `/v1/hooks/${encodeURIComponent(id)}`;
  const [{ hook: s }, { attempts }, { dead_letters: letters }] = await Promise.all([
    api("GET", path), api("GET", `${path}/attempts?limit=50`), api("GET", `${path}/dead_letters?limit=50`),
  ]);
  const facts = [
    ["State", stateBadge(s.state)], ["Type", s.hook_type], ["Lag", `${s.lag.events} events`],
    ["In flight", s.in_flight], ["Retry backlog", s.retry_backlog], ["Dead letters", s.dead_letters],
    ["Delivered", s.delivered], ["Failed attempts", s.failed], ["Last success", time(s.last_success_at)],
    ["Rate", s.current_rate ? `${s.current_rate}/s` : "unlimited"],
  ];
  const replayOne = (eventId) => async () => {
    const r = await api("POST", `${path}/dead_letters/replay`, { event_ids: [eventId] });
    toast(`replayed ${r.replayed}`);
    refresh();
  };
  const letterRows = letters.map((d) => h("tr", { "data-event-id": d.event_id },
    cell("Event", h("a", { href: `#/events/${encodeURIComponent(d.event_id)}` }, d.event_id)),
    cell("Reason", stateBadge(d.reason)),
    cell("Attempts", d.attempts),
    h("td", { class: "response", "data-label": "Last error" }, d.last_error),
    cell("", h("button", { type: "button", "data-replay": d.event_id, onclick: replayOne(d.event_id) }, "Replay")),
  ));
  return [
    h("dl", { class: "grid", id: "hook-facts" }, facts.map(([k, v]) => h("div", {}, h("dt", {}, k),
      h("dd", k === "State" ? { id: "hook-state", "data-state": s.state } : {}, v)))),
    s.last_error ? h("p", { class: "error", id: "hook-last-error" },
      `Last error ${time(s.last_error.at)}: ${s.last_error.code}: ${s.last_error.message}`) : null,
    h("h2", {}, "Last hour"), chart(s.per_minute),
    h("h2", {}, "Recent attempts"),
    table("attempts", ["Time", "Outcome", "Events", "Answer", "Duration", "Response"], attemptRows(attempts),
      "No attempts recorded yet."),
    h("h2", {}, "Dead letters ",
      letters.length ? h("button", { type: "button", id: "replay-all", onclick: async () => {
        const r = await api("POST", `${path}/dead_letters/replay`, {});
        toast(`replayed ${r.replayed}`);
        refresh();
      } }, "Replay all") : null),
    table("dead-letters", ["Event", "Reason", "Attempts", "Last error", ""], letterRows, "No dead letters."),
  ];
}

/** The hook page's controls: drawn once, so a refresh never wipes what is being typed. */
function hookActions(id) {
  const path = `/v1/hooks/${encodeURIComponent(id)}`;
  const act = (label, elId, run) => h("button", { type: "button", id: elId, onclick: async () => {
    try { toast(await run()); refresh(); } catch (e) { handle(e); }
  } }, label);
  const since = h("input", { id: "replay-since", type: "datetime-local", required: true, "aria-label": "Replay since" });
  return h("div", { class: "actions" },
    act("Pause", "pause", async () => (await api("POST", `${path}/pause`)).hook.state),
    act("Resume", "resume", async () => (await api("POST", `${path}/resume`)).hook.state),
    act("Send a test event", "test-send", async () => {
      const r = await api("POST", `${path}/test`);
      return r.status === "ok" ? `test delivered in ${r.latency_ms} ms` : `test failed: ${r.error.code}`;
    }),
    h("form", { id: "replay-since-form", onsubmit: async (e) => {
      e.preventDefault();
      try {
        const r = await api("POST", `${path}/replay`, { since: new Date(since.value).toISOString() });
        toast(`replaying: ${r.events_after_cursor} events after the cursor`);
        refresh();
      } catch (err) { handle(err); }
    } }, h("label", { for: "replay-since" }, "Replay since"), since, h("button", { type: "submit" }, "Replay")),
  );
}

async function eventView(id) {
  const r = await api("GET", `/v1/events/${encodeURIComponent(id)}`);
  const rows = r.hooks.map((x) => h("tr", { "data-hook-id": x.hook_id },
    cell("Hook", h("a", { href: `#/hooks/${encodeURIComponent(x.hook_id)}` }, x.hook_id)),
    cell("Filter", x.matched ? "takes it" : "filters it out"),
    cell("State", stateBadge(x.state)),
    cell("Attempts", x.attempts.length ? h("ol", {}, x.attempts.map((a) => h("li", {},
      `${time(a.at)} — ${a.outcome}${a.http_status ? ` (HTTP ${a.http_status})` : a.code ? ` (${a.code})` : ""}${a.response ? `: ${a.response}` : ""}`))) : "none"),
  ));
  return [
    h("p", { class: "muted" }, `${r.event.type} · created ${time(r.event.created_at)}`),
    table("event-hooks", ["Hook", "Filter", "State", "Attempts"], rows, "The app has no hooks."),
    h("h2", {}, "Payload"), h("pre", { id: "event-payload" }, JSON.stringify(r.event.payload, null, 2)),
  ];
}

// --- routing and refresh -----------------------------------------------------------------------

let current = null;

function route() {
  const parts = location.hash.replace(/^#\/?/, "").split("/").map(decodeURIComponent);
  if (parts[0] === "hooks" && parts[1]) return { name: "hook", id: parts[1], title: `Hook ${parts[1]}`, load: () => hookView(parts[1]) };
  if (parts[0] === "events" && parts[1]) return { name: "event", id: parts[1], title: `Event ${parts[1]}`, load: () => eventView(parts[1]) };
  return { name: "hooks", title: "Hooks", load: hooksView };
}

function handle(error) {
  if (error instanceof SignedOut) return showSignIn();
  toast(error.message);
}

async function refresh() {
  if (!current || document.hidden) return;
  const shown = current;
  try {
    const content = await shown.load();
    if (shown !== current) return;
    $("#content").replaceChildren(...[content].flat().filter(Boolean));
  } catch (e) {
    if (shown !== current) return;
    if (e instanceof SignedOut) return showSignIn();
    $("#content").replaceChildren(h("p", { class: "error", role: "alert" }, e.message));
  }
}

async function show() {
  current = route();
  document.title = `${current.title} · hookrelay`;
  const view = $("#view");
  const heading = current.name === "hooks" ? null : h("h1", {}, current.title);
  view.replaceChildren(...[heading, current.name === "hook" ? hookActions(current.id) : null,
    h("div", { id: "content", "aria-live": "polite" }, h("p", { class: "muted" }, "Loading…"))].filter(Boolean));
  await refresh();
}

function showSignIn() {
  current = null;
  $("#nav").hidden = true;
  $("#view").hidden = true;
  $("#signin").hidden = false;
  $("#api-key").focus();
}

async function signedIn(who) {
  $("#signin").hidden = true;
  $("#nav").hidden = false;
  $("#view").hidden = false;
  $("#whoami").textContent = `app ${who.app_id} · ${who.api_key}`;
  await show();
}

$("#signin-form").addEventListener("submit", async (e) => {
  e.preventDefault();
  const secret = $("#api-secret");
  try {
    const who = await api("POST", "/console/session", { api_key: $("#api-key").value.trim(), api_secret: secret.value });
    secret.value = "";
    $("#signin-error").textContent = "";
    await signedIn(who);
  } catch (err) {
    $("#signin-error").textContent = err.message;
  }
});

$("#sign-out").addEventListener("click", async () => {
  await api("DELETE", "/console/session").catch(() => {});
  showSignIn();
});

$("#event-search").addEventListener("submit", (e) => {
  e.preventDefault();
  const id = $("#event-id").value.trim();
  if (id) location.hash = `#/events/${encodeURIComponent(id)}`;
});

window.addEventListener("hashchange", () => { if (current) show(); });
setInterval(refresh, REFRESH_MS);
api("GET", "/console/session").then(signedIn, showSignIn);
