// The Web IDE's terminals, ports and idle status (editor-assets/web-ide,
// src/terminals.ts, ports.ts, idle.ts) in a real browser: Debian's
// chromium, the real VS Code web build, the real daemon on another origin.
// WebGL is off (--disable-3d-apis), so VS Code draws terminals with its DOM
// renderer and the screen's text can be read from the page.
import { test } from "node:test";
import assert from "node:assert/strict";
import { mkdirSync, mkdtempSync, rmSync, writeFileSync } from "node:fs";
import net from "node:net";
import { tmpdir } from "node:os";
import path from "node:path";
import { launchBrowser, shot, startDaemon, staticBinary, TOKEN } from "./helpers.mjs";
import { startWebIde, openWebIde, runCommand, openFromExplorer, waitForEditor } from "./webide.helpers.mjs";
import {
  terminalText, waitForTerminal, PROMPT, newTerminal, OTHER, typeLine, WEBGL_OFF as BROWSER,
} from "./webide-terminals.helpers.mjs";

const OTHER_OS = "Alpine Linux v3.21 (Web IDE test)";

async function terminals(daemon) {
  return (await daemon.api("/api/v1/terminals")).json();
}

async function until(pred, what, timeout = 20000) {
  const deadline = Date.now() + timeout;
  let last;
  while (Date.now() < deadline) {
    last = await pred();
    if (last) return last;
    await new Promise((r) => setTimeout(r, 50));
  }
  throw new Error(`timed out waiting for ${what}`);
}

/** A TCP forwarder in front of the daemon, listening before its target is
 * known (a port URL template needs the daemon's reachable port). It keeps
 * the first request head of every connection (`heads`) and can cut every
 * connection and refuse new ones for a while (`cut()`, `resume()`), as a
 * network drop does. */
async function forwarder(target = null) {
  const fw = { target, sockets: new Set(), heads: [], refusing: false };
  const server = net.createServer((client) => {
    if (!fw.target || fw.refusing) { client.destroy(); return; }
    const upstream = net.connect(fw.target.port, fw.target.host);
    fw.sockets.add(client).add(upstream);
    let head = Buffer.alloc(0);
    client.on("data", (d) => {
      if (head === null) return;
      head = Buffer.concat([head, d]);
      const end = head.indexOf("\r\n\r\n");
      if (end >= 0) { fw.heads.push(head.subarray(0, end).toString("latin1")); head = null; }
    });
    client.pipe(upstream);
    upstream.pipe(client);
    const end = () => { client.destroy(); upstream.destroy(); fw.sockets.delete(client); fw.sockets.delete(upstream); };
    client.on("error", end).on("close", end);
    upstream.on("error", end).on("close", end);
  });
  await new Promise((resolve) => server.listen(0, "127.0.0.1", resolve));
  fw.port = server.address().port;
  fw.cut = () => { fw.refusing = true; for (const s of fw.sockets) s.destroy(); };
  fw.resume = () => { fw.refusing = false; };
  fw.close = () => new Promise((resolve) => { for (const s of fw.sockets) s.destroy(); server.close(resolve); });
  return fw;
}

/** `host:port` as the forwarder's target. */
function targetOf(addr) {
  const i = addr.lastIndexOf(":");
  return { host: addr.slice(0, i), port: Number(addr.slice(i + 1)) };
}

