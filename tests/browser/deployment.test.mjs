// The daemon as the platform deploys it: nginx in front terminating TLS for
// *.workspaces.localhost with a test CA that Chromium trusts, routing
// `<port>-ws.workspaces.localhost` to that port on 127.0.0.1 (as GitLab's
// workspaces proxy does). The console works on the daemon's own host, a
// private port opens through its ticket, and a page of a public app, whose
// host is same-site with the daemon's, gets nothing with the owner's cookie.
import { test } from "node:test";
import assert from "node:assert/strict";
import { spawn, execFileSync } from "node:child_process";
import { chmodSync, existsSync, mkdirSync, mkdtempSync, rmSync, writeFileSync } from "node:fs";
import http from "node:http";
import net from "node:net";
import { tmpdir } from "node:os";
import path from "node:path";
import { startDaemon, launchBrowser, waitForScreen, shot, TOKEN } from "./helpers.mjs";

const ZONE = "workspaces.localhost";

/** A port nothing listens on now (for nginx, which is given a port, not a socket). */
function freePort() {
  return new Promise((resolve, reject) => {
    const s = net.createServer();
    s.once("error", reject);
    s.listen(0, "127.0.0.1", () => {
      const { port } = s.address();
      s.close(() => resolve(port));
    });
  });
}

/** A test CA and a certificate for *.workspaces.localhost signed by it, made with the openssl CLI. */
function makeCertificates(dir) {
  const run = (...args) => execFileSync("openssl", args, { cwd: dir, stdio: ["ignore", "ignore", "pipe"] });
  run("req", "-x509", "-newkey", "rsa:2048", "-nodes", "-keyout", "ca.key", "-out", "ca.pem", "-days", "30",
    "-subj", "/CN=workspaced test CA",
    "-addext", "basicConstraints=critical,CA:TRUE", "-addext", "keyUsage=critical,keyCertSign,cRLSign");
  run("req", "-newkey", "rsa:2048", "-nodes", "-keyout", "leaf.key", "-out", "leaf.csr", "-subj", `/CN=*.${ZONE}`);
  writeFileSync(path.join(dir, "leaf.ext"), [
    `subjectAltName=DNS:*.${ZONE}`,
    "basicConstraints=critical,CA:FALSE",
    "keyUsage=critical,digitalSignature,keyEncipherment",
    "extendedKeyUsage=serverAuth",
  ].join("\n") + "\n");
  run("x509", "-req", "-in", "leaf.csr", "-CA", "ca.pem", "-CAkey", "ca.key", "-set_serial", "0x" + Date.now().toString(16),
    "-days", "30", "-out", "leaf.pem", "-extfile", "leaf.ext");
}

/** A HOME whose NSS database trusts the CA: how Chromium on Linux learns a root. */
function trustingHome(dir, caFile) {
  const db = path.join(dir, ".pki", "nssdb");
  mkdirSync(db, { recursive: true });
  execFileSync("certutil", ["-N", "-d", `sql:${db}`, "--empty-password"]);
  execFileSync("certutil", ["-A", "-d", `sql:${db}`, "-n", "workspaced test CA", "-t", "C,,", "-i", caFile]);
  return dir;
}

/**
 * Debian's nginx on `port` in front of the daemon on `daemonPort`, its own
 * config in `dir`; resolves once it accepts connections. The host names the
 * port, as on the platform (`<port>-<workspace>.<zone>`); the workspace's
 * ingress is the daemon's port, which serves its own host form itself and
 * routes every other port's host to that port (`host_routing`), so a port's
 * visibility and tickets apply to whatever reaches it.
 */
