// The Web IDE's figures (bench/webide.sh runs this): page load to the
// explorer showing the root of a 30,000-file git checkout, beside the same
// load of a one-file workspace; and saves, from the save key to the new
// content on disk, with the bytes they put on the wire, beside the same
// change sent as a whole-file PUT (what a client without patches sends).
import { readFileSync, statSync, writeFileSync } from "node:fs";
import path from "node:path";
import { launchBrowser, TOKEN } from "../tests/browser/helpers.mjs";
import { startWebIde, openWebIde, openFromExplorer, waitForEditor, goToLine, waitForExplorer } from "../tests/browser/webide.helpers.mjs";
import { checkout } from "./webide_checkout.mjs";

const LOADS = Number(process.env.LOADS ?? 5);
const SAVES = Number(process.env.SAVES ?? 30);

const pct = (xs, p) => { const s = [...xs].sort((a, b) => a - b); return s[Math.min(s.length - 1, Math.ceil((p / 100) * s.length) - 1)]; };
const median = (xs) => pct(xs, 50);


async function pageLoads(browser, w, label) {
  // One browser profile, as a developer's: the first load fetches VS Code
  // (cold), the next ones find it in the HTTP cache (warm, as every later visit).
  const context = await browser.newContext({ viewport: { width: 1280, height: 800 } });
  const times = [];
  for (let i = 0; i <= LOADS; i++) {
    const page = await context.newPage();
    const t0 = Date.now();
    await openWebIde(page, w);
    await waitForExplorer(page, "README.md", 60000);
    times.push(Date.now() - t0);
    await page.close();
  }
  await context.close();
  const [cold, ...warm] = times;
  console.log(`page load to the explorer's root, ${label}: cold ${cold} ms; warm median ${median(warm)} ms (${warm.join(", ")})`);
  return warm;
}

async function saves(browser, w, name, lines) {
  const file = path.join(w.daemon.workspace, name);
  const page = await browser.newPage({ viewport: { width: 1280, height: 800 } });
  await openWebIde(page, w);
  await openFromExplorer(page, name);
  await waitForEditor(page, (t) => t.length > 0, "the file");
  const times = [];
  const wire = [];
  // Where a save's time goes: the save key to its first request (VS Code),
  // to the apply leaving the browser (the stat and the diff), to the disk.
  const toFirst = [];
  const toApply = [];
  for (let i = 0; i < SAVES; i++) {
    const line = 1 + ((i * 7919) % lines);
    await goToLine(page, line);
    await page.keyboard.press("End");
    await page.keyboard.type("x");
    const before = statSync(file).size;
    const sent0 = w.relay.sent;
    const req0 = w.relay.requests.length;
    const frames0 = w.relay.syncs.at(-1).up.length;
    const wall0 = Date.now();
    const t0 = performance.now();
    await page.keyboard.press("Control+S");
    while (statSync(file).size === before) await new Promise((r) => setImmediate(r));
    times.push(performance.now() - t0);
    const first = w.relay.requests[req0]?.at;
    const apply = w.relay.syncs.at(-1).up.slice(frames0).find((f) => f.text?.includes('"apply"'))?.at;
    if (first !== undefined) toFirst.push(first - wall0);
    if (apply !== undefined) toApply.push(apply - wall0);
    // The last bytes of the save (a stat after it) come in a moment; counted for this save.
    await page.locator(".tabs-container .tab.dirty").waitFor({ state: "detached" });
    wire.push(w.relay.sent - sent0);
  }
  await page.close();
  console.log(`  save key to its first request: median ${median(toFirst)} ms; to the apply leaving the browser: median ${median(toApply)} ms`);
  const size = statSync(file).size;
  console.log(`save of a one-character change to ${name} (${size} bytes): p50 ${median(times).toFixed(1)} ms, p99 ${pct(times, 99).toFixed(1)} ms; bytes sent per save: median ${median(wire)} (max ${Math.max(...wire)})`);
  // The peer: the same change as a whole-file PUT against the version on disk.
  const peer = [];
  let peerBytes = 0;
  for (let i = 0; i < SAVES; i++) {
    const text = readFileSync(file, "utf8");
    const etag = (await w.daemon.api(`/api/v1/files/${name}`, { method: "HEAD" })).headers.get("etag");
    const body = `${text}y`;
    const t0 = performance.now();
    const r = await fetch(`${w.daemonUrl}api/v1/files/${name}`, { method: "PUT", body, headers: { Authorization: `Bearer ${TOKEN}`, "If-Match": etag } });
    await r.arrayBuffer();
    peer.push(performance.now() - t0);
    peerBytes = Buffer.byteLength(body);
  }
  console.log(`  peer, whole-file PUT of the same file: p50 ${median(peer).toFixed(1)} ms, p99 ${pct(peer, 99).toFixed(1)} ms; body ${peerBytes} bytes`);
  console.log(`  ratios Web IDE / PUT: p50 time ${(median(times) / median(peer)).toFixed(2)}, bytes ${(median(wire) / peerBytes).toFixed(4)}`);
}

const big = startWebIde({ relay: true });
const w = await big;
const small = await startWebIde();
const browser = await launchBrowser();
try {
  checkout(w.daemon.workspace);
  writeFileSync(path.join(small.daemon.workspace, "README.md"), "# one file\n");
  const lines = [];
  for (let i = 1; i <= 20000; i++) lines.push(`line ${String(i).padStart(5, "0")} of a big file, with some text to make it longer`);
  writeFileSync(path.join(w.daemon.workspace, "big.txt"), `${lines.join("\n")}\n`);
  writeFileSync(path.join(w.daemon.workspace, "small.rs"), `${lines.slice(0, 200).join("\n")}\n`);
  const bigLoads = await pageLoads(browser, w, "30,000-file checkout");
  const oneLoads = await pageLoads(browser, small, "one-file workspace (peer)");
  console.log(`  ratio checkout / one file: ${(median(bigLoads) / median(oneLoads)).toFixed(2)}`);
  await saves(browser, w, "small.rs", 200);
  await saves(browser, w, "big.txt", 20000);
} finally {
  await browser.close();
  await w.stop();
  await small.stop();
}
