// The Web IDE's page load in a browser nothing inspects: time to the
// explorer and to the first terminal prompt, as a developer's browser sees
// them. The Playwright benches (webide_terminal.mjs, webide_ab.mjs) enable
// DevTools' Network and Runtime domains on the page, and with them Chromium
// records where each request and console message came from, which makes V8
// parse the 19 MB main script again for its line numbers: 0.5 to 1 s that
// no developer's browser spends (docs/benchmarks.md, "Web IDE").
//
// Here Chromium is started with --remote-debugging-pipe and given only
// input events (Input.dispatchKeyEvent, Input.insertText,
// Input.dispatchMouseEvent), after the explorer shows, for the command
// palette's "Workspace: New Terminal"; no domain is enabled. The page says
// what it shows by beacons, from a script that a proxy in front of the host
// page adds to the page. Each run starts Chromium three times on one new
// profile: cold (empty caches), warm (the HTTP cache filled) and hot (V8's
// code cache read back); after the hot load, the page is reloaded with the
// terminal live ("reload": its screen back in VS Code's panel).
//
//   WORKSPACED_BUILD_PROFILE=release node bench/webide_plain.mjs [RUNS]
//
// bench/webide-terminal.sh runs it, and bench/webide.sh with CHECKOUT=1
// (the 30,000-file checkout). Another commit's Web IDE:
// WEBIDE_HOST=<its editor-assets/web-ide, extension built>
// WEBIDE_VSCODE=<its VS Code build>.
import { spawn } from "node:child_process";
import { mkdtempSync, rmSync, writeFileSync } from "node:fs";
import http from "node:http";
import { tmpdir } from "node:os";
import path from "node:path";
import { pathToFileURL } from "node:url";
import { CHROMIUM_ARGS, startDaemon, TOKEN } from "../tests/browser/helpers.mjs";
import { WEBGL_OFF } from "../tests/browser/webide-terminals.helpers.mjs";
import { buildExtension, vscodeDist, webIde } from "../tests/browser/webide.helpers.mjs";
import { checkout } from "./webide_checkout.mjs";

const runs = Number(process.argv[2] ?? 5);
const LOADS = ["cold", "warm", "hot"];
const NEW_TERMINAL = "Workspace: New Terminal";
// After a reload VS Code keeps the terminal panel closed until asked.
const FOCUS_TERMINAL = "Terminal: Focus on Terminal View";
const COMMANDS = [NEW_TERMINAL, FOCUS_TERMINAL];

// What the page reports: the explorer's first row, the palette open, the
// command's row listed, the prompt in the terminal (ms since navigation).
const probe = (report) => `<script>
(() => {
  const send = (what, extra) => navigator.sendBeacon(${JSON.stringify(report)} + what, [Math.round(performance.now()), ...(extra ?? [])].join(","));
  let at = null;
  const visible = (sel) => [...document.querySelectorAll(sel)].find((e) => e.offsetParent !== null);
  const steps = [
    ["explorer", () => visible(".explorer-folders-view .monaco-list-row")],
    ["palette", () => { const i = visible(".quick-input-widget input"); return i && document.activeElement === i; }],
    // A command's own row (another command's label may start the same), and where it is, to click.
    ...${JSON.stringify(COMMANDS)}.map((command) => [\`row:\${command}\`, () => {
      const label = [...document.querySelectorAll(".quick-input-list .monaco-list-row .label-name")].find((e) => e.textContent === command);
      const r = label?.closest(".monaco-list-row")?.getBoundingClientRect();
      if (r) at = [Math.round(r.x + r.width / 2), Math.round(r.y + r.height / 2)];
      return r;
    }]),
    ["prompt", () => { const r = visible(".terminal.xterm .xterm-rows"); return r && /[#$] ?$/.test(r.innerText.replace(/\\u00a0/g, " ").trimEnd()); }],
  ];
  // Each reported once, when it first holds.
  const left = new Set(steps.map(([name]) => name));
  const timer = setInterval(() => {
    for (const [name, holds] of steps) {
      if (left.has(name) && holds()) {
        left.delete(name);
        send(encodeURIComponent(name), name.startsWith("row:") ? at : undefined);
      }
    }
    if (!left.has("prompt")) clearInterval(timer);
  }, 10);
})();
</script>`;