async function startNginx(dir, pki, port, daemonPort) {
  // Workers may run as nobody (when started as root): their temp dirs must be theirs to use.
  mkdirSync(dir, { recursive: true });
  chmodSync(dir, 0o755);
  for (const t of ["body", "proxy", "fastcgi", "uwsgi", "scgi"]) {
    mkdirSync(path.join(dir, "temp", t), { recursive: true });
    chmodSync(path.join(dir, "temp", t), 0o777);
  }
  const conf = path.join(dir, "nginx.conf");
  writeFileSync(conf, `
worker_processes 1;
daemon off;
pid ${dir}/nginx.pid;
error_log ${dir}/error.log warn;
events { worker_connections 256; }
http {
  access_log off;
  client_body_temp_path ${dir}/temp/body;
  proxy_temp_path ${dir}/temp/proxy;
  fastcgi_temp_path ${dir}/temp/fastcgi;
  uwsgi_temp_path ${dir}/temp/uwsgi;
  scgi_temp_path ${dir}/temp/scgi;
  map $http_upgrade $connection_upgrade { default upgrade; '' close; }
  # A host that names no port reaches nothing.
  server {
    listen 127.0.0.1:${port} ssl default_server;
    listen [::1]:${port} ssl default_server;
    ssl_certificate ${pki}/leaf.pem;
    ssl_certificate_key ${pki}/leaf.key;
    return 421;
  }
  server {
    listen 127.0.0.1:${port} ssl;
    listen [::1]:${port} ssl;
    # The port comes from the host name, as the platform's proxy takes it.
    server_name ~^(?<port>[0-9]+)-ws\\.workspaces\\.localhost$;
    ssl_certificate ${pki}/leaf.pem;
    ssl_certificate_key ${pki}/leaf.key;
    location / {
      proxy_pass http://127.0.0.1:${daemonPort};
      proxy_http_version 1.1;
      proxy_set_header Host $http_host;
      proxy_set_header Upgrade $http_upgrade;
      proxy_set_header Connection $connection_upgrade;
      proxy_set_header X-Forwarded-Proto https;
      proxy_set_header X-Forwarded-For $remote_addr;
      proxy_buffering off;
      proxy_read_timeout 1h;
    }
  }
}
`);
  const child = spawn("/usr/sbin/nginx", ["-p", dir, "-c", conf, "-e", path.join(dir, "error.log")], {
    stdio: ["ignore", "ignore", "pipe"],
  });
  let err = "";
  child.stderr.on("data", (d) => { err += d; });
  const exited = new Promise((resolve) => child.once("exit", resolve));
  const deadline = Date.now() + 15000;
  for (;;) {
    if (child.exitCode !== null) throw new Error(`nginx exited ${child.exitCode}: ${err}`);
    const up = await new Promise((resolve) => {
      const s = net.connect(port, "127.0.0.1", () => { s.destroy(); resolve(true); });
      s.once("error", () => resolve(false));
    });
    if (up) break;
    if (Date.now() > deadline) throw new Error(`nginx did not listen on ${port}: ${err}`);
    await new Promise((r) => setTimeout(r, 50));
  }
  return {
    port,
    stop: async () => {
      if (child.exitCode === null) child.kill("SIGTERM");
      await exited;
    },
  };
}

/** A small HTTP server on 127.0.0.1 (an app of the workspace). */
function startApp(handler) {
  return new Promise((resolve) => {
    const server = http.createServer(handler);
    server.listen(0, "127.0.0.1", () => resolve({
      port: server.address().port,
      stop: () => new Promise((r) => { server.closeAllConnections(); server.close(r); }),
    }));
  });
}

// A public app's page that tries, with nothing but the browser's cookie for
// the daemon's host, what a takeover needs: a terminal, a file write, the
// sync and attach WebSockets. It records what it saw in window.attack.
const ATTACK_PAGE = `<!doctype html><html><head><meta charset="utf-8"><title>a public app</title></head>
<body><h1>A public app of another workspace</h1><pre id="out">running…</pre><script>
(async () => {
  const q = new URLSearchParams(location.search);
  const base = q.get("daemon"), terminal = q.get("terminal");
  const wsBase = base.replace(/^https:/, "wss:");
  const out = {};
  const post = (o, mode) => ({ method: "POST", credentials: "include", mode,
    headers: { "Content-Type": "text/plain" }, body: JSON.stringify(o) });
  const attempt = async (name, f) => { try { out[name] = await f(); } catch (e) { out[name] = "failed: " + e.message; } };
  await attempt("fetch_terminal", async () => (await fetch(base + "/api/v1/terminals", post({}, "cors"))).status);
  await attempt("fetch_terminal_no_cors", async () => (await fetch(base + "/api/v1/terminals", post({}, "no-cors"))).type);
  const write = (p) => ({ changes: [{ op: "write", path: p, base: null, content: "pwned" }] });
  await attempt("fetch_apply", async () => (await fetch(base + "/api/v1/sync/apply", post(write("attack-fetch.txt"), "no-cors"))).type);
  const ws = (p, onOpen) => new Promise((resolve) => {
    let opened = false;
    const s = new WebSocket(wsBase + p);
    const done = () => resolve(opened ? "open" : "refused");
    const timer = setTimeout(done, 10000);
    s.onopen = () => { opened = true; onOpen(s); setTimeout(() => { clearTimeout(timer); done(); }, 1500); };
    s.onclose = () => { if (!opened) { clearTimeout(timer); done(); } };
  });
  out.ws_sync = await ws("/api/v1/sync", (s) => s.send(JSON.stringify({ type: "apply", id: 1, ...write("attack-ws.txt") })));
  out.ws_attach = await ws("/api/v1/terminals/" + terminal + "/attach",
    (s) => s.send(new TextEncoder().encode("echo pwned > attack-terminal.txt\\n")));
  document.getElementById("out").textContent = JSON.stringify(out, null, 2);
  window.attack = out;
})();
</script></body></html>`;

