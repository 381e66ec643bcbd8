// Two Web IDEs side by side on one daemon, alternated run by run: page load
// to the explorer and to the first terminal prompt ("Workspace: New
// Terminal" from the command palette), for the first load of a fresh
// browser context (cold: empty HTTP cache) and the two next loads in the
// same context (warm: the HTTP cache filled; hot: V8's code cache, which
// Chromium writes on the second load of a script, read back). For changes
// to the host page, the extension or the VS Code build, against a copy of
// them from before:
//
//   A_HOST=<dir of another editor-assets/web-ide, extension built>
//   A_VSCODE=<its VS Code build> B_VSCODE=<this one's, default:
//   scripts/webide-dist.sh> node bench/webide_ab.mjs [RUNS]
//
// B is this checkout's host page and extension. Release daemon:
// WORKSPACED_BUILD_PROFILE=release (bench/webide-ab.sh).
import { writeFileSync } from "node:fs";
import path from "node:path";
import { pathToFileURL } from "node:url";
import { launchBrowser, startDaemon } from "../tests/browser/helpers.mjs";
import { buildExtension, vscodeDist, webIde } from "../tests/browser/webide.helpers.mjs";
import { waitForTerminal, PROMPT, newTerminal, WEBGL_OFF } from "../tests/browser/webide-terminals.helpers.mjs";
import { TOKEN } from "../tests/browser/helpers.mjs";

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
const browser = await launchBrowser(WEBGL_OFF);
const LOADS = ["cold", "warm", "hot"];
const kill = async () => {
  for (const t of await (await daemon.api("/api/v1/terminals")).json()) await daemon.api(`/api/v1/terminals/${t.id}`, { method: "DELETE" });
};
for (const v of variants) v.times = Object.fromEntries(LOADS.map((l) => [l, { explorer: [], prompt: [] }]));
const load0 = (await import("node:fs")).readFileSync("/proc/loadavg", "utf8").split(" ").slice(0, 3).join(" ");
try {
  for (let i = 1; i <= runs; i++) {
    // A then B on odd runs, B then A on even ones.
    for (const v of i % 2 ? variants : [...variants].reverse()) {
      const ctx = await browser.newContext({ viewport: { width: 1280, height: 800 } });
      const line = [];
      for (const load of LOADS) {
        const page = await ctx.newPage();
        const f = new URLSearchParams({ daemon: `http://${daemon.addr}/`, credential: TOKEN });
        const t0 = Date.now();
        await page.goto(`${v.server.url}#${f}`);
        await page.waitForSelector(".explorer-folders-view .monaco-list-row", { timeout: 60000 });
        const explorer = Date.now() - t0;
        await newTerminal(page);
        await waitForTerminal(page, PROMPT, "the prompt");
        const prompt = Date.now() - t0;
        await page.close();
        await kill();
        v.times[load].explorer.push(explorer);
        v.times[load].prompt.push(prompt);
        line.push(`${load} ${explorer}/${prompt}`);
      }
      await ctx.close();
      console.log(`run ${i} ${v.name}: explorer/prompt ms: ${line.join(", ")}`);
    }
  }
} finally {
  await browser.close();
  await daemon.stop();
  for (const v of variants) await v.server.close();
}
const median = (a) => [...a].sort((x, y) => x - y)[Math.floor((a.length - 1) / 2)];
for (const v of variants) {
  console.log(`${v.name} (${v.host}, ${path.basename(v.vscode)}), medians of ${runs}: ` +
    LOADS.map((l) => `${l}: explorer ${median(v.times[l].explorer)} ms, prompt ${median(v.times[l].prompt)} ms`).join("; "));
}
console.log(`load average at the start ${load0}, at the end ${(await import("node:fs")).readFileSync("/proc/loadavg", "utf8").split(" ").slice(0, 3).join(" ")}`);