test("a terminal runs a command and shows its output; after a reload it is back with its output; closing its tab ends it", async () => {
  const w = await startWebIde();
  const fw = await forwarder(targetOf(w.daemon.addr));
  const browser = await launchBrowser(BROWSER);
  try {
    writeFileSync(path.join(w.daemon.workspace, "readme.txt"), "hello\n");
    const page = await browser.newPage({ viewport: { width: 1280, height: 800 } });
    await openWebIde(page, w, { url: `http://127.0.0.1:${fw.port}/` });
    await newTerminal(page);
    await waitForTerminal(page, PROMPT, "the shell's prompt");
    const [t] = await terminals(w.daemon);
    assert.ok(t && !t.exited, "the terminal runs in the workspace");
    assert.equal(t.cwd, "", "at the workspace's root");
    assert.ok(t.cols > 20 && t.rows > 5, `the terminal has the panel's size (${t.cols}x${t.rows})`);
    await typeLine(page, "echo made-by-$((6*7)) && ls");
    await waitForTerminal(page, (s) => s.includes("made-by-42") && s.includes("readme.txt"), "the command's output");
    await shot(page, "webide-terminals-1-command");

    // A resize of the panel reaches the terminal in the workspace.
    await runCommand(page, "View: Toggle Maximized Panel");
    await until(async () => (await terminals(w.daemon))[0].rows > t.rows, "the taller terminal");

    const headsBefore = fw.heads.length;
    await page.reload();
    await page.waitForSelector(".explorer-folders-view .monaco-list-row", { timeout: 60000 });
    await runCommand(page, "Terminal: Focus on Terminal View");
    await waitForTerminal(page, (s) => s.includes("made-by-42") && s.includes("readme.txt"), "the output after the reload");
    const after = await terminals(w.daemon);
    assert.equal(after.length, 1, "the reload reattached, it made no new terminal");
    assert.equal(after[0].id, t.id);
    const reattach = fw.heads.slice(headsBefore).find((h) => h.startsWith(`GET /api/v1/terminals/${t.id}/attach`));
    assert.ok(reattach && !/[?&]offset=/.test(reattach.split("\r\n")[0]), "after a reload it attaches without an offset: the daemon replays the screen");
    await typeLine(page, "echo still-$((2+3))");
    await waitForTerminal(page, (s) => s.includes("still-5"), "a command typed after the reload");
    await shot(page, "webide-terminals-2-reloaded");

    // The user closing the tab ends the terminal in the workspace.
    await runCommand(page, "Terminal: Kill the Active Terminal Instance");
    await until(async () => (await terminals(w.daemon)).length === 0, "the terminal's end in the workspace");
    assert.ok(!w.daemon.log().includes(TOKEN), "the token is not logged");
  } finally {
    await browser.close();
    await w.stop();
    await fw.close();
  }
});

test("after a network drop a terminal resumes from the last byte it showed: nothing lost, nothing repeated", async () => {
  const w = await startWebIde();
  const fw = await forwarder(targetOf(w.daemon.addr));
  const browser = await launchBrowser(BROWSER);
  try {
    writeFileSync(path.join(w.daemon.workspace, "readme.txt"), "hello\n");
    const page = await browser.newPage({ viewport: { width: 1280, height: 800 } });
    await openWebIde(page, w, { url: `http://127.0.0.1:${fw.port}/` });
    await newTerminal(page);
    await waitForTerminal(page, PROMPT, "the shell's prompt");
    await typeLine(page, "for i in 1 2 3 4 5 6; do echo tick-$i; sleep 0.3; done; echo finished-$((40+2))");
    await waitForTerminal(page, (s) => /^tick-1$/m.test(s), "the first tick");
    const [t] = await terminals(w.daemon);
    const headsBefore = fw.heads.length;
    fw.cut();
    // The program goes on printing while the browser is cut off.
    await until(async () => (await terminals(w.daemon))[0].output_offset > t.output_offset + 20, "output during the drop");
    fw.resume();
    const text = await waitForTerminal(page, (s) => s.includes("finished-42"), "the output made during the drop");
    for (let i = 1; i <= 6; i++) {
      assert.equal(text.match(new RegExp(`^tick-${i}$`, "gm"))?.length, 1, `tick-${i} is shown exactly once:\n${text}`);
    }
    const reattach = fw.heads.slice(headsBefore).find((h) => h.startsWith(`GET /api/v1/terminals/${t.id}/attach`));
    assert.ok(reattach, "the terminal attached again");
    const offset = Number(/[?&]offset=(\d+)/.exec(reattach)?.[1]);
    assert.ok(offset > 0 && offset <= (await terminals(w.daemon))[0].output_offset, `it resumed from an offset (${reattach.split("\r\n")[0].replace(/access_token=[^&\s]+/, "access_token=...")})`);
  } finally {
    await browser.close();
    await w.stop();
    await fw.close();
  }
});