const hostDir = process.env.WEBIDE_HOST ?? webIde;
if (hostDir === webIde) buildExtension();
const { startHost } = await import(pathToFileURL(path.join(hostDir, "host/serve.mjs")).href);
const host = await startHost({ port: 0, vscode: vscodeDist() });
const hostUrl = new URL(host.url);

// Beacons: each awaited by name.
const waiting = new Map();
const report = http.createServer((req, res) => {
  let body = "";
  req.on("data", (d) => (body += d));
  req.on("end", () => {
    res.writeHead(204, { "Access-Control-Allow-Origin": "*" }).end();
    const name = decodeURIComponent(req.url.slice(1));
    waiting.get(name)?.(body.split(",").map(Number));
    waiting.delete(name);
  });
});
await new Promise((r) => report.listen(0, "127.0.0.1", r));
const reportUrl = `http://127.0.0.1:${report.address().port}/`;
const beacon = (name, timeout = 60000) => new Promise((resolve, reject) => {
  const timer = setTimeout(() => reject(new Error(`the page never reported "${name}"`)), timeout);
  waiting.set(name, (v) => { clearTimeout(timer); resolve(v); });
});

// The host page with the probe added; everything else passed through.
const proxy = http.createServer((req, res) => {
  const up = http.request({ host: hostUrl.hostname, port: hostUrl.port, path: req.url, method: req.method, headers: req.headers }, (u) => {
    const page = req.url === "/" || req.url === "/index.html";
    if (!page || u.statusCode !== 200) {
      res.writeHead(u.statusCode, u.headers);
      u.pipe(res);
      return;
    }
    let text = "";
    u.setEncoding("utf8");
    u.on("data", (d) => (text += d));
    u.on("end", () => {
      const headers = { ...u.headers };
      delete headers["content-length"];
      delete headers.etag;
      res.writeHead(200, headers).end(text.replace("</body>", `${probe(reportUrl)}</body>`));
    });
  });
  req.pipe(up);
});
await new Promise((r) => proxy.listen(0, "127.0.0.1", r));
const origin = `http://127.0.0.1:${proxy.address().port}`;
const daemon = await startDaemon(["--allowed-origins", origin]);
// CHECKOUT=1: the 30,000-file checkout of bench/webide.sh, else one file.
if (process.env.CHECKOUT) checkout(daemon.workspace);
else writeFileSync(path.join(daemon.workspace, "readme.txt"), "hello\n");
const pageUrl = `${origin}/#${new URLSearchParams({ daemon: `http://${daemon.addr}/`, credential: TOKEN })}`;

/** Chromium on `profile` at the page, with a DevTools pipe no domain is enabled on. */
function chromium(profile) {
  const child = spawn("/usr/bin/chromium", [
    ...CHROMIUM_ARGS, ...WEBGL_OFF.args, "--window-size=1280,800", "--remote-debugging-pipe", `--user-data-dir=${profile}`, pageUrl,
  ], { stdio: ["ignore", "ignore", "ignore", "pipe", "pipe"] });
  let id = 0;
  let buf = "";
  const pending = new Map();
  child.stdio[4].on("data", (d) => {
    buf += d;
    for (let end; (end = buf.indexOf("\0")) >= 0; buf = buf.slice(end + 1)) {
      const msg = JSON.parse(buf.slice(0, end));
      if (msg.id === undefined || !pending.has(msg.id)) continue;
      const { resolve, reject, method } = pending.get(msg.id);
      pending.delete(msg.id);
      if (msg.error) reject(new Error(`${method}: ${msg.error.message}`));
      else resolve(msg.result);
    }
  });
  const send = (method, params = {}, sessionId) => new Promise((resolve, reject) => {
    const msg = { id: ++id, method, params, ...(sessionId ? { sessionId } : {}) };
    pending.set(msg.id, { resolve, reject, method });
    child.stdio[3].write(`${JSON.stringify(msg)}\0`);
  });
  const close = () => new Promise((r) => { child.once("exit", r); child.kill("SIGKILL"); });
  return { send, close };
}

