// Two Web IDEs side by side on one daemon, alternated run by run: page load
// to the explorer and to the first terminal prompt ("Workspace: New
// Terminal" from the command palette). Each run starts Chromium on a new
// profile (cold: empty HTTP cache), then twice more on the same profile, as
// a developer's browser opened the next morning (warm: the disk cache
// filled; hot: V8's code cache, which Chromium writes when a script is run
// again from the cache, read back). For changes to the host page, the
// extension or the VS Code build, against a copy of them from before:
//
//   A_HOST=<dir of another editor-assets/web-ide, its extension built>
//   A_VSCODE=<its VS Code build> [B_VSCODE=<this one's, default:
//   scripts/webide-dist.sh>] [NET=<Mbit/s>,<ms>] node bench/webide_ab.mjs [RUNS]
//
// B is this checkout's host page and extension. NET throttles the browser's
// network (DevTools' emulation: download and upload rate, added latency),
// as a developer's link to the workspace is not a loopback. Release daemon:
// WORKSPACED_BUILD_PROFILE=release (bench/webide-ab.sh).
import { mkdtempSync, readFileSync, rmSync, writeFileSync } from "node:fs";
import { tmpdir } from "node:os";
import path from "node:path";
import { pathToFileURL } from "node:url";
import { launchProfile, startDaemon, TOKEN } from "../tests/browser/helpers.mjs";
import { buildExtension, vscodeDist, webIde } from "../tests/browser/webide.helpers.mjs";
import { waitForTerminal, PROMPT, newTerminal, WEBGL_OFF } from "../tests/browser/webide-terminals.helpers.mjs";

const runs = Number(process.argv[2] ?? 5);
if (!process.env.A_HOST || !process.env.A_VSCODE) throw new Error("A_HOST and A_VSCODE name the build to compare against");
buildExtension();
const variants = [
  { name: "A", host: process.env.A_HOST, vscode: process.env.A_VSCODE },
  { name: "B", host: webIde, vscode: process.env.B_VSCODE ?? vscodeDist() },
];
for (const v of variants) {
  const { startHost } = await import(pathToFileURL(path.join(v.host, "host/serve.mjs")).href);
  v.server = await startHost({ port: 0, vscode: v.vscode });
}
const daemon = await startDaemon(["--allowed-origins", variants.map((v) => new URL(v.server.url).origin).join(",")]);
writeFileSync(path.join(daemon.workspace, "readme.txt"), "hello\n");
const [mbps, latency] = (process.env.NET ?? "").split(",").map(Number);
const loadavg = () => readFileSync("/proc/loadavg", "utf8").split(" ").slice(0, 3).join(" ");
const LOADS = ["cold", "warm", "hot"];
for (const v of variants) v.times = Object.fromEntries(LOADS.map((l) => [l, { explorer: [], prompt: [] }]));
const load0 = loadavg();
try {
  for (let i = 1; i <= runs; i++) {
    // A then B on odd runs, B then A on even ones.
    for (const v of i % 2 ? variants : [...variants].reverse()) {
      const profile = mkdtempSync(path.join(tmpdir(), "webide-ab-"));
      const line = [];
      for (const load of LOADS) {
        const ctx = await launchProfile(profile, { ...WEBGL_OFF, viewport: { width: 1280, height: 800 } });
        const page = ctx.pages()[0] ?? (await ctx.newPage());
        if (mbps) {
          const cdp = await ctx.newCDPSession(page);
          const bytes = (mbps * 1e6) / 8;
          await cdp.send("Network.emulateNetworkConditions", { offline: false, latency, downloadThroughput: bytes, uploadThroughput: bytes });
        }
        const f = new URLSearchParams({ daemon: `http://${daemon.addr}/`, credential: TOKEN });
        const t0 = Date.now();
        await page.goto(`${v.server.url}#${f}`);
        await page.waitForSelector(".explorer-folders-view .monaco-list-row", { timeout: 120000 });
        const explorer = Date.now() - t0;
        await newTerminal(page);
        await waitForTerminal(page, PROMPT, "the prompt", 60000);
        const prompt = Date.now() - t0;
        await ctx.close();
        await daemon.deleteTerminals();
        v.times[load].explorer.push(explorer);
        v.times[load].prompt.push(prompt);
        line.push(`${load} ${explorer}/${prompt}`);
      }
      rmSync(profile, { recursive: true, force: true });
      console.log(`run ${i} ${v.name}: explorer/prompt ms: ${line.join(", ")} (load ${loadavg()})`);
    }
  }
} finally {
  await daemon.stop();
  for (const v of variants) await v.server.close();
}
const median = (a) => [...a].sort((x, y) => x - y)[Math.floor((a.length - 1) / 2)];
for (const v of variants) {
  console.log(`${v.name} (${v.host}, ${path.basename(v.vscode)}), medians of ${runs}: ` +
    LOADS.map((l) => {
      const t = v.times[l];
      // The terminal's own part: from the explorer shown to the prompt, run by run.
      const own = t.prompt.map((p, k) => p - t.explorer[k]);
      return `${l}: explorer ${median(t.explorer)} ms, prompt ${median(t.prompt)} ms (terminal ${median(own)} ms)`;
    }).join("; "));
}
console.log(`load average at the start ${load0}, at the end ${loadavg()}${mbps ? `; network ${mbps} Mbit/s, ${latency} ms` : ""}`);
