// Fixtures for the Web IDE's browser tests: the extension built, the VS Code
// build from its cache, the host page on its own local port (another origin
// than the daemon's, which lists it in `allowed_origins`), the real daemon,
// and helpers that drive VS Code's workbench.
import { execFileSync } from "node:child_process";
import { existsSync, rmSync } from "node:fs";
import net from "node:net";
import path from "node:path";
import { pollUntil, root, startDaemon, TOKEN } from "./helpers.mjs";
import { startHost } from "../../editor-assets/web-ide/host/serve.mjs";

export const webIde = path.join(root, "editor-assets/web-ide");

/** The VS Code build's directory (scripts/webide-dist.sh caches it by
 * version; WEBIDE_VSCODE names another, e.g. to compare builds). */
export function vscodeDist() {
  if (process.env.WEBIDE_VSCODE) return process.env.WEBIDE_VSCODE;
  return execFileSync("sh", [path.join(root, "scripts/webide-dist.sh")], { encoding: "utf8" }).trim();
}

/** Bundles the extension (scripts/test.sh has run `npm ci` there). */
export function buildExtension() {
  if (!existsSync(path.join(webIde, "node_modules/esbuild"))) {
    throw new Error(`the Web IDE's dependencies are missing: run npm ci in ${webIde} (scripts/test.sh does)`);
  }
  execFileSync("node", ["build.mjs"], { cwd: webIde, stdio: "inherit" });
}

/** WebSocket frames at the front of `buf`: [{ opcode, bytes, text }], rest. */
function takeFrames(buf) {
  const frames = [];
  for (;;) {
    if (buf.length < 2) break;
    const masked = (buf[1] & 0x80) !== 0;
    let len = buf[1] & 0x7f;
    let at = 2;
    if (len === 126) { if (buf.length < 4) break; len = buf.readUInt16BE(2); at = 4; }
    else if (len === 127) { if (buf.length < 10) break; len = Number(buf.readBigUInt64BE(2)); at = 10; }
    const mask = masked ? buf.subarray(at, at + 4) : null;
    if (masked) at += 4;
    if (buf.length < at + len) break;
    const payload = Buffer.from(buf.subarray(at, at + len));
    if (mask) for (let i = 0; i < payload.length; i++) payload[i] ^= mask[i & 3];
    const opcode = buf[0] & 0x0f;
    frames.push({ opcode, bytes: at + len, text: opcode === 1 ? payload.toString("utf8") : null, at: Date.now() });
    buf = buf.subarray(at + len);
  }
  return [frames, buf];
}

/** A TCP relay in front of the daemon. It counts the bytes the browser sends
 * (`sent`), records the request head and the frames of every sync WebSocket
 * (`syncs`: [{ head, up: [frame], down: [frame] }]), and can cut every
 * connection and refuse new ones for a while (`cut()`, `resume()`), as a
 * network drop does. */
export async function countingRelay(target) {
  const sockets = new Set();
  const relay = { sent: 0, received: 0, syncs: [], requests: [], refusing: false, target };
  const server = net.createServer((client) => {
    if (relay.refusing) { client.destroy(); return; }
    const i = relay.target.lastIndexOf(":");
    const upstream = net.connect(Number(relay.target.slice(i + 1)), relay.target.slice(0, i));
    sockets.add(client).add(upstream);
    // What the browser sends: HTTP requests one after another (their bodies
    // by Content-Length), until an upgrade; then WebSocket frames.
    let mode = "http";
    let sync = null;
    let up = Buffer.alloc(0);
    let down = Buffer.alloc(0);
    client.on("data", (d) => {
      relay.sent += d.length;
      if (mode === "opaque") return;
      up = Buffer.concat([up, d]);
      while (mode === "http") {
        const end = up.indexOf("\r\n\r\n");
        if (end < 0) return;
        const text = up.subarray(0, end).toString("latin1");
        const length = Number(/\r\ncontent-length:\s*(\d+)/i.exec(text)?.[1] ?? 0);
        if (up.length < end + 4 + length) return;
        const line = text.slice(0, text.indexOf("\r\n"));
        relay.requests.push({ line: line.replace(/access_token=[^&\s]*/, "access_token=..."), bytes: end + 4 + length, at: Date.now() });
        up = up.subarray(end + 4 + length);
        if (/^GET \/api\/v1\/sync[?\s]/.test(line)) {
          sync = { head: text, up: [], down: [] };
          relay.syncs.push(sync);
          mode = "ws";
        } else if (/\r\nupgrade:/i.test(text)) {
          mode = "opaque";
        }
      }
      if (mode === "ws") { const [f, rest] = takeFrames(up); sync.up.push(...f); up = rest; }
    });
    upstream.on("data", (d) => {
      relay.received += d.length;
      if (!sync) return;
      down = Buffer.concat([down, d]);
      const end = sync.switched ? -1 : down.indexOf("\r\n\r\n");
      if (!sync.switched) { if (end < 0) return; sync.switched = true; down = down.subarray(end + 4); }
      const [f, rest] = takeFrames(down);
      sync.down.push(...f);
      down = rest;
    });
    client.pipe(upstream);
    upstream.pipe(client);
    const end = () => { client.destroy(); upstream.destroy(); sockets.delete(client); sockets.delete(upstream); };
    client.on("error", end).on("close", end);
    upstream.on("error", end).on("close", end);
  });
  await new Promise((resolve) => server.listen(0, "127.0.0.1", resolve));
  relay.addr = `127.0.0.1:${server.address().port}`;
  relay.cut = () => { relay.refusing = true; for (const s of sockets) s.destroy(); };
  relay.resume = () => { relay.refusing = false; };
  relay.close = () => new Promise((resolve) => { for (const s of sockets) s.destroy(); server.close(resolve); });
  return relay;
}

