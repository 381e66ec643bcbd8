// The web console: terminal tabs that survive a reload, ports with their
// visibility, components and the idle countdown. It uses only the public API
// (PROTOCOL.md); the session cookie carries the credential.
"use strict";

const api = async (path, opts = {}) => {
  const r = await fetch(path, { credentials: "same-origin", ...opts, headers: { "Content-Type": "application/json", ...(opts.headers || {}) } });
  // The session ended (signed out elsewhere, or unused for session_ttl):
  // reloading shows the sign-in page.
  if (r.status === 401) location.replace(location.pathname);
  return r;
};
const wsUrl = (path) => `${location.protocol === "https:" ? "wss" : "ws"}://${location.host}${path}`;
const $ = (id) => document.getElementById(id);

const tabs = new Map(); // id -> { info, term, fit, ws, el, tab }
let active = localStorage.getItem("workspaced.active") || null;
let ownContainer = null; // this daemon's container; its terminals have `container: null`

function banner(text, bad = false) {
  const b = $("banner");
  b.textContent = text;
  b.className = bad ? "banner bad" : "banner";
  b.hidden = !text;
}

function openTab(info) {
  if (tabs.has(info.id)) return tabs.get(info.id);
  const el = document.createElement("div");
  el.className = "screen";
  el.dataset.id = info.id;
  el.hidden = true;
  $("screens").appendChild(el);
  const term = new Terminal({ cursorBlink: true, fontFamily: "monospace", fontSize: 14, scrollback: 5000 });
  const fit = new FitAddon.FitAddon();
  term.loadAddon(fit);
  term.open(el);
  const tab = document.createElement("button");
  tab.className = "tab";
  tab.dataset.id = info.id;
  tab.innerHTML = `<span class="label"></span><span class="container"></span><span class="close" title="Close terminal" aria-label="Close terminal">×</span>`;
  tab.querySelector(".label").textContent = info.title;
  tab.querySelector(".container").textContent = info.container || ownContainer || "";
  tab.title = `${info.title} in container ${info.container || ownContainer || "?"}`;
  tab.addEventListener("click", (e) => {
    if (e.target.classList.contains("close")) closeTab(info.id);
    else activate(info.id);
  });
  $("tabs").insertBefore(tab, $("container-picker"));
  const t = { info, term, fit, ws: null, el, tab, exited: info.exited };
  tabs.set(info.id, t);
  term.onData((d) => send(t, new TextEncoder().encode(d)));
  term.onBinary((d) => send(t, Uint8Array.from(d, (c) => c.charCodeAt(0))));
  term.onResize(({ cols, rows }) => {
    if (t.ws && t.ws.readyState === WebSocket.OPEN) t.ws.send(JSON.stringify({ type: "resize", cols, rows }));
  });
  attach(t);
  return t;
}

function send(t, bytes) {
  if (t.ws && t.ws.readyState === WebSocket.OPEN && !t.exited) t.ws.send(bytes);
}

// Attaches without an offset: the daemon sends the current screen, then live
// output, so a reload shows exactly what was there.
function attach(t) {
  const ws = new WebSocket(wsUrl(`/api/v1/terminals/${t.info.id}/attach`));
  ws.binaryType = "arraybuffer";
  t.ws = ws;
  ws.onopen = () => {};
  ws.onmessage = (m) => {
    if (typeof m.data !== "string") {
      t.term.write(new Uint8Array(m.data));
      return;
    }
    const msg = JSON.parse(m.data);
    if (msg.type === "attached") {
      t.term.reset();
      if (t.el.hidden === false) fitTab(t);
    } else if (msg.type === "exit") {
      t.exited = true;
      t.tab.classList.add("exited");
      const why = msg.signal ? `killed by ${msg.signal}` : `exited with code ${msg.code}`;
      t.term.write(`\r\n\x1b[2m[process ${why}]\x1b[0m\r\n`);
    } else if (msg.type === "lagged") {
      // Too far behind: start again from the current screen.
      ws.onclose = null;
      ws.close();
      attach(t);
    } else if (msg.type === "shutdown") {
      banner("The workspace daemon is shutting down.", true);
    }
  };
  ws.onclose = () => {
    if (!t.exited && tabs.has(t.info.id)) setTimeout(() => tabs.has(t.info.id) && attach(t), 1000);
  };
}