test("a terminal in the second container shows that container's OS", async () => {
  const dir = mkdtempSync(path.join(tmpdir(), "ws-webide-containers-"));
  const osRelease = path.join(dir, "os-release");
  writeFileSync(osRelease, `NAME="Alpine Linux"\nID=alpine\nPRETTY_NAME="${OTHER_OS}"\n`);
  // The second container: a static daemon in its own mount namespace with another /etc/os-release.
  const second = await startDaemon([], { GL_WORKSPACE_CONTAINER: "db", OS_RELEASE: osRelease }, {
    bin: staticBinary,
    launcher: ["unshare", "--mount", "--propagation", "private", "sh", "-c",
      'mount --bind "$OS_RELEASE" /etc/os-release && exec "$@"', "sh"],
  });
  const config = path.join(dir, "workspaced.toml");
  // A third container whose daemon does not answer (nothing listens on the discard port).
  writeFileSync(config, `[containers]\ndb = "http://${second.addr}"\ngone = "http://127.0.0.1:9"\n`);
  const w = await startWebIde({ daemonArgs: ["--config", config] });
  const browser = await launchBrowser(BROWSER);
  try {
    writeFileSync(path.join(w.daemon.workspace, "readme.txt"), "hello\n");
    const page = await browser.newPage({ viewport: { width: 1280, height: 800 } });
    await openWebIde(page, w);
    await newTerminal(page, OTHER);
    // The picker lists the containers with their OS.
    const db = page.locator(".quick-input-list .monaco-list-row").filter({ hasText: OTHER_OS });
    await db.waitFor();
    assert.match(await db.innerText(), /^db/);
    await db.click();
    await waitForTerminal(page, PROMPT, "the prompt in the second container");
    await typeLine(page, "grep PRETTY_NAME /etc/os-release");
    await waitForTerminal(page, (s) => s.includes(`PRETTY_NAME="${OTHER_OS}"`), "the second container's OS");
    await page.locator(".tabs-list .monaco-list-row, .terminal-tab", { hasText: "db:" }).first().waitFor().catch(() => {});
    await shot(page, "webide-terminals-3-second-container");
    const list = await terminals(w.daemon);
    assert.equal(list.length, 1);
    assert.equal(list[0].container, "db");
    assert.ok(list[0].id.startsWith("db."), list[0].id);

    // A container that does not answer: the picker says so, and a terminal there says why it has no shell.
    await newTerminal(page, OTHER);
    const gone = page.locator(".quick-input-list .monaco-list-row").filter({ hasText: /^gone/ });
    await gone.waitFor();
    assert.match(await gone.innerText(), /unreachable/);
    await gone.click();
    await waitForTerminal(page, (s) => /could not start a terminal: .*gone/.test(s.replace(/\n/g, "")), "why the terminal could not start");
    assert.equal((await terminals(w.daemon)).length, 1, "no terminal was made");
  } finally {
    await browser.close();
    await w.stop();
    await second.stop();
    rmSync(dir, { recursive: true, force: true });
  }
});

/** The ports view's row of `port`, brought into view with the keyboard as a
 * user would (this shared machine listens on many ports, and the view draws
 * only the rows that fit). */