/** Runs `label` from the command palette (F1, its text, a click on its own
 * row); resolves to when the page listed the row. */
async function command(send, session, label) {
  const palette = beacon("palette");
  await key(send, session, "F1", "F1", 112);
  await palette;
  const row = beacon(`row:${label}`);
  await send("Input.insertText", { text: `>${label}` }, session);
  const [t, x, y] = await row;
  for (const type of ["mousePressed", "mouseReleased"]) {
    await send("Input.dispatchMouseEvent", { type, x, y, button: "left", clickCount: 1 }, session);
  }
  return t;
}

async function key(send, session, key, code, keyCode) {
  const base = { key, code, windowsVirtualKeyCode: keyCode, nativeVirtualKeyCode: keyCode };
  await send("Input.dispatchKeyEvent", { type: "keyDown", ...base }, session);
  await send("Input.dispatchKeyEvent", { type: "keyUp", ...base }, session);
}

const times = Object.fromEntries(LOADS.map((l) => [l, { explorer: [], prompt: [], palette: [], terminal: [] }]));
times.reload = { explorer: [], prompt: [] };
try {
  for (let i = 1; i <= runs; i++) {
    const profile = mkdtempSync(path.join(tmpdir(), "webide-plain-"));
    const line = [];
    for (const load of LOADS) {
      const explorer = beacon("explorer");
      const b = chromium(profile);
      try {
        const [tExplorer] = await explorer;
        const { targetInfos } = await b.send("Target.getTargets");
        const target = targetInfos.find((t) => t.type === "page" && t.url.startsWith(origin));
        const { sessionId } = await b.send("Target.attachToTarget", { targetId: target.targetId, flatten: true });
        const prompt = beacon("prompt");
        const tRow = await command(b.send, sessionId, NEW_TERMINAL);
        const [tPrompt] = await prompt.catch(async (e) => {
          const shot = await b.send("Page.captureScreenshot", {}, sessionId).catch(() => null);
          if (shot) writeFileSync(path.join(tmpdir(), "webide-plain-failed.png"), Buffer.from(shot.data, "base64"));
          throw e;
        });
        const t = times[load];
        t.explorer.push(tExplorer);
        t.prompt.push(tPrompt);
        t.palette.push(tRow - tExplorer);
        t.terminal.push(tPrompt - tRow);
        line.push(`${load} ${tExplorer}/${tPrompt} (palette ${tRow - tExplorer}, terminal ${tPrompt - tRow})`);
        if (load === "hot") {
          // A reload with the terminal live: its screen back in VS Code's panel.
          const [again, back] = [beacon("explorer"), beacon("prompt")];
          await b.send("Page.reload", {}, sessionId);
          const [rExplorer] = await again;
          await command(b.send, sessionId, FOCUS_TERMINAL);
          const [rPrompt] = await back;
          times.reload.explorer.push(rExplorer);
          times.reload.prompt.push(rPrompt);
          line.push(`reload ${rExplorer}/${rPrompt}`);
        }
      } finally {
        await b.close();
        await daemon.deleteTerminals();
      }
    }
    rmSync(profile, { recursive: true, force: true, maxRetries: 5 });
    console.log(`run ${i}: explorer/prompt ms: ${line.join(", ")}`);
  }
} finally {
  await daemon.stop();
  await host.close();
  proxy.close();
  report.close();
  rmSync(daemon.workspace, { recursive: true, force: true });
}
const median = (a) => [...a].sort((x, y) => x - y)[Math.floor((a.length - 1) / 2)];
const summary = Object.fromEntries([...LOADS, "reload"].map((l) => [l, Object.fromEntries(Object.entries(times[l]).map(([k, v]) => [`${k}_ms`, median(v)]))]));
console.log(`median of ${runs}, no automation attached during the load: ${JSON.stringify(summary)}`);