function fitTab(t) {
  try { t.fit.fit(); } catch (_) { /* not visible yet */ }
  if (t.ws && t.ws.readyState === WebSocket.OPEN) {
    t.ws.send(JSON.stringify({ type: "resize", cols: t.term.cols, rows: t.term.rows }));
  }
}

function activate(id) {
  active = id;
  localStorage.setItem("workspaced.active", id);
  for (const [tid, t] of tabs) {
    const on = tid === id;
    t.el.hidden = !on;
    t.tab.classList.toggle("active", on);
    if (on) { fitTab(t); t.term.focus(); }
  }
  $("no-terminal").hidden = tabs.size > 0;
}

async function closeTab(id) {
  const t = tabs.get(id);
  if (!t) return;
  tabs.delete(id);
  t.ws && (t.ws.onclose = null, t.ws.close());
  t.term.dispose();
  t.el.remove();
  t.tab.remove();
  await api(`/api/v1/terminals/${id}`, { method: "DELETE" });
  const next = [...tabs.keys()].pop();
  if (next) activate(next); else $("no-terminal").hidden = false;
}

// The containers of the workspace, for the picker of a new terminal's
// container (shown only when there is more than one).
async function loadContainers() {
  const r = await api("/api/v1/containers");
  if (!r.ok) return;
  const list = await r.json();
  const picker = $("container-picker");
  const chosen = picker.value;
  picker.replaceChildren();
  for (const c of list) {
    if (c.self) ownContainer = c.name;
    const o = document.createElement("option");
    o.value = c.name;
    o.textContent = c.state === "ready" ? `${c.name}${c.os ? ` (${c.os})` : ""}` : `${c.name} (unreachable)`;
    o.disabled = c.state !== "ready";
    picker.appendChild(o);
  }
  if (chosen && list.some((c) => c.name === chosen && c.state === "ready")) picker.value = chosen;
  picker.hidden = list.length < 2;
  for (const t of tabs.values()) {
    if (!t.info.container) t.tab.querySelector(".container").textContent = ownContainer || "";
  }
}

async function newTerminal() {
  const body = { cols: 100, rows: 30 };
  const picked = $("container-picker").value;
  if (picked && picked !== ownContainer) body.container = picked;
  const r = await api("/api/v1/terminals", { method: "POST", body: JSON.stringify(body) });
  if (!r.ok) {
    const e = await r.json().catch(() => ({}));
    banner(`Cannot open a terminal: ${e.error ? e.error.message : r.status}`, true);
    return;
  }
  const info = await r.json();
  openTab(info);
  activate(info.id);
}

async function loadTerminals() {
  const r = await api("/api/v1/terminals");
  if (!r.ok) return;
  const list = await r.json();
  for (const info of list) openTab(info);
  if (list.length && !tabs.has(active)) active = list[list.length - 1].id;
  if (active && tabs.has(active)) activate(active);
  $("no-terminal").hidden = tabs.size > 0;
}

