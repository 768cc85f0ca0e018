// The console's only script: sends changes to the JSON API with the session's CSRF token, and
// keeps the dashboard and host list up to date from /api/v1/events. It writes text only
// (textContent), never HTML, so nothing a host or user names itself can run as script here.
"use strict";
const csrf = document.querySelector('meta[name="csrf"]')?.content ?? "";

async function call(method, url, body) {
  const r = await fetch(url, {
    method,
    credentials: "same-origin",
    headers: { "X-CSRF-Token": csrf, "Content-Type": "application/json" },
    body: body === undefined ? undefined : JSON.stringify(body),
  });
  if (!r.ok) {
    const e = await r.json().catch(() => ({ error: r.statusText }));
    throw new Error(e.error || r.statusText);
  }
  return r.status === 204 ? null : r.json();
}

function say(el, text, bad) {
  const out = el.querySelector("output") || document.getElementById("message");
  if (out) {
    out.textContent = text;
    out.className = bad ? "bad" : "good";
  }
}

// Buttons: <button data-method="POST" data-url="..." [data-confirm="..."]>
document.addEventListener("click", async (ev) => {
  const b = ev.target.closest("button[data-url]");
  if (!b) return;
  ev.preventDefault();
  if (b.dataset.confirm && !confirm(b.dataset.confirm)) return;
  try {
    await call(b.dataset.method || "POST", b.dataset.url);
    if (b.dataset.then) location.href = b.dataset.then;
    else location.reload();
  } catch (e) {
    say(document.body, e.message, true);
  }
});

// Forms: <form data-url="..." data-method="PATCH"> send their fields as JSON.
document.addEventListener("submit", async (ev) => {
  const f = ev.target.closest("form[data-url]");
  if (!f) return;
  ev.preventDefault();
  const body = {};
  const numbers = (f.dataset.numbers || "").split(" ");
  const lists = (f.dataset.lists || "").split(" ");
  for (const [k, v] of new FormData(f)) {
    if (numbers.includes(k)) body[k] = Number(v);
    else if (lists.includes(k))
      body[k] = v.split(",").map((x) => x.trim()).filter((x) => x);
    else body[k] = v;
  }
  try {
    const got = await call(f.dataset.method || "POST", f.dataset.url, body);
    if (got && got.key) {
      say(f, "Key (shown once, store it now): " + got.key, false);
      return;
    }
    if (got && got.token) {
      say(f, (got.invite ? "Invite (shown once): " + got.invite : "Token (shown once): " + got.token), false);
      return;
    }
    location.reload();
  } catch (e) {
    say(f, e.message, true);
  }
});

// Live updates.
function hostRow(h) {
  let tr = document.querySelector(`tr[data-code="${CSS.escape(h.code)}"]`);
  const table = document.getElementById("hosts");
  if (!table) return;
  const onlineOnly = table.dataset.onlineOnly === "true";
  if (onlineOnly && !h.online) {
    tr?.remove();
    return;
  }
  if (!tr) {
    if (table.dataset.live !== "true") return;
    tr = document.createElement("tr");
    tr.dataset.code = h.code;
    for (const k of ["code", "name", "state", "address", "last_seen", "key", "version", "nat"]) {
      const td = document.createElement("td");
      td.dataset.field = k;
      tr.appendChild(td);
    }
    table.querySelector("tbody").appendChild(tr);
  }
  const set = (k, v) => {
    const td = tr.querySelector(`td[data-field="${k}"]`);
    if (td) td.textContent = v ?? "";
  };
  set("code", h.code);
  set("name", h.name);
  set("state", h.banned ? "banned" : h.online ? "online" : "offline");
  set("address", h.address);
  set("last_seen", new Date(h.last_seen * 1000).toISOString().replace(".000Z", "Z"));
  set("key", h.key.slice(0, 16) + "…");
  set("version", h.version);
  set("nat", h.nat_mapping);
  tr.className = h.online ? "online" : "offline";
}

// The live sessions table, rebuilt from the list the server sends.
function liveSessions(list) {
  const table = document.getElementById("live-sessions");
  if (!table) return;
  const actions = table.dataset.actions === "true";
  const body = table.querySelector("tbody");
  body.replaceChildren();
  for (const s of list) {
    const tr = document.createElement("tr");
    tr.dataset.session = s.id;
    const cells = [
      s.code,
      s.controller_key.slice(0, 16) + "…",
      s.controller_address,
      s.path,
      new Date(s.started * 1000).toISOString().replace(".000Z", "Z"),
      String(s.bytes),
      String(s.idle_s ?? 0),
    ];
    for (const c of cells) {
      const td = document.createElement("td");
      td.textContent = c;
      tr.appendChild(td);
    }
    if (actions) {
      const td = document.createElement("td");
      const b = document.createElement("button");
      b.textContent = "End";
      b.dataset.url = "/api/v1/sessions/" + encodeURIComponent(s.id);
      b.dataset.method = "DELETE";
      b.dataset.confirm = "End the session with " + s.code + "?";
      td.appendChild(b);
      tr.appendChild(td);
    }
    body.appendChild(tr);
  }
}

if (document.body.dataset.live === "true") {
  const es = new EventSource("/api/v1/events");
  es.addEventListener("stats", (e) => {
    const s = JSON.parse(e.data);
    for (const [k, v] of Object.entries(s)) {
      const el = document.getElementById("stat-" + k);
      if (el) el.textContent = String(v);
    }
  });
  es.addEventListener("host", (e) => hostRow(JSON.parse(e.data)));
  es.addEventListener("forgotten", (e) =>
    document.querySelector(`tr[data-code="${CSS.escape(e.data)}"]`)?.remove()
  );
  es.addEventListener("reload", () => location.reload());
  es.addEventListener("sessions", (e) => liveSessions(JSON.parse(e.data)));
}