async function portRow(page, port) {
  const view = page.locator(".pane", { has: page.locator(".pane-header", { hasText: /^Ports/i }) }).locator(".monaco-list").first();
  const row = view.locator(".monaco-list-row").filter({ has: page.locator(".label-name", { hasText: new RegExp(`^${port}$`) }) });
  await view.locator(".monaco-list-row").first().waitFor({ timeout: 20000 });
  if (await row.count()) return row.first();
  await view.locator(".monaco-list-row").first().click();
  await page.keyboard.press("Home");
  for (let i = 0; i < 500; i++) {
    await page.evaluate(() => new Promise((r) => requestAnimationFrame(() => r())));
    if (await row.count()) return row.first();
    await page.keyboard.press("ArrowDown");
  }
  await shot(page, "webide-terminals-failed");
  throw new Error(`the ports view never showed port ${port}`);
}

test("a server started in a terminal raises the port notification, and Open in Browser reaches it through the proxy", async () => {
  // Ports are host-routed (`<port>-ws.localhost`, which Chromium resolves to
  // loopback), so opening one takes the ticket flow.
  const fw = await forwarder();
  const w = await startWebIde({
    daemonArgs: ["--port-url-template", `http://\${PORT}-ws.localhost:${fw.port}/`, "--max-visibility", "internal"],
  });
  fw.target = targetOf(w.daemon.addr);
  const browser = await launchBrowser(BROWSER);
  try {
    const site = path.join(w.daemon.workspace, "site");
    mkdirSync(site);
    const marker = `served from the workspace ${Date.now()}`;
    writeFileSync(path.join(site, "index.html"), `<!doctype html><title>site</title><p id="m">${marker}</p>\n`);
    const page = await browser.newPage({ viewport: { width: 1280, height: 800 } });
    await openWebIde(page, w);
    await newTerminal(page);
    await waitForTerminal(page, PROMPT, "the shell's prompt");
    await typeLine(page, "python3 -m http.server 0 --bind 127.0.0.1 --directory site");
    await waitForTerminal(page, (s) => /Serving HTTP on 127\.0\.0\.1 port \d+/.test(s), "the server's start");
    const served = Number(/port (\d+)/.exec(await terminalText(page))[1]);

    const note = page.locator(".notifications-toasts .notification-toast", { hasText: `Port ${served}` });
    await note.waitFor({ timeout: 20000 });
    assert.match(await note.innerText(), /serving HTTP/);
    await shot(page, "webide-terminals-4-port-notification");

    // The ports view (in the explorer) lists it with its process and visibility.
    const header = page.locator(".pane-header", { hasText: /^Ports/i }).first();
    if ((await header.getAttribute("aria-expanded")) !== "true") await header.click();
    const row = await portRow(page, served);
    assert.match(await row.innerText(), /python3.*private/);

    const popup = page.context().waitForEvent("page", { timeout: 20000 });
    await note.getByRole("button", { name: "Open in Browser" }).click();
    // VS Code asks before it opens a site outside the workbench's own.
    const confirm = page.locator(".monaco-dialog-box .monaco-button", { hasText: /^Open$/ });
    await Promise.race([confirm.click({ timeout: 5000 }).catch(() => {}), popup]);
    const opened = await popup;
    await opened.waitForLoadState();
    await opened.locator("#m").waitFor({ timeout: 20000 });
    assert.equal(await opened.locator("#m").innerText(), marker, "the new tab shows the server's page");
    const url = new URL(opened.url());
    assert.equal(url.host, `${served}-ws.localhost:${fw.port}`, "through the daemon's host-routed proxy");
    assert.equal(url.searchParams.get("workspaced_ticket"), null, "the ticket is gone from the address bar");
    await shot(opened, "webide-terminals-5-opened-port");

    // Visibility, from the row's action: above max_visibility the daemon's refusal is shown and nothing changes.
    const setVisibility = async (level) => {
      // The view redraws its rows when the machine's ports change (other
      // programs come and go): a row found before a redraw is gone, so it
      // is found again.
      for (let attempt = 1; ; attempt++) {
        const r = await portRow(page, served);
        try {
          await r.hover({ timeout: 5000 });
          await r.locator(".action-label[aria-label^='Change Port Visibility']").click({ timeout: 5000 });
          break;
        } catch (e) {
          if (attempt === 6) throw e;
        }
      }
      const pick = page.locator(".quick-input-list .monaco-list-row").filter({ has: page.getByText(level, { exact: true }) });
      await pick.first().click();
    };
    const visibility = async () => (await (await w.daemon.api("/api/v1/ports")).json()).find((p) => p.port === served).visibility;
    await setVisibility("public");
    await page.locator(".notifications-toasts .notification-toast", { hasText: "does not allow ports to be public" }).waitFor({ timeout: 20000 });
    assert.equal(await visibility(), "private");
    await setVisibility("internal");
    await until(async () => (await visibility()) === "internal", "the port's new visibility");
    await until(async () => /internal/.test(await (await portRow(page, served)).innerText()), "the row's new visibility");
    await shot(page, "webide-terminals-6-visibility");
  } finally {
    await browser.close();
    await w.stop();
    await fw.close();
  }
});

