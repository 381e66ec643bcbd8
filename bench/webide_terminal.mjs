// Time from page load to the first terminal prompt, the Web IDE against the
// web console (the daemon's own page, xterm.js) side by side on one daemon:
//   new:    page load -> workbench -> a new terminal -> its prompt shown
//   reload: page reload with a live terminal -> its screen (the prompt) shown
// Each run uses a fresh browser context (empty cache). Run by
// bench/webide-terminal.sh; prints one line per run and a JSON summary.
import { writeFileSync } from "node:fs";
import path from "node:path";
import { launchBrowser, waitForScreen, TOKEN } from "../tests/browser/helpers.mjs";
import { startWebIde, runCommand } from "../tests/browser/webide.helpers.mjs";
import { waitForTerminal, PROMPT, newTerminal, WEBGL_OFF } from "../tests/browser/webide-terminals.helpers.mjs";

const runs = Number(process.argv[2] ?? 5);
const w = await startWebIde();
writeFileSync(path.join(w.daemon.workspace, "readme.txt"), "hello\n");
const browser = await launchBrowser(WEBGL_OFF);
const ms = (t0) => Date.now() - t0;
const results = { webide: { new: [], reload: [], workbench: [], terminal: [] }, console: { new: [], reload: [] } };
try {
  for (let i = 1; i <= runs; i++) {
    // The Web IDE.
    let ctx = await browser.newContext({ viewport: { width: 1280, height: 800 } });
    let page = await ctx.newPage();
    let t0 = Date.now();
    await page.goto(w.pageUrl());
    await page.waitForSelector(".explorer-folders-view .monaco-list-row", { timeout: 60000 });
    const workbench = ms(t0);
    await newTerminal(page);
    await waitForTerminal(page, PROMPT, "the prompt");
    const fresh = ms(t0);
    t0 = Date.now();
    await page.reload();
    await page.waitForSelector(".explorer-folders-view .monaco-list-row", { timeout: 60000 });
    await runCommand(page, "Terminal: Focus on Terminal View");
    await waitForTerminal(page, PROMPT, "the prompt after the reload");
    const reload = ms(t0);
    await ctx.close();
    await w.daemon.deleteTerminals();
    results.webide.workbench.push(workbench);
    results.webide.new.push(fresh);
    results.webide.terminal.push(fresh - workbench);
    results.webide.reload.push(reload);

    // The web console, the peer.
    ctx = await browser.newContext({ viewport: { width: 1280, height: 800 } });
    page = await ctx.newPage();
    t0 = Date.now();
    await page.goto(w.daemon.url(`/?access_token=${TOKEN}`));
    await page.click("#new-terminal");
    await waitForScreen(page, PROMPT, "the console's prompt", 60000);
    const cFresh = ms(t0);
    t0 = Date.now();
    await page.reload();
    await waitForScreen(page, PROMPT, "the console's prompt after the reload", 60000);
    const cReload = ms(t0);
    await ctx.close();
    await w.daemon.deleteTerminals();
    results.console.new.push(cFresh);
    results.console.reload.push(cReload);
    console.log(`run ${i}: Web IDE new ${fresh} ms (workbench ${workbench} ms, then the terminal ${fresh - workbench} ms), reload ${reload} ms; console new ${cFresh} ms, reload ${cReload} ms`);
  }
} finally {
  await browser.close();
  await w.stop();
}
const median = (a) => [...a].sort((x, y) => x - y)[Math.floor((a.length - 1) / 2)];
const m = {
  webide_new_ms: median(results.webide.new), webide_workbench_ms: median(results.webide.workbench),
  webide_terminal_ms: median(results.webide.terminal), webide_reload_ms: median(results.webide.reload),
  console_new_ms: median(results.console.new), console_reload_ms: median(results.console.reload),
};
m.ratio_new = +(m.webide_new_ms / m.console_new_ms).toFixed(2);
m.ratio_reload = +(m.webide_reload_ms / m.console_reload_ms).toFixed(2);
console.log(`median of ${runs}: ${JSON.stringify(m)}`);