test("behind a TLS proxy that routes by host: the console, a ticket, and nothing for a public app's page", async () => {
  const dir = mkdtempSync(path.join(tmpdir(), "ws-deploy-"));
  const pki = path.join(dir, "pki");
  mkdirSync(pki);
  makeCertificates(pki);
  const home = trustingHome(path.join(dir, "home"), path.join(pki, "ca.pem"));
  const edge = await freePort();
  const hostUrl = (port, p = "/") => `https://${port}-ws.${ZONE}:${edge}${p}`;
  const d = await startDaemon(["--port-url-template", `https://\${PORT}-ws.${ZONE}:${edge}/`], { RUST_LOG: "debug" });
  const ownPort = Number(d.addr.split(":").pop());
  const daemon = hostUrl(ownPort, "").replace(/\/$/, "");
  const privateApp = await startApp((req, res) => {
    res.writeHead(200, { "content-type": "text/html" });
    res.end(`<!doctype html><title>private app</title><h1>the private app at ${req.url}</h1>`);
  });
  const publicApp = await startApp((req, res) => {
    res.writeHead(200, { "content-type": "text/html" });
    res.end(ATTACK_PAGE);
  });
  let nginx = null;
  const browser = await launchBrowser({ env: { ...process.env, HOME: home } });
  try {
    nginx = await startNginx(path.join(dir, "nginx"), pki, edge, ownPort);
    const listed = async (port) => {
      const deadline = Date.now() + 5000;
      while (Date.now() < deadline) {
        const ports = await (await d.api("/api/v1/ports")).json();
        if (ports.some((p) => p.port === port)) return;
        await new Promise((r) => setTimeout(r, 50));
      }
      throw new Error(`port ${port} was never listed`);
    };
    await listed(privateApp.port);
    await listed(publicApp.port);
    const made = await d.api(`/api/v1/ports/${publicApp.port}`, { method: "PUT", body: JSON.stringify({ visibility: "public" }) });
    assert.equal(made.status, 200);

    // The console on the daemon's own host: sign-in redirect, a Secure session cookie.
    const context = await browser.newContext({ viewport: { width: 1280, height: 800 } });
    const page = await context.newPage();
    const signIn = await page.goto(`${daemon}/?access_token=${TOKEN}`);
    assert.equal(signIn.status(), 200);
    assert.equal(page.url(), `${daemon}/`, "the token left the URL");
    await page.waitForSelector("#new-terminal");
    const cookie = (await context.cookies(daemon)).find((c) => c.name === "workspaced_session");
    assert.ok(cookie, "the session cookie is set");
    assert.ok(cookie.secure && cookie.httpOnly, JSON.stringify(cookie));
    assert.notEqual(cookie.value, TOKEN);
    assert.ok(!cookie.value.includes("."), "the cookie is no JWT");
    await page.click("#new-terminal");
    await page.waitForSelector(".tab.active");
    await waitForScreen(page, (t) => /[#$]$/.test(t.trimEnd()), "the shell prompt");
    await page.keyboard.type("echo deployed-$((6*7))\n");
    await waitForScreen(page, (t) => t.includes("deployed-42"), "the echo");
    await shot(page, "deployment-1-console");
    await page.reload();
    await page.waitForSelector(".tab.active");
    await waitForScreen(page, (t) => t.includes("deployed-42"), "the terminal after the reload");
    const terminals = await (await d.api("/api/v1/terminals")).json();
    assert.equal(terminals.length, 1);
    const terminal = terminals[0].id;

    // The console's own origin may act with the cookie (the control for what follows).
    const control = await page.evaluate(async () => {
      const r = await fetch("/api/v1/sync/apply", { method: "POST", headers: { "Content-Type": "application/json" },
        body: JSON.stringify({ changes: [{ op: "write", path: "control.txt", base: null, content: "ok" }] }) });
      return r.status;
    });
    assert.equal(control, 200);
    assert.ok(existsSync(path.join(d.workspace, "control.txt")));

    // A private port opens through its one-time ticket on its own host.
    const opened = await page.evaluate(async (port) => {
      const r = await fetch(`/api/v1/ports/${port}/open`, { method: "POST" });
      return r.json();
    }, privateApp.port);
    assert.ok(opened.url.startsWith(hostUrl(privateApp.port, "/?workspaced_ticket=")), opened.url);
    const appPage = await context.newPage();
    const appResp = await appPage.goto(opened.url);
    assert.equal(appResp.status(), 200);
    assert.equal(appPage.url(), hostUrl(privateApp.port), "the ticket left the URL");
    assert.match(await appPage.innerText("h1"), /the private app at \/$/);
    await shot(appPage, "deployment-2-private-port");
    // Without the ticket's session (another browser profile) it is refused.
    const stranger = await browser.newContext();
    const refused = await (await stranger.newPage()).goto(hostUrl(privateApp.port));
    assert.equal(refused.status(), 401);
    await stranger.close();

    // A public app's page, same-site with the daemon's host, holding the
    // owner's cookie in this browser, tries a takeover and gets nothing.
    const attackPage = await context.newPage();
    await attackPage.goto(hostUrl(publicApp.port, `/?daemon=${encodeURIComponent(daemon)}&terminal=${terminal}`));
    await attackPage.waitForFunction(() => window.attack !== undefined, null, { timeout: 30000 });
    const attack = await attackPage.evaluate(() => window.attack);
    await shot(attackPage, "deployment-3-public-app-gets-nothing");
    assert.equal(attack.ws_sync, "refused", JSON.stringify(attack));
    assert.equal(attack.ws_attach, "refused", JSON.stringify(attack));
    assert.match(String(attack.fetch_terminal), /^failed/, "no CORS answer lets the page read anything");
    const after = await (await d.api("/api/v1/terminals")).json();
    assert.deepEqual(after.map((t) => t.id), [terminal], "no terminal was created");
    for (const f of ["attack-fetch.txt", "attack-ws.txt", "attack-terminal.txt"]) {
      assert.ok(!existsSync(path.join(d.workspace, f)), `${f} was written`);
    }
    // The browser did attach the cookie (a request without one would be
    // 401): the daemon refused each for its origin.
    const refusals = (route) => d.log().split("\n")
      .filter((l) => l.includes(`route=${route} `) && l.includes("answered status=403")).length;
    assert.ok(refusals("/api/v1/terminals") >= 2, d.log().slice(-4000));
    assert.ok(refusals("/api/v1/sync/apply") >= 1);
    assert.ok(refusals("/api/v1/sync") >= 1);
    assert.ok(refusals("/api/v1/terminals/{id}/attach") >= 1);

    // Sign out: the console shows the sign-in page, and the cookie is gone.
    await page.bringToFront();
    await page.click("#sign-out");
    await page.waitForSelector("input[name=access_token]");
    assert.match(await page.innerText("body"), /token/i);
    await shot(page, "deployment-4-signed-out");
    const left = (await context.cookies(daemon)).find((c) => c.name === "workspaced_session");
    assert.equal(left, undefined, "the cookie was cleared");
    const stale = await fetch(`http://${d.addr}/api/v1/terminals`, { headers: { cookie: `workspaced_session=${cookie.value}` } });
    assert.equal(stale.status, 401, "the signed-out session is over");
    assert.ok(!d.log().includes(TOKEN), "the token is not logged");
  } finally {
    await browser.close();
    await privateApp.stop();
    await publicApp.stop();
    await d.stop();
    if (nginx) await nginx.stop();
    rmSync(dir, { recursive: true, force: true });
  }
});