test("editor activity is reported, the idle warning's Keep working resets the countdown, and the status bar shows the workspace's health", async () => {
  const w = await startWebIde({ daemonArgs: ["--idle-timeout", "16s", "--warn-before", "12s"] });
  const browser = await launchBrowser(BROWSER);
  try {
    writeFileSync(path.join(w.daemon.workspace, "notes.txt"), "one\n");
    const idle = async () => (await (await w.daemon.api("/api/v1/status")).json()).idle;
    const page = await browser.newPage({ viewport: { width: 1280, height: 800 } });
    await openWebIde(page, w);

    // The status bar: the workspace's name, its health, the time left.
    const status = await (await w.daemon.api("/api/v1/status")).json();
    const word = status.components.every((c) => c.state === "ready") ? "healthy" : "degraded";
    const item = page.locator(".statusbar-item", { hasText: "browser-test" });
    await item.first().waitFor({ timeout: 20000 });
    await until(async () => /browser-test · (healthy|degraded) · \d+s left/.test(await item.first().innerText()), "the health and the time left");
    assert.match(await item.first().innerText(), new RegExp(`browser-test · ${word} · \\d+s left`));

    // Typing in the editor is activity: a heartbeat reaches the daemon.
    await openFromExplorer(page, "notes.txt");
    await waitForEditor(page, (t) => t.includes("one"), "the file");
    const clickedEditor = Date.now();
    await page.locator(".editor-group-container.active .monaco-editor .view-lines").first().click();
    // The click moved the cursor, which is activity too: let its report go first.
    await until(async () => Date.parse((await idle()).sources.heartbeat ?? 0) >= clickedEditor, "a heartbeat after the click");
    const beforeTyping = Date.now();
    await page.keyboard.type("typed ");
    await waitForEditor(page, (t) => t.includes("typed"), "the typed text");
    await until(async () => Date.parse((await idle()).sources.heartbeat ?? 0) >= beforeTyping, "a heartbeat after typing");

    // Left alone, the workspace warns before it stops.
    const warning = page.locator(".notifications-toasts .notification-toast", { hasText: "will stop" });
    await warning.waitFor({ timeout: 30000 });
    const warned = await idle();
    assert.ok(warned.stop_at, "a stop is planned");
    await shot(page, "webide-terminals-7-idle-warning");
    const clicked = Date.now();
    await warning.getByRole("button", { name: "Keep working" }).click();
    const kept = await until(async () => {
      const i = await idle();
      return Date.parse(i.sources.heartbeat ?? 0) >= clicked ? i : null;
    }, "the heartbeat of Keep working");
    assert.ok(Date.parse(kept.stop_at) > Date.parse(warned.stop_at), `the stop moved later (${warned.stop_at} -> ${kept.stop_at})`);
    assert.equal(kept.state, "active");
    await shot(page, "webide-terminals-8-kept");
  } finally {
    await browser.close();
    await w.stop();
  }
});