/** The host page server and a daemon that allows its origin. `relay: true`
 * puts a counting relay between the browser and the daemon. */
export async function startWebIde({ daemonArgs = [], relay = false } = {}) {
  buildExtension();
  const host = await startHost({ port: 0, vscode: vscodeDist() });
  const origin = new URL(host.url).origin;
  const args = ["--allowed-origins", origin, ...daemonArgs];
  const daemon = await startDaemon(args);
  const counter = relay ? await countingRelay(daemon.addr) : null;
  const daemonUrl = `http://${counter ? counter.addr : daemon.addr}/`;
  const w = {
    host, daemon, origin, relay: counter, daemonUrl,
    /** Stops the daemon and starts another on the same workspace (a new
     * run: another epoch), which the relay then reaches. */
    restartDaemon: async () => {
      await w.daemon.stop();
      w.daemon = await startDaemon(args, {}, { workspace: daemon.workspace });
      counter.target = w.daemon.addr;
    },
    /** The host page's URL with the daemon and a credential in its fragment. */
    pageUrl: ({ credential = TOKEN, url = daemonUrl } = {}) => {
      const f = new URLSearchParams();
      if (url !== null) f.set("daemon", url);
      if (credential !== null) f.set("credential", credential);
      return `${host.url}#${f}`;
    },
    stop: async () => {
      await counter?.close();
      await w.daemon.stop();
      await host.close();
      rmSync(daemon.workspace, { recursive: true, force: true });
    },
  };
  return w;
}

const EXPLORER_ROW = ".explorer-folders-view .monaco-list-row";

/** Opens the Web IDE and waits for the explorer to list the workspace's root. */
export async function openWebIde(page, w, opts) {
  await page.goto(w.pageUrl(opts));
  await page.waitForSelector(EXPLORER_ROW, { timeout: 60000 });
}

/** The names the explorer shows. */
export async function explorerNames(page) {
  return page.locator(`${EXPLORER_ROW} .label-name`).allInnerTexts();
}

/** Waits until the explorer shows `name`. */
export async function waitForExplorer(page, name, timeout = 20000) {
  await page.locator(`${EXPLORER_ROW}[aria-label^="${name}"]`).first().waitFor({ timeout });
}

/** Opens `name` from the explorer (a row of the root) and waits for its editor. */
export async function openFromExplorer(page, name) {
  await page.locator(`${EXPLORER_ROW}[aria-label^="${name}"]`).first().click();
  await page.locator(`.tabs-container .tab[aria-label^="${name}"]`).first().waitFor({ timeout: 20000 });
  await page.locator(".monaco-editor .view-lines").first().waitFor();
}

/** The visible text of the active editor. */
export async function editorText(page) {
  return page.locator(".editor-group-container.active .monaco-editor .view-lines").first().innerText();
}

/** Waits until the active editor's visible text satisfies `pred`. */
export async function waitForEditor(page, pred, what, timeout = 20000) {
  const read = async () => (await editorText(page).catch(() => "")).replace(/\u00a0/g, " ");
  return pollUntil(read, pred, (text) => new Error(`the editor never showed ${what}; it shows:\n${text}`), { timeout });
}

/** Waits until `file` in the workspace satisfies `pred` (the disk as the daemon sees it). */
export async function waitForDisk(read, pred, what, timeout = 20000) {
  // A read that throws (the file is not there yet) is a miss.
  const attempt = () => { try { return { value: read() }; } catch { return {}; } };
  const got = await pollUntil(attempt, (r) => "value" in r && pred(r.value), () => new Error(`the disk never had ${what}`), { timeout, every: 20 });
  return got.value;
}

/** Runs a command of the command palette by its label. */
export async function runCommand(page, label) {
  await page.keyboard.press("F1");
  const input = page.locator(".quick-input-widget input");
  await input.waitFor();
  await input.fill(`>${label}`);
  await page.locator(`.quick-input-list .monaco-list-row[aria-label*="${label}"]`).first().waitFor();
  await page.keyboard.press("Enter");
}

/** Moves the active editor's cursor to `line` (Go to Line). */
export async function goToLine(page, line) {
  await page.locator(".editor-group-container.active .monaco-editor textarea").first().focus();
  await page.keyboard.press("Control+G");
  const input = page.locator(".quick-input-widget input");
  await input.waitFor();
  await input.fill(`:${line}`);
  await page.keyboard.press("Enter");
  await input.waitFor({ state: "hidden" });
}