// Ports
async function loadPorts() {
  const r = await api("/api/v1/ports");
  const body = $("ports").querySelector("tbody");
  if (!r.ok) { $("ports").hidden = true; $("no-ports").textContent = "Port exposure is not available."; return; }
  const ports = await r.json();
  body.innerHTML = "";
  $("no-ports").hidden = ports.length > 0;
  for (const p of ports) {
    const tr = document.createElement("tr");
    tr.dataset.port = p.port;
    const proc = p.process || p.name || "";
    tr.innerHTML = `<td>${p.port}</td><td class="process"></td><td></td><td></td>`;
    tr.children[1].textContent = proc;
    tr.children[1].title = proc;
    const sel = document.createElement("select");
    sel.setAttribute("aria-label", `Visibility of port ${p.port}`);
    for (const v of ["none", "private", "internal", "public"]) {
      const o = document.createElement("option");
      o.value = v; o.textContent = v; o.selected = v === p.visibility;
      sel.appendChild(o);
    }
    sel.addEventListener("change", async () => {
      const r = await api(`/api/v1/ports/${p.port}`, { method: "PUT", body: JSON.stringify({ visibility: sel.value }) });
      if (!r.ok) {
        const e = await r.json().catch(() => ({}));
        banner(`Port ${p.port}: ${e.error ? e.error.message : r.status}`, true);
      }
      loadPorts();
    });
    tr.children[2].appendChild(sel);
    if (p.address !== null && p.visibility !== "none") {
      const a = document.createElement("a");
      a.textContent = "open";
      a.href = p.url;
      a.target = "_blank";
      a.rel = "noopener";
      a.addEventListener("click", async (e) => {
        // A host-routed private port needs a one-time ticket.
        e.preventDefault();
        const r = await api(`/api/v1/ports/${p.port}/open`, { method: "POST" });
        const target = r.ok ? (await r.json()).url : p.url;
        window.open(target, "_blank", "noopener");
      });
      tr.children[3].appendChild(a);
    }
    body.appendChild(tr);
  }
}

// Components and idle
let idle = null;
async function loadStatus() {
  const r = await api("/api/v1/status");
  if (!r.ok) return;
  const s = await r.json();
  $("ws-name").textContent = s.workspace ? s.workspace.name : "workspace";
  document.title = `${$("ws-name").textContent} · workspaced`;
  const ul = $("components");
  ul.innerHTML = "";
  for (const c of s.components || []) {
    const li = document.createElement("li");
    li.innerHTML = `<span class="name"></span><span></span>`;
    li.children[0].textContent = c.name;
    li.children[1].textContent = c.state + (c.restarts ? ` (${c.restarts} restarts)` : "");
    li.children[1].className = `state-${c.state}`;
    ul.appendChild(li);
  }
  idle = s.idle || null;
  renderIdle();
}

let warned = false;
function renderIdle() {
  const el = $("idle");
  if (!idle || !idle.stop_at) { el.textContent = ""; return; }
  const left = Math.max(0, Math.round((Date.parse(idle.stop_at) - Date.now()) / 1000));
  const m = Math.floor(left / 60), s = left % 60;
  el.textContent = idle.state === "idle" ? "idle" : `stops in ${m}:${String(s).padStart(2, "0")} if idle`;
  el.classList.toggle("warning", warned);
}
setInterval(renderIdle, 1000);

function events() {
  const ws = new WebSocket(wsUrl("/api/v1/events"));
  ws.onopen = () => { $("conn").textContent = "connected"; };
  ws.onmessage = (m) => {
    const ev = JSON.parse(m.data);
    if (ev.type.startsWith("port_")) loadPorts();
    else if (ev.type === "component_state") loadStatus();
    else if (ev.type === "idle_warning") {
      warned = true;
      banner(`This workspace will stop at ${new Date(ev.stop_at).toLocaleTimeString()} unless there is activity.`);
      loadStatus();
    } else if (ev.type === "idle") {
      banner("This workspace is idle.", true);
      loadStatus();
    } else if (ev.type === "shutdown") banner("The workspace daemon is shutting down.", true);
  };
  ws.onclose = () => {
    $("conn").textContent = "reconnecting…";
    // Shows the sign-in page if the session is what ended.
    loadStatus().catch(() => {});
    setTimeout(events, 1000);
  };
}

document.addEventListener("keydown", () => {
  if (warned) { warned = false; banner(""); api("/api/v1/activity", { method: "POST" }).then(loadStatus); }
});
$("new-terminal").addEventListener("click", newTerminal);
// Sign out: the daemon ends the session and clears the cookie; the reload
// then shows the sign-in page.
$("sign-out").addEventListener("click", async () => {
  const r = await api("/api/v1/session", { method: "DELETE" }).catch(() => null);
  if (!r || !r.ok) { banner("Signing out failed; try again.", true); return; }
  location.replace(location.pathname);
});
window.addEventListener("resize", () => { const t = tabs.get(active); if (t) fitTab(t); });

$("container-picker").addEventListener("focus", loadContainers);
loadContainers().finally(loadTerminals);
loadPorts();
loadStatus();
events();
